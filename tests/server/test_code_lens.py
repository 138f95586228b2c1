"""CodeLens: `Optimize` before a run, `running… (stage)` during it, the result after it, and
workspace/codeLens/refresh when results change."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.asyncio


async def test_lenses_before_during_and_after_a_run(workspace, lsp):
    lsp.set_fake(workspace, "faster", stage_delay=0.4)
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        assert await s.lenses(uri) == ["Optimize", "Optimize"]
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        running = await s.wait_for_lens(uri, "running… (")
        assert running[1] == "Optimize"  # main is not being optimized
        titles = await s.wait_for_lens(uri, "✓")
        assert titles[0] == "✓ 10/10 tests · 1.31× [1.27–1.35] vs gcc -O3"
        assert s.refreshes >= 2


@pytest.mark.parametrize(
    ("mode", "title"),
    [("fail", "✗ best candidate failed 3/10 tests"), ("none", "no faster candidate")],
)
async def test_lens_after_a_run_without_winner(workspace, lsp, mode, title):
    lsp.set_fake(workspace, mode)
    async with lsp.session(workspace) as s:
        uri = s.open("prog.s")
        assert await s.lenses(uri) == ["Optimize", "Optimize"]
        await s.command("asmopt.optimizeFunction", uri, "square")
        titles = await s.wait_for_lens(uri, title[:3])
        assert titles == [title, "Optimize"]


async def test_unknown_language_has_no_lenses(workspace, lsp):
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c", language="python")
        assert await s.lenses(uri) == []
