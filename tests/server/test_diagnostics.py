"""Diagnostics: assembler errors in assembly buffers, and the failed tests of the last run as
Information on the function's name."""

from __future__ import annotations

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio


async def test_assembler_errors_are_reported_and_cleared(workspace, lsp):
    async with lsp.session(workspace) as s:
        uri = s.open("prog.s")
        await s.wait_for(lambda: uri in s.client.diagnostics, what="first diagnostics")
        assert list(s.client.diagnostics[uri]) == []
        broken = lsp.PROG_S.replace("\timull\t%edi, %eax", "\timull\t%edi, %eax, %bogus")
        s.change(uri, broken)
        await s.wait_for(lambda: s.client.diagnostics.get(uri), what="an assembler error")
        (diag,) = s.client.diagnostics[uri]
        assert diag.source == "asmopt"
        assert diag.severity == types.DiagnosticSeverity.Error
        assert diag.range.start.line == 6
        s.change(uri, lsp.PROG_S)
        await s.wait_for(
            lambda: s.client.diagnostics.get(uri) is not None and not s.client.diagnostics[uri],
            what="errors cleared",
        )


async def test_failed_tests_are_information_on_the_name(workspace, lsp):
    lsp.set_fake(workspace, "fail")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await s.wait_for(lambda: s.client.diagnostics.get(uri), what="test diagnostics")
        (diag,) = s.client.diagnostics[uri]
        assert diag.severity == types.DiagnosticSeverity.Information
        assert (diag.range.start.line, diag.range.start.character) == (2, 5)
        assert "failed 3/10 tests" in diag.message and "t7 (wrong-output)" in diag.message
