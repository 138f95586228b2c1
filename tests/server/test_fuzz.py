"""Thousands of random edits and requests against one server: no unhandled error, no crash,
and the server's view of each buffer stays the client's."""

from __future__ import annotations

import random

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio

SNIPPETS = [
    "int f(int x) { return x * 2; }\n",
    "{",
    "}",
    "(",
    ")",
    ";",
    "\n",
    "é",
    "😀",
    "",
    "#if X\n",
    "#endif\n",
    "/*",
    "*/",
    '"',
    "movl $1, %eax\n",
    "f:\n",
    ".globl f\n",
    "\x00",
    "\udcff",
    "static long g(void)\n{\n",
]


def _position(text: str, offset: int) -> types.Position:
    before = text[:offset]
    line = before.count("\n")
    column = before[before.rfind("\n") + 1 :]
    return types.Position(line, len(column.encode("utf-16-le", "surrogatepass")) // 2)


async def test_random_edits_and_requests(workspace, lsp):
    rng = random.Random(20240601)
    async with lsp.session(workspace) as s:
        docs = {
            s.open("prog.c"): lsp.PROG_C,
            s.open("prog.s"): lsp.PROG_S,
            s.open("notes.txt", language="plaintext", text="hello"): "hello",
        }
        for step in range(2500):
            uri = rng.choice(list(docs))
            text = docs[uri]
            start = rng.randint(0, len(text))
            end = min(len(text), start + rng.randint(0, 12))
            new = rng.choice(SNIPPETS)
            s.change(uri, new, types.Range(_position(text, start), _position(text, end)))
            docs[uri] = text[:start] + new + text[end:]
            if step % 5 == 0:
                text = docs[uri]
                where = _position(text, rng.randint(0, len(text)))
                doc = types.TextDocumentIdentifier(uri)
                kind = rng.randrange(5)
                if kind == 0:
                    await s.client.text_document_code_lens_async(types.CodeLensParams(doc))
                elif kind == 1:
                    await s.client.text_document_hover_async(types.HoverParams(doc, where))
                elif kind == 2:
                    await s.client.text_document_code_action_async(
                        types.CodeActionParams(
                            doc, types.Range(where, where), types.CodeActionContext(diagnostics=[])
                        )
                    )
                elif kind == 3:
                    await s.client.text_document_inlay_hint_async(
                        types.InlayHintParams(doc, types.Range(types.Position(0, 0), where))
                    )
                else:
                    await s.command("asmopt.applyCandidate", uri, rng.choice(["f", "main", None]))
        # the server's idea of each C buffer is the client's: its lenses match a fresh open
        uri = s.uri("prog.c")
        before = await s.lenses(uri)
        s.close(uri)
        s.open("prog.c", text=docs[uri])
        assert await s.lenses(uri) == before
        errors = [m for m in s.client.messages if m.type == types.MessageType.Error]
        assert errors == []
        assert s.client.error is None
