"""Go to definition and find references for the labels and symbols of an assembly buffer
(within the file), and folding of its functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lsprotocol import types

from asmopt.server.asm_outline import outline, references, word_at
from asmopt.server.documents import Language

if TYPE_CHECKING:
    from asmopt.server.documents import Buffer
    from asmopt.server.server import AsmoptLanguageServer


def _symbol_at(buffer: Buffer, position: types.Position) -> str | None:
    line = buffer.line(position.line)
    column = (
        buffer.offset_at(position) - buffer.line_starts[min(position.line, buffer.line_count() - 1)]
    )
    found = word_at(line, column)
    return found[0] if found else None


def _location(uri: str, buffer: Buffer, line: int, column: int, length: int) -> types.Location:
    start = buffer.position_at(buffer.line_starts[line] + column)
    end = buffer.position_at(buffer.line_starts[line] + column + length)
    return types.Location(uri=uri, range=types.Range(start, end))


def _asm_buffer(server: AsmoptLanguageServer, uri: str) -> Buffer | None:
    buffer = server.documents.get(uri)
    if buffer is None or buffer.too_large or buffer.language is not Language.ASM:
        return None
    return buffer


def register(server: AsmoptLanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: AsmoptLanguageServer, params: types.DefinitionParams) -> Any:
        buffer = _asm_buffer(ls, params.text_document.uri)
        if buffer is None:
            return None
        name = _symbol_at(buffer, params.position)
        label = outline(buffer).definitions.get(name) if name else None
        if label is None:
            return None
        return _location(buffer.uri, buffer, label.line, label.column, len(label.name))

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    def find_references(ls: AsmoptLanguageServer, params: types.ReferenceParams) -> Any:
        buffer = _asm_buffer(ls, params.text_document.uri)
        if buffer is None:
            return None
        name = _symbol_at(buffer, params.position)
        if not name:
            return []
        definition = outline(buffer).definitions.get(name)
        found = []
        for offset in references(buffer.text, name):
            start = buffer.position_at(offset)
            if (
                not params.context.include_declaration
                and definition is not None
                and start.line == definition.line
            ):
                continue
            found.append(
                types.Location(
                    uri=buffer.uri, range=types.Range(start, buffer.position_at(offset + len(name)))
                )
            )
        return found

    @server.feature(types.TEXT_DOCUMENT_FOLDING_RANGE)
    async def folding(ls: AsmoptLanguageServer, params: types.FoldingRangeParams) -> Any:
        buffer = _asm_buffer(ls, params.text_document.uri)
        if buffer is None:
            return None
        return [
            {
                "startLine": fn.range.start.line,
                "endLine": max(fn.range.end.line - 1, fn.range.start.line),
                "kind": "region",
            }
            for fn in await ls.functions(buffer)
            if fn.range.end.line - 1 > fn.range.start.line
        ]
