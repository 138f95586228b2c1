"""Hover: on a function name the measured result (with CI, tests, policy) and llvm-mca
estimates labelled as such; on a C line the instructions gcc -O3 made for it."""

from __future__ import annotations

import shutil

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio


async def _hover(s, uri, line, character):
    found = await s.client.text_document_hover_async(
        types.HoverParams(types.TextDocumentIdentifier(uri), types.Position(line, character))
    )
    return found.contents.value if found else None


async def test_hover_on_function_name_shows_measured_and_estimate(workspace, lsp):
    lsp.set_fake(workspace, "faster")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.s")
        before = await _hover(s, uri, 3, 2)
        assert "Not optimized yet" in before
        await s.command("asmopt.optimizeFunction", uri, "square")
        await s.wait_for_lens(uri, "✓")
        text = await _hover(s, uri, 3, 2)
        assert "1.31× faster than gcc -O3 (95% CI 1.27–1.35" in text
        assert "10/10 tests passed" in text and "policy `compiler`" in text
        assert "*Estimate* (llvm-mca model, not a measurement)" in text
        if shutil.which("llvm-mca") or shutil.which("llvm-mca-14"):
            assert "cycles/iteration" in text


async def test_hover_on_a_c_line_shows_gcc_instructions(workspace, lsp):
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        text = await s.wait_for(lambda: _hover(s, uri, 6, 10), what="line hover")
        assert text.startswith("**gcc -O3** for line 7")
        assert "```asm" in text
        # hovering again (same version) is answered from the cache
        assert await _hover(s, uri, 6, 10) == text
        # a blank line has no hover
        assert await _hover(s, uri, 1, 0) is None
