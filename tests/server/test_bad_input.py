"""Bad input never crashes the server: it says what happened. A failing or crashing
optimizer, a buffer closed or a function renamed mid-run, unsaved or untitled buffers, huge
and non-UTF-8 files, unknown languages."""

from __future__ import annotations

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio


async def _ended(s):
    await s.wait_for(
        lambda: s.progress_kinds() and s.progress_kinds()[-1][-1] == "end", what="progress end"
    )


@pytest.mark.parametrize(
    ("mode", "says"), [("error", "no tests found"), ("crash", "ended unexpectedly")]
)
async def test_failing_optimizer_is_a_message(workspace, lsp, mode, says):
    lsp.set_fake(workspace, mode)
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await _ended(s)
        await s.wait_for(lambda: any(says in m for m in s.messages()), what=says)
        assert await s.lenses(uri) == ["Optimize", "Optimize"]


async def test_buffer_closed_mid_run(workspace, lsp):
    lsp.set_fake(workspace, "faster", stage_delay=0.3)
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        s.close(uri)
        await _ended(s)
        await s.wait_for(lambda: any("was closed" in m for m in s.messages()), what="message")
        uri = s.open("prog.c")
        assert (await s.wait_for_lens(uri, "✓"))[0].startswith("✓")


async def test_function_renamed_mid_run(workspace, lsp):
    lsp.set_fake(workspace, "faster", stage_delay=0.3)
    async with lsp.session(workspace) as s:
        uri = s.open("prog.s")
        await s.command("asmopt.optimizeFunction", uri, "square")
        s.change(uri, lsp.PROG_S.replace("square", "cube"))
        await _ended(s)
        await s.wait_for(
            lambda: any("no longer in prog.s" in m for m in s.messages()), what="message"
        )
        titles = await s.lenses(uri)
        assert titles == ["Optimize", "Optimize"]  # cube and main: nothing to show


async def test_unsaved_untitled_and_missing_functions_are_refused(workspace, lsp):
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        s.change(uri, lsp.PROG_C + "\n// edited\n")
        assert await s.command("asmopt.optimizeFunction", uri, "sum_to") is None
        untitled = "untitled:Untitled-1"
        s.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=untitled, language_id="c", version=1, text=lsp.PROG_C)
            )
        )
        assert await s.command("asmopt.optimizeFile", untitled) is None
        other = s.open("prog.s")
        assert await s.command("asmopt.optimizeFunction", other, "nope") is None
        assert await s.command("asmopt.optimizeFunction") is None
        await s.wait_for(lambda: len(s.messages()) >= 4, what="four messages")
        text = " | ".join(s.messages())
        assert "save prog.c first" in text and "save untitled:Untitled-1 to a file first" in text
        assert "no function `nope`" in text and "needs the document's URI" in text
        assert s.client.progress_reports == {}


async def test_huge_and_non_utf8_files(workspace, lsp):
    (workspace / "latin1.c").write_bytes(b"/* caf\xe9 */\nint f(void) { return 1; }\n")
    huge = "int x;\n" * 400_000  # 2.8 MB
    async with lsp.session(workspace) as s:
        uri = s.open("big.c", text=huge)
        await s.wait_for(lambda: any("too large" in m for m in s.messages()), what="message")
        assert await s.lenses(uri) == []
        # a client that decoded a non-UTF-8 file with replacement (or lone surrogates)
        uri = s.open("latin1.c", text="/* caf\udce9 */\nint f(void) { return 1; }\n")
        assert await s.lenses(uri) == ["Optimize"]
        s.open("weird.s", text="\udcff\x00garbage:\n\tbogus %eax\n")
        await s.wait_for(lambda: s.client.diagnostics.get(s.uri("weird.s")), what="as errors")
        assert s.client.error is None
