"""Document symbols of assembly buffers (the editor's Outline and breadcrumbs): sections,
functions with their labels inside, and labels outside functions. Built as plain JSON
objects, cached per buffer version: a 100,000-line file has thousands of them. (For C,
clangd gives symbols and navigation; asmopt does not compete.)"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from asmopt.server.asm_outline import NOISE, outline
from asmopt.server.documents import Language
from asmopt.server.protocol import encoded

if TYPE_CHECKING:
    from asmopt.server.server import AsmoptLanguageServer

FUNCTION, SECTION, LABEL = (
    types.SymbolKind.Function.value,
    types.SymbolKind.Namespace.value,
    types.SymbolKind.Key.value,
)


# A compiler's numbered branch targets (.L3, .L17): thousands in a big file, and nothing a
# reader looks for in an Outline (Compiler Explorer hides them too). Named labels stay, and
# every label keeps definition and references.
_JUMP_TARGET = re.compile(r"\.L\d+$")


def _range(line: int, start: int, end_line: int, end: int) -> dict[str, Any]:
    return {
        "start": {"line": line, "character": start},
        "end": {"line": end_line, "character": end},
    }


def symbols(buffer: Any, functions: list[Any]) -> list[dict[str, Any]]:
    found = outline(buffer)
    names = {fn.name for fn in functions}
    top: list[tuple[int, dict[str, Any]]] = []
    for section in found.sections:
        text = buffer.line(section.line)
        top.append(
            (
                section.line,
                {
                    "name": section.name,
                    "kind": SECTION,
                    "range": _range(section.line, 0, section.line, len(text)),
                    "selectionRange": _range(section.line, 0, section.line, len(text)),
                },
            )
        )
    containers = []
    for fn in functions:
        entry = {
            "name": fn.name,
            "kind": FUNCTION,
            "range": _range(fn.range.start.line, 0, fn.range.end.line, 0),
            "selectionRange": _range(
                fn.name_range.start.line,
                fn.name_range.start.character,
                fn.name_range.end.line,
                fn.name_range.end.character,
            ),
            "children": [],
        }
        containers.append((fn.range.start.line, fn.range.end.line, entry))
        top.append((fn.range.start.line, entry))
    k = 0
    for label in found.labels:
        if label.name in names or NOISE.match(label.name) or _JUMP_TARGET.match(label.name):
            continue
        while k < len(containers) and containers[k][1] <= label.line:
            k += 1
        entry = {
            "name": label.name,
            "kind": LABEL,
            "range": _range(label.line, label.column, label.line, label.column + len(label.name)),
            "selectionRange": _range(
                label.line, label.column, label.line, label.column + len(label.name)
            ),
        }
        if k < len(containers) and containers[k][0] <= label.line:
            containers[k][2]["children"].append(entry)
        else:
            top.append((label.line, entry))
    top.sort(key=lambda item: item[0])
    return [entry for _, entry in top]


def register(server: AsmoptLanguageServer) -> None:
    cache: dict[str, tuple[Any, Any]] = {}

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    async def document_symbol(ls: AsmoptLanguageServer, params: types.DocumentSymbolParams) -> Any:
        buffer = ls.documents.get(params.text_document.uri)
        if buffer is None or buffer.too_large or buffer.language is not Language.ASM:
            return None
        functions = await ls.functions(buffer)
        key = (buffer.text, functions)
        cached = cache.get(buffer.uri)
        if cached is not None and cached[0][0] is key[0] and cached[0][1] is key[1]:
            return cached[1]
        found = encoded(symbols(buffer, functions))
        cache[buffer.uri] = (key, found)
        if len(cache) > 32:
            cache.pop(next(iter(cache)))
        return found
