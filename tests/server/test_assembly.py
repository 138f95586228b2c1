"""Assembly as a first-class language: the Outline (sections, functions, their labels),
go to definition and find references within the file, folding of functions, and each
instruction's latency, reciprocal throughput and micro-ops on hover (llvm-mca)."""

from __future__ import annotations

import shutil

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio

LOOP_S = """\
\t.text
\t.globl\tsum
\t.type\tsum, @function
sum:
\t.cfi_startproc
\txorl\t%eax, %eax
.Lloop:
\taddl\t(%rdi), %eax
\taddq\t$4, %rdi
\tdecl\t%esi
\tjne\t.Lloop
\tret
\t.cfi_endproc
\t.size\tsum, .-sum
\t.section\t.rodata
.LC0:
\t.long\t42
\t.text
\t.globl\tmain
\t.type\tmain, @function
main:
\tmovl\t.LC0(%rip), %eax
\tcall\tsum
\tret
\t.size\tmain, .-main
"""


def _doc(uri: str) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri)


async def test_outline_definition_references_and_folding(workspace, lsp):
    (workspace / "loop.s").write_text(LOOP_S)
    async with lsp.session(workspace) as s:
        uri = s.open("loop.s", language="")  # no languageId: the extension says assembly
        await s.wait_for_lens(uri, "Optimize")
        found = await s.client.text_document_document_symbol_async(
            types.DocumentSymbolParams(_doc(uri))
        )
        names = [sym.name for sym in found]
        assert names == [".text", "sum", ".rodata", ".LC0", ".text", "main"]
        by_name = {sym.name: sym for sym in found}
        assert by_name["sum"].kind == types.SymbolKind.Function
        assert [c.name for c in by_name["sum"].children] == [".Lloop"]
        assert by_name["sum"].selection_range.start == types.Position(3, 0)

        # `jne .Lloop` (line 10) -> the label on line 6
        where = await s.client.text_document_definition_async(
            types.DefinitionParams(_doc(uri), types.Position(10, 7))
        )
        assert where.range.start == types.Position(6, 0)
        # `call sum` -> sum:
        where = await s.client.text_document_definition_async(
            types.DefinitionParams(_doc(uri), types.Position(22, 7))
        )
        assert where.range.start == types.Position(3, 0)
        # a register is no symbol
        assert (
            await s.client.text_document_definition_async(
                types.DefinitionParams(_doc(uri), types.Position(5, 8))
            )
            is None
        )

        refs = await s.client.text_document_references_async(
            types.ReferenceParams(
                text_document=_doc(uri),
                position=types.Position(3, 1),
                context=types.ReferenceContext(include_declaration=True),
            )
        )
        assert sorted(r.range.start.line for r in refs) == [
            1,
            2,
            3,
            13,
            13,
            22,
        ]  # .size names it twice
        refs = await s.client.text_document_references_async(
            types.ReferenceParams(
                text_document=_doc(uri),
                position=types.Position(6, 2),
                context=types.ReferenceContext(include_declaration=False),
            )
        )
        assert [r.range.start.line for r in refs] == [10]

        folds = await s.client.text_document_folding_range_async(
            types.FoldingRangeParams(_doc(uri))
        )
        assert [(f.start_line, f.end_line) for f in folds] == [
            (0, 13),
            (17, 24),
        ]  # from the .text before each


@pytest.mark.skipif(shutil.which("llvm-mca") is None, reason="llvm-mca not installed")
async def test_instruction_cost_on_hover(workspace, lsp):
    (workspace / "loop.s").write_text(LOOP_S)
    async with lsp.session(workspace) as s:
        uri = s.open("loop.s")

        async def hover(line: int, character: int = 3) -> str | None:
            found = await s.client.text_document_hover_async(
                types.HoverParams(_doc(uri), types.Position(line, character))
            )
            return found.contents.value if found else None

        async def computed() -> str | None:
            text = await hover(7)
            return text if text and "computing" not in text else None

        text = await s.wait_for(computed, timeout=20, what="the instruction's cost")
        assert "addl (%rdi), %eax" in text
        assert "latency" in text and "reciprocal throughput" in text and "micro-ops" in text
        assert "loads" in text and "not a measurement" in text
        # the rest of the function came with it: no second wait
        assert "cycles" in (await hover(8))
        assert await hover(4) is None  # a directive
        assert await hover(6, 1) is None  # a label alone


async def test_numbered_branch_targets_stay_out_of_the_outline(workspace, lsp):
    """gcc's .L3-style jump targets are thousands in a big file: the Outline lists functions
    and named labels; go-to-definition still finds the numbered ones."""
    text = (
        "\t.text\n\t.globl f\n\t.type f, @function\nf:\n.L3:\n\tdecl %edi\n\tjne .L3\n"
        ".Lnamed:\n\tret\n\t.size f, .-f\n"
    )
    (workspace / "jumps.s").write_text(text)
    async with lsp.session(workspace) as s:
        uri = s.open("jumps.s", language="")
        await s.wait_for_lens(uri, "Optimize")
        found = await s.client.text_document_document_symbol_async(
            types.DocumentSymbolParams(_doc(uri))
        )
        f = next(sym for sym in found if sym.name == "f")
        assert [c.name for c in f.children] == [".Lnamed"]
        where = await s.client.text_document_definition_async(
            types.DefinitionParams(_doc(uri), types.Position(6, 6))
        )
        assert where.range.start == types.Position(4, 0)
