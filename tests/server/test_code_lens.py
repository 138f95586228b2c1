"""CodeLens: `Optimize` before a run, `running… (stage)` during it, the result after it, and
workspace/codeLens/refresh when results change."""

from __future__ import annotations

import pytest
from lsprotocol import types

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


@pytest.mark.parametrize("language", ["", "plaintext"])
async def test_empty_language_id_falls_back_on_the_file_name(workspace, lsp, language):
    """Neovim without filetype detection sends languageId "": lenses, hover and actions
    still come, from the file's extension."""
    async with lsp.session(workspace) as s:
        c_uri = s.open("prog.c", language=language)
        s_uri = s.open("prog.s", language=language)
        assert await s.lenses(c_uri) == ["Optimize", "Optimize"]
        assert await s.lenses(s_uri) == ["Optimize", "Optimize"]
        hover = await s.client.text_document_hover_async(
            types.HoverParams(types.TextDocumentIdentifier(s_uri), types.Position(3, 2))
        )
        assert hover is not None and "square" in hover.contents.value
