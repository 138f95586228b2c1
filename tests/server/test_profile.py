"""Where the instructions go: a file's target is profiled when it is opened (valgrind in the
sandbox, in a worker process), each function's share shows in its lens and hover, the
profile is kept in the workspace store (a reopened file shows it at once, without profiling
again), a saved change makes a new one, and ``asmopt.hottestFunctions`` lists the functions
hottest first."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio

HOT = """\
#include <stdio.h>

__attribute__((noinline)) long work(long n)
{
    long s = 0;
    for (long i = 1; i <= n; i++)
        s += i * i % 7;
    return s;
}

__attribute__((noinline)) long tiny(long n)
{
    return n + 1;
}

int main(void)
{
    long n;
    if (scanf("%ld", &n) != 1)
        return 1;
    printf("%ld %ld\\n", work(n), tiny(n));
    return 0;
}
"""


def _hot_workspace(root: Path) -> None:
    (root / "hot.c").write_text(HOT)
    tests = root / "tests"
    tests.mkdir(exist_ok=True)
    (tests / "a.in").write_text("200000\n")
    (tests / "b.in").write_text("300000\n")


async def _hover(s, uri: str, text: str, name: str) -> str:
    line = next(i for i, t in enumerate(text.splitlines()) if f" {name}(" in t)
    character = text.splitlines()[line].index(f" {name}(") + 2
    found = await s.client.text_document_hover_async(
        types.HoverParams(types.TextDocumentIdentifier(uri), types.Position(line, character))
    )
    assert found is not None
    return found.contents.value


@pytest.mark.slow
async def test_a_real_profile_shows_in_the_lens_and_hover_and_is_stored(tmp_path, lsp):
    _hot_workspace(tmp_path)
    async with lsp.session(tmp_path, optimizer="real") as s:
        uri = s.open("hot.c")
        started = time.monotonic()
        titles = await s.wait_for_lens(uri, "9", timeout=120)  # work: ~97%
        took = time.monotonic() - started
        # The functions' own lenses come first and are unchanged; `work` dominates, `main`
        # and `tiny` are negligible and get no share lens.
        assert titles[:3] == ["Optimize", "Optimize", "Optimize"]
        (share,) = titles[3:]
        assert share.endswith("% of instructions") and int(share.split("%")[0]) >= 90, titles
        hover = await _hover(s, uri, HOT, "work")
        assert "of the program's instructions" in hover and "instructions, not time" in hover
        assert "no instructions of its own" not in hover
        tiny = await _hover(s, uri, HOT, "tiny")
        assert "`tiny` executes" in tiny
        answer = await s.command("asmopt.hottestFunctions", uri)
        assert answer["functions"][0]["name"] == "work"
        assert answer["functions"][0]["uri"] == uri and answer["functions"][0]["line"] == 2
        assert answer["metric"].startswith("instructions")
        assert not answer["startupBound"]
        assert not s.messages(), s.messages()
    # Reopened: from the workspace store, without profiling again.
    async with lsp.session(tmp_path, optimizer="real") as s:
        uri = s.open("hot.c")
        started = time.monotonic()
        titles = await s.wait_for_lens(uri, "9", timeout=20)
        assert time.monotonic() - started < max(3.0, took / 2), (took, titles)


async def test_shares_negligible_functions_and_no_profile_before_it_is_made(workspace, lsp):
    lsp.set_fake_profile(workspace, {"sum_to": 620, "main": 5}, total=2000, delay=0.5)
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        assert await s.lenses(uri) == ["Optimize", "Optimize"]  # while it profiles
        titles = await s.wait_for_lens(uri, "31% of instructions")
        assert titles == ["Optimize", "Optimize", "31% of instructions"]  # main: 0.25%, hidden
        hover = await _hover(s, uri, lsp.PROG_C, "main")
        assert "`main` executes 0.25% of the program's instructions (5 of 2,000)" in hover
        assert "Not optimized yet" in hover  # what the hover said before is still there


async def test_a_start_up_bound_run_is_said_once(workspace, lsp):
    lsp.set_fake_profile(workspace, {"sum_to": 30, "main": 10}, total=4000)
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        titles = await s.wait_for_lens(uri, "own code")
        assert titles == [
            "Optimize",
            "Optimize",
            "own code: 1.0% of instructions; the rest is start-up and libc",
        ]
        hover = await _hover(s, uri, lsp.PROG_C, "sum_to")
        assert "**Mostly start-up and libc:** only 1% of the instructions" in hover
        answer = await s.command("asmopt.hottestFunctions", uri)
        assert answer["startupBound"].startswith("only 1% of the instructions")
        assert [f["name"] for f in answer["functions"]] == ["sum_to", "main"]


async def test_reopening_uses_the_store_and_a_saved_change_profiles_again(workspace, lsp):
    lsp.set_fake_profile(workspace, {"sum_to": 620, "main": 5}, total=2000)
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.wait_for_lens(uri, "31%")
    assert lsp.profiles_made(workspace) == 1
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.wait_for_lens(uri, "31%")
        assert lsp.profiles_made(workspace) == 1  # from .asmopt/results.sqlite
        lsp.set_fake_profile(workspace, {"sum_to": 1000, "main": 5}, total=2000)
        changed = lsp.PROG_C.replace("% 7", "% 9")
        (workspace / "prog.c").write_text(changed)
        s.change(uri, changed)
        s.client.text_document_did_save(
            types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri))
        )
        await s.wait_for_lens(uri, "50% of instructions")
        assert lsp.profiles_made(workspace) == 2
        # A save that changes nothing the profile depends on keeps it.
        s.client.text_document_did_save(
            types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri))
        )
        await s.wait_for_lens(uri, "50% of instructions")
        assert lsp.profiles_made(workspace) == 2


async def test_profile_on_open_off_profiles_only_when_asked(workspace, lsp):
    lsp.set_fake_profile(workspace, {"sum_to": 620, "main": 5}, total=2000)
    async with lsp.session(workspace, settings={"profileOnOpen": False}) as s:
        uri = s.open("prog.c")
        await asyncio.sleep(1.0)  # long enough for a fake profile, were one started
        assert await s.lenses(uri) == ["Optimize", "Optimize"]
        assert lsp.profiles_made(workspace) == 0
        answer = await s.command("asmopt.hottestFunctions", uri)
        assert answer["functions"][0] == {
            "name": "sum_to",
            "instructions": 620,
            "share": 0.31,
            "uri": uri,
            "line": 2,
        }
        assert await s.wait_for_lens(uri, "31%")  # once made, it is shown


async def test_hottest_functions_says_why_there_is_no_profile(workspace, lsp):
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        answer = await s.command("asmopt.hottestFunctions", uri)
        assert answer == {"error": "fake: no profile asked for in fake.json"}
        (workspace / "tests" / "small.in").unlink()
        (workspace / "tests" / "big.in").unlink()
        (workspace / "tests").rmdir()
        answer = await s.command("asmopt.hottestFunctions", uri)
        assert answer["error"].startswith("no tests for prog.c")
        assert (await s.command("asmopt.hottestFunctions"))["error"]
        assert not s.messages(), s.messages()


async def test_a_save_profiles_a_file_that_had_no_profile(workspace, lsp):
    """A target that could not be profiled when opened (here: the fake has no profile; in
    life, no tests yet) is profiled again when a file is saved."""
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await asyncio.sleep(1.5)  # the failed profile on open is only logged
        assert await s.lenses(uri) == ["Optimize", "Optimize"]
        assert not s.messages(), s.messages()
        lsp.set_fake_profile(workspace, {"sum_to": 620, "main": 5}, total=2000)
        s.client.text_document_did_save(
            types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri))
        )
        await s.wait_for_lens(uri, "31% of instructions")


async def test_the_files_of_one_target_share_its_profile(workspace, lsp):
    (workspace / "helper.c").write_text("long helper(long n)\n{\n    return n * 3;\n}\n")
    (workspace / "asmopt.toml").write_text(
        '[[target]]\nname = "prog"\nsources = ["prog.c", "helper.c"]\ntests = "tests"\n'
    )
    lsp.set_fake_profile(workspace, {"sum_to": 620, "helper": 300, "main": 5}, total=2000)
    async with lsp.session(workspace) as s:
        prog = s.open("prog.c")
        await s.wait_for_lens(prog, "31% of instructions")
        helper = s.open("helper.c")
        assert await s.wait_for_lens(helper, "15% of instructions") == [
            "Optimize",
            "15% of instructions",
        ]
        assert lsp.profiles_made(workspace) == 1
        answer = await s.command("asmopt.hottestFunctions", helper)
        assert [(f["name"], f["uri"], f["line"]) for f in answer["functions"]] == [
            ("sum_to", prog, 2),  # defined in prog.c, the target's other file
            ("helper", helper, 0),
            ("main", prog, 10),
        ]


async def test_a_profile_waits_for_the_running_optimize_job(workspace, lsp):
    """valgrind takes a whole core: it must not run beside a job's timed runs."""
    lsp.set_fake(workspace, "faster", stage_delay=1.5)  # a job of several seconds
    lsp.set_fake_profile(workspace, {"sum_to": 620, "main": 5}, total=2000)
    async with lsp.session(workspace, settings={"profileOnOpen": False}) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        answer = await asyncio.wait_for(s.command("asmopt.hottestFunctions", uri), 60)
        assert answer["functions"][0]["name"] == "sum_to"
        # The profile was made only once the job had ended.
        assert any("✓" in title for title in await s.lenses(uri)), await s.lenses(uri)
        assert lsp.profiles_made(workspace) == 1


MEASURING = "measuring instructions…"
WAITING = "profile waits for the optimize job"


async def _raw_lenses(s, uri: str) -> list[types.CodeLens]:
    found = await s.client.text_document_code_lens_async(
        types.CodeLensParams(types.TextDocumentIdentifier(uri))
    )
    return list(found or [])


async def test_a_lens_says_the_profile_is_being_measured_until_it_is_made(workspace, lsp):
    lsp.set_fake_profile(workspace, {"sum_to": 620, "main": 5}, total=2000, delay=2.0)
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        titles = await s.wait_for_lens(uri, MEASURING)
        # On each function, where its share will be; the editor was asked to show it.
        assert titles == ["Optimize", "Optimize", MEASURING, MEASURING]
        lenses = await _raw_lenses(s, uri)
        assert [lens.range.start.line for lens in lenses[2:]] == [2, 10]
        assert lenses[2].command.command == "asmopt.showHottestFunctions"
        await s.wait_for(lambda: s.refreshes >= 1, what="a refresh once it is measured")
        before = s.refreshes
        assert await s.wait_for_lens(uri, "31%") == ["Optimize", "Optimize", "31% of instructions"]
        await s.wait_for(lambda: s.refreshes > before, what="a refresh once it is made")
        assert not s.messages(), s.messages()


async def test_a_failed_profile_leaves_no_measuring_lens(workspace, lsp):
    lsp.set_fake_profile(
        workspace, {"sum_to": 620}, total=2000, delay=1.5, fail="it does not build"
    )
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.wait_for_lens(uri, MEASURING)
        before = s.refreshes

        async def gone() -> bool:
            return await s.lenses(uri) == ["Optimize", "Optimize"]

        await s.wait_for(gone, what="the measuring lenses to go")
        await s.wait_for(lambda: s.refreshes > before, what="a refresh once it failed")
        await asyncio.sleep(0.5)
        assert await s.lenses(uri) == ["Optimize", "Optimize"]
        assert not s.messages(), s.messages()  # a failure on open is only logged
        assert not s.registrations  # this client cannot register file watchers


async def test_no_refresh_is_asked_of_a_client_that_cannot(workspace, lsp):
    import attrs

    caps = attrs.evolve(
        lsp.CAPABILITIES,
        workspace=attrs.evolve(lsp.CAPABILITIES.workspace, code_lens=None, inlay_hint=None),
    )
    lsp.set_fake_profile(workspace, {"sum_to": 620, "main": 5}, total=2000, delay=1.0)
    async with lsp.session(workspace, capabilities=caps) as s:
        uri = s.open("prog.c")
        await s.wait_for_lens(uri, MEASURING)
        await s.wait_for_lens(uri, "31%")
        await asyncio.sleep(0.3)
        assert s.refreshes == 0


async def test_the_lens_says_the_profile_waits_for_the_optimize_job(workspace, lsp):
    lsp.set_fake(workspace, "faster", stage_delay=1.5)
    lsp.set_fake_profile(workspace, {"sum_to": 620, "main": 5}, total=2000, delay=1.0)
    async with lsp.session(workspace, settings={"profileOnOpen": False}) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        asked = asyncio.ensure_future(s.command("asmopt.hottestFunctions", uri))
        titles = await s.wait_for_lens(uri, WAITING)
        assert titles.count(WAITING) == 2 and titles[0].startswith("running…"), titles
        await s.wait_for_lens(uri, MEASURING, timeout=30)  # the job ended: valgrind runs
        answer = await asyncio.wait_for(asked, 60)
        assert answer["functions"][0]["name"] == "sum_to"
        titles = await s.wait_for_lens(uri, "31%")
        assert WAITING not in titles and MEASURING not in titles


async def test_hottest_functions_finds_definitions_in_the_target_s_other_files(workspace, lsp):
    """Functions defined in other files of the target come with their file and line: read
    from disk when the file is not open, as the editor has it when it is."""
    (workspace / "helper.c").write_text("long helper(long n)\n{\n    return n * 3;\n}\n")
    (workspace / "fast.s").write_text(
        "\t.text\n\t.globl\tfast\n\t.type\tfast, @function\nfast:\n\tmovq\t%rdi, %rax\n\tret\n"
        "\t.size\tfast, .-fast\n"
    )
    (workspace / "asmopt.toml").write_text(
        '[[target]]\nname = "prog"\nsources = ["prog.c", "helper.c", "fast.s"]\ntests = "tests"\n'
    )
    lsp.set_fake_profile(
        workspace,
        {"sum_to": 620, "helper": 300, "fast": 200, "ghost": 100, "main": 5},
        total=2000,
    )
    async with lsp.session(workspace, settings={"profileOnOpen": False}) as s:
        helper = s.open("helper.c")
        answer = await s.command("asmopt.hottestFunctions", helper)
        prog, fast = s.uri("prog.c"), s.uri("fast.s")
        assert [(f["name"], f["uri"], f["line"]) for f in answer["functions"]] == [
            ("sum_to", prog, 2),  # prog.c is not open: from disk
            ("helper", helper, 0),
            ("fast", fast, 0),  # the assembly file's function, where its lens goes
            ("ghost", None, None),  # defined nowhere in the target
            ("main", prog, 10),
        ]
        # An open file counts as the editor has it (two lines added, not saved).
        s.open("prog.c")
        s.change(prog, "// a\n// b\n" + lsp.PROG_C)
        answer = await s.command("asmopt.hottestFunctions", helper)
        lines = {f["name"]: (f["uri"], f["line"]) for f in answer["functions"]}
        assert lines["sum_to"] == (prog, 4) and lines["main"] == (prog, 12)
