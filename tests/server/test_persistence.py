"""Results live in the workspace's .asmopt/ store: a new server shows them (lens, hint,
apply) without running anything."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.asyncio


async def test_results_survive_a_server_restart(workspace, lsp):
    lsp.set_fake(workspace, "faster")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await s.wait_for_lens(uri, "✓")
    assert (workspace / ".asmopt" / "results.sqlite").exists()

    lsp.set_fake(workspace, "error")  # a run now would fail: nothing may run
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        titles = await s.wait_for_lens(uri, "✓")
        assert titles == ["✓ 10/10 tests · 1.31× [1.27–1.35] vs gcc -O3", "Optimize"]
        assert s.client.progress_reports == {}
        assert (await s.command("asmopt.applyCandidate", uri, "sum_to")) == {"applied": True}
        assert lsp.MARKER in s.edits[0].edit.document_changes[-1].edits[0].new_text


async def test_a_later_run_without_winner_keeps_the_winner(workspace, lsp):
    lsp.set_fake(workspace, "faster")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.s")
        await s.command("asmopt.optimizeFunction", uri, "square")
        await s.wait_for_lens(uri, "✓")
        lsp.set_fake(workspace, "none")
        await s.command("asmopt.optimizeFunction", uri, "square")
        await s.wait_for(
            lambda: sum(1 for k in s.progress_kinds() if k[-1] == "end") == 2, what="second run"
        )
        assert (await s.lenses(uri))[0].startswith("✓")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.s")
        assert (await s.wait_for_lens(uri, "✓"))[0].startswith("✓ 10/10")
