"""Files changed on disk outside the editor (a checkout, a build script): the server has the
client watch sources, tests and asmopt.toml (registered dynamically, when the client can),
drops the profiles those changes make stale and profiles the open files again."""

from __future__ import annotations

import asyncio

import attrs
import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio


def _watching(lsp) -> types.ClientCapabilities:
    """The tests' client capabilities, plus dynamic registration of file watchers."""
    caps = lsp.CAPABILITIES
    watched = types.DidChangeWatchedFilesClientCapabilities(dynamic_registration=True)
    return attrs.evolve(
        caps, workspace=attrs.evolve(caps.workspace, did_change_watched_files=watched)
    )


def _changed(s, *names: str, kind=types.FileChangeType.Changed) -> None:
    s.client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(
            changes=[types.FileEvent(uri=s.uri(name), type=kind) for name in names]
        )
    )


async def test_the_server_registers_watchers_for_sources_tests_and_asmopt_toml(workspace, lsp):
    async with lsp.session(workspace, capabilities=_watching(lsp)) as s:
        await s.wait_for(lambda: s.registrations, what="a registration")
        (registration,) = s.registrations
        assert registration.method == "workspace/didChangeWatchedFiles"
        options = registration.register_options
        globs = [
            w["globPattern"] if isinstance(w, dict) else w.glob_pattern
            for w in (options["watchers"] if isinstance(options, dict) else options.watchers)
        ]
        assert "**/asmopt.toml" in globs
        assert any(".c" in g or "{c," in g for g in globs), globs
        assert any("in," in g for g in globs), globs


async def test_a_source_changed_on_disk_is_profiled_again(workspace, lsp):
    lsp.set_fake_profile(workspace, {"sum_to": 620, "main": 5}, total=2000)
    async with lsp.session(workspace, capabilities=_watching(lsp)) as s:
        uri = s.open("prog.c")
        await s.wait_for_lens(uri, "31%")
        assert lsp.profiles_made(workspace) == 1
        # The store the server writes, and a change of nothing: no new profile.
        _changed(s, ".asmopt/results.sqlite")
        _changed(s, "prog.c")
        await asyncio.sleep(1.0)
        assert lsp.profiles_made(workspace) == 1
        # A checkout changes prog.c on disk; the editor's buffer is not saved or changed.
        lsp.set_fake_profile(workspace, {"sum_to": 1000, "main": 5}, total=2000, delay=1.0)
        (workspace / "prog.c").write_text(lsp.PROG_C.replace("% 7", "% 9"))
        before = s.refreshes
        _changed(s, "prog.c")
        titles = await s.wait_for_lens(uri, "measuring instructions…")
        assert not any(t.endswith("% of instructions") for t in titles), titles  # stale: gone
        assert await s.wait_for_lens(uri, "50%") == ["Optimize", "Optimize", "50% of instructions"]
        assert lsp.profiles_made(workspace) == 2
        assert s.refreshes > before


async def test_tests_and_asmopt_toml_changed_on_disk(workspace, lsp):
    (workspace / "helper.c").write_text("long helper(long n)\n{\n    return n * 3;\n}\n")
    lsp.set_fake_profile(workspace, {"sum_to": 620, "main": 5}, total=2000)
    async with lsp.session(workspace, capabilities=_watching(lsp)) as s:
        uri = s.open("prog.c")
        await s.wait_for_lens(uri, "31%")
        # A test added by a script.
        lsp.set_fake_profile(workspace, {"sum_to": 1000, "main": 5}, total=2000)
        (workspace / "tests" / "more.in").write_text("5\n")
        _changed(s, "tests/more.in", kind=types.FileChangeType.Created)
        await s.wait_for_lens(uri, "50%")
        assert lsp.profiles_made(workspace) == 2
        # asmopt.toml appears: the target now has helper.c too.
        lsp.set_fake_profile(workspace, {"sum_to": 1200, "helper": 300, "main": 5}, total=2000)
        (workspace / "asmopt.toml").write_text(
            '[[target]]\nname = "prog"\nsources = ["prog.c", "helper.c"]\ntests = "tests"\n'
        )
        _changed(s, "asmopt.toml", kind=types.FileChangeType.Created)
        await s.wait_for_lens(uri, "60%")
        assert lsp.profiles_made(workspace) == 3


async def test_a_target_that_gains_tests_on_disk_is_profiled(tmp_path, lsp):
    (tmp_path / "prog.c").write_text(lsp.PROG_C)
    lsp.set_fake_profile(tmp_path, {"sum_to": 620, "main": 5}, total=2000)
    async with lsp.session(tmp_path, capabilities=_watching(lsp)) as s:
        uri = s.open("prog.c")
        await asyncio.sleep(1.0)  # no tests: no profile
        assert await s.lenses(uri) == ["Optimize", "Optimize"]
        (tmp_path / "tests").mkdir()
        (tmp_path / "tests" / "a.in").write_text("10\n")
        _changed(s, "tests/a.in", kind=types.FileChangeType.Created)
        await s.wait_for_lens(uri, "31%")


async def test_profile_on_open_off_drops_the_stale_profile_without_profiling(workspace, lsp):
    lsp.set_fake_profile(workspace, {"sum_to": 620, "main": 5}, total=2000)
    settings = {"profileOnOpen": False}
    async with lsp.session(workspace, settings=settings, capabilities=_watching(lsp)) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.hottestFunctions", uri)
        await s.wait_for_lens(uri, "31%")
        (workspace / "prog.c").write_text(lsp.PROG_C.replace("% 7", "% 9"))
        _changed(s, "prog.c")

        async def stale_gone() -> bool:
            return await s.lenses(uri) == ["Optimize", "Optimize"]

        await s.wait_for(stale_gone, what="the stale share lens to go")
        await asyncio.sleep(0.5)
        assert lsp.profiles_made(workspace) == 1


async def test_a_change_while_profiling_is_not_shown_with_the_old_profile(workspace, lsp):
    """The profile that was running when the files changed is of the old files: the one
    shown is made again for the new ones."""
    lsp.set_fake_profile(workspace, {"sum_to": 620, "main": 5}, total=2000, delay=1.5)
    async with lsp.session(workspace, capabilities=_watching(lsp)) as s:
        uri = s.open("prog.c")
        await s.wait_for_lens(uri, "measuring instructions…")
        await s.wait_for(lambda: lsp.profiles_made(workspace) == 1, what="the profile to start")
        lsp.set_fake_profile(workspace, {"sum_to": 1000, "main": 5}, total=2000, delay=0.2)
        (workspace / "prog.c").write_text(lsp.PROG_C.replace("% 7", "% 9"))
        _changed(s, "prog.c")
        titles = await s.wait_for_lens(uri, "50%", timeout=20)
        assert "31% of instructions" not in titles
        assert lsp.profiles_made(workspace) == 2
