"""Applying a candidate: workspace/applyEdit exactly as docs/protocol.md says, and the
asmopt/candidate request that feeds the client's diff view."""

from __future__ import annotations

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio


async def test_asm_buffer_replaces_the_function_region(workspace, lsp):
    lsp.set_fake(workspace, "faster")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.s")
        await s.command("asmopt.optimizeFunction", uri, "square")
        await s.wait_for_lens(uri, "✓")
        assert await s.command("asmopt.applyCandidate", uri, "square") == {"applied": True}
        (params,) = s.edits
        assert "1.31×" in params.label
        (doc_edit,) = params.edit.document_changes
        assert doc_edit.text_document.uri == uri and doc_edit.text_document.version == 1
        (edit,) = doc_edit.edits
        assert (edit.range.start.line, edit.range.start.character) == (0, 0)
        assert (edit.range.end.line, edit.range.end.character) == (10, 0)
        lines = lsp.PROG_S.splitlines(keepends=True)
        expected = "".join(lines[:4]) + f"\t{lsp.MARKER}\n" + "".join(lines[4:10])
        assert edit.new_text == expected
        # the server wrote nothing itself
        assert (workspace / "prog.s").read_text() == lsp.PROG_S

        payload = await s.client.protocol.send_request_async(
            "asmopt/candidate", {"uri": uri, "function": "square"}
        )
        assert payload.candidate == expected
        assert payload.original == "".join(lines[:10])
        assert payload.targetUri == uri and payload.function == "square"
        assert payload.testsPassed == 10 and payload.testsTotal == 10
        assert payload.policy == "compiler" and payload.label == "clang -O3"
        assert payload.speedup.median == 1.31 and payload.speedup.ciLow == pytest.approx(1.27)
        assert payload.speedup.runs == 40
        none = await s.client.protocol.send_request_async(
            "asmopt/candidate", {"uri": uri, "function": "main"}
        )
        assert none is None


async def test_c_buffer_creates_prog_opt_s(workspace, lsp):
    lsp.set_fake(workspace, "faster")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await s.wait_for_lens(uri, "✓")
        assert await s.command("asmopt.applyCandidate", uri, "sum_to") == {"applied": True}
        create, doc_edit = s.edits[0].edit.document_changes
        target = (workspace / "prog.opt.s").as_uri()
        assert isinstance(create, types.CreateFile) and create.uri == target
        assert doc_edit.text_document.uri == target
        (edit,) = doc_edit.edits
        assert "sum_to:" in edit.new_text and lsp.MARKER in edit.new_text
        assert not (workspace / "prog.opt.s").exists()

        # with PROG.opt.s already there: no CreateFile, the whole document is replaced
        (workspace / "prog.opt.s").write_text("old\ntext\n")
        await s.command("asmopt.applyCandidate", uri, "sum_to")
        (doc_edit,) = s.edits[1].edit.document_changes
        (edit,) = doc_edit.edits
        assert (edit.range.end.line, edit.range.end.character) == (2, 0)


async def test_apply_without_candidate_or_function_is_a_message(workspace, lsp):
    lsp.set_fake(workspace, "faster")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.s")
        result = await s.command("asmopt.applyCandidate", uri, "square")
        assert result["applied"] is False and "run Optimize first" in result["reason"]
        await s.command("asmopt.optimizeFunction", uri, "square")
        await s.wait_for_lens(uri, "✓")
        s.change(uri, lsp.PROG_S.replace("square", "cube"))  # renamed in the buffer
        result = await s.command("asmopt.applyCandidate", uri, "square")
        assert result["applied"] is False and "no longer in prog.s" in result["reason"]
        assert s.edits == []
