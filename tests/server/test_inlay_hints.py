"""Inlay hint `⚡ 1.31×` after the signature of a function with a verified faster candidate."""

from __future__ import annotations

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio


async def _hints(s, uri):
    return (
        await s.client.text_document_inlay_hint_async(
            types.InlayHintParams(
                text_document=types.TextDocumentIdentifier(uri),
                range=types.Range(types.Position(0, 0), types.Position(100, 0)),
            )
        )
        or []
    )


async def test_hint_after_the_signature(workspace, lsp):
    lsp.set_fake(workspace, "faster")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        assert await _hints(s, uri) == []
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await s.wait_for_lens(uri, "✓")
        (hint,) = await _hints(s, uri)
        assert hint.label == "⚡ 1.31×"
        # after `long sum_to(long n)`, on line 3 (0-based 2)
        assert (hint.position.line, hint.position.character) == (2, len("long sum_to(long n)"))


async def test_no_hint_when_not_faster(workspace, lsp):
    lsp.set_fake(workspace, "none")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.s")
        await s.command("asmopt.optimizeFunction", uri, "square")
        await s.wait_for_lens(uri, "no faster")
        assert await _hints(s, uri) == []
