"""Inlay hint after a function's signature: ``⚡ 1.31×`` when a verified faster candidate
exists."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from asmopt.server.server import AsmoptLanguageServer


def register(server: AsmoptLanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLAY_HINT)
    async def inlay_hints(
        ls: AsmoptLanguageServer, params: types.InlayHintParams
    ) -> list[types.InlayHint]:
        buffer = ls.documents.get(params.text_document.uri)
        source = ls.source_of(params.text_document.uri)
        if buffer is None or buffer.too_large or source is None:
            return []
        results = ls.results.for_source(source)
        if not any(r.faster for r in results.values()):
            return []
        first, last = params.range.start.line, params.range.end.line
        hints = []
        for fn in await ls.functions(buffer):
            result = results.get(fn.name)
            if result is None or not result.faster or not first <= fn.signature_end.line <= last:
                continue
            s = result.speedup
            assert s is not None  # a faster result has one
            hints.append(
                types.InlayHint(
                    position=fn.signature_end,
                    label=f"⚡ {result.median:.2f}×",
                    padding_left=True,
                    tooltip=(
                        f"asmopt: {result.median:.2f}× faster than gcc -O3 (95% CI "
                        f"{s.ci_low:.2f}–{s.ci_high:.2f}), "
                        f"{result.tests_passed}/{result.tests_total} tests passed"
                    ),
                )
            )
        return hints
