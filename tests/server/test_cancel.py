"""Cancelling a run, by the progress UI or by asmopt.cancel, kills every process the run
started within a second; a second run of the same function is refused."""

from __future__ import annotations

import asyncio
import time

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio


async def _started(s, lsp):
    await s.wait_for(lambda: len(lsp.living_markers(lsp.CHILD_MARKER)) >= 3, what="children")


async def _gone_within(lsp, seconds: float) -> float:
    start = time.monotonic()
    while lsp.living_markers(lsp.CHILD_MARKER):
        assert time.monotonic() - start < seconds, lsp.living_markers(lsp.CHILD_MARKER)
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_cancel_command_kills_a_stubborn_run(workspace, lsp):
    lsp.set_fake(workspace, "stubborn")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await _started(s, lsp)
        assert await s.command("asmopt.cancel", uri, "sum_to") == {"cancelled": True}
        await _gone_within(lsp, 1.0)
        await s.wait_for(lambda: any(k and k[-1] == "end" for k in s.progress_kinds()), what="end")
        assert await s.wait_for_lens(uri, "Optimize") == ["Optimize", "Optimize"]


async def test_progress_cancel_stops_a_cooperative_run(workspace, lsp):
    lsp.set_fake(workspace, "slow")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFile", uri)
        await _started(s, lsp)
        (token,) = s.client.progress_reports
        s.client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
        await _gone_within(lsp, 1.0)
        await s.wait_for(lambda: s.progress_kinds()[0][-1] == "end", what="progress end")
        assert "cancelled" in s.client.progress_reports[token][-1].message


async def test_second_run_of_a_function_is_refused_others_queue(workspace, lsp):
    lsp.set_fake(workspace, "stubborn")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        assert await s.command("asmopt.optimizeFunction", uri, "sum_to")
        assert await s.command("asmopt.optimizeFunction", uri, "sum_to") is None
        await s.wait_for(
            lambda: any("already being optimized" in m for m in s.messages()),
            what="refusal message",
        )
        assert await s.command("asmopt.optimizeFunction", uri, "main")
        titles = await s.wait_for_lens(uri, "running… (queued)")
        assert titles[0].startswith("running… (") and titles[1] == "running… (queued)"
        await s.command("asmopt.cancel", uri, "main")  # a queued job goes at once
        await s.command("asmopt.cancel", uri, "sum_to")
        await _gone_within(lsp, 1.0)


async def test_shutdown_kills_running_jobs(workspace, lsp):
    lsp.set_fake(workspace, "stubborn")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await _started(s, lsp)
    await _gone_within(lsp, 1.0)


@pytest.mark.parametrize("how", ["cancel", "shutdown"])
async def test_no_temporary_files_after_cancel_or_shutdown(
    workspace, lsp, tmp_path, monkeypatch, how
):
    """A killed run cannot clean up after itself: its TMPDIR (in the server's scratch folder)
    is removed for it; the server's own folder goes at shutdown."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    lsp.set_fake(workspace, "stubborn")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await _started(s, lsp)
        assert list(tmp.glob("asmopt-server-*/asmopt-job-*/asmopt-cand-*"))
        if how == "cancel":
            await s.command("asmopt.cancel", uri, "sum_to")
            await s.wait_for(lambda: any(k and k[-1] == "end" for k in s.progress_kinds()))
            await s.wait_for(
                lambda: not list(tmp.glob("asmopt-server-*/asmopt-job-*")), what="no job folder"
            )
    await _gone_within(lsp, 2.0)
    assert not list(tmp.iterdir()), list(tmp.rglob("*"))
