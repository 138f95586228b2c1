"""Editor buffers and the functions in them.

A :class:`Buffer` keeps the text the client sent (applying incremental changes itself, so that
it knows the old text of every edit) and, for C, a tree-sitter tree that is edited and
re-parsed incrementally on each change. Functions come from that tree (C) or from
:mod:`asmopt.executor.asmfile` (GAS assembly, AT&T and Intel syntax).

Positions on the wire are counted in the negotiated encoding (UTF-16 code units unless the
client chose UTF-8 or UTF-32); tree-sitter counts UTF-8 bytes. All conversions live here.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lsprotocol import types

# Bigger buffers are not analysed: parsing them on every keystroke would stall the server.
MAX_ANALYSED_CHARS = 2_000_000

_NEWLINE = re.compile(r"\r\n|\r|\n")


class Language(enum.StrEnum):
    C = "c"
    ASM = "asm"


def language_for(language_id: str | None) -> Language | None:
    """The language of a ``languageId`` (docs/protocol.md); None for ids asmopt ignores."""
    if not language_id:
        return None
    lowered = language_id.lower()
    if lowered == "c":
        return Language.C
    if lowered.endswith("asm") or lowered.startswith("asm-") or lowered == "gas":
        return Language.ASM
    return None


@dataclass(frozen=True)
class FunctionInfo:
    """A function of a buffer: its whole range, its name, and where its signature ends (for
    the inlay hint)."""

    name: str
    range: types.Range
    name_range: types.Range
    signature_end: types.Position

    def contains(self, position: types.Position) -> bool:
        return _le(self.range.start, position) and _le(position, self.range.end)


def _le(a: types.Position, b: types.Position) -> bool:
    return (a.line, a.character) <= (b.line, b.character)


# --------------------------------------------------------------------------- text and positions


def _units(text: str, encoding: str) -> int:
    """Length of ``text`` in the position encoding's units."""
    if encoding == types.PositionEncodingKind.Utf32 or text.isascii():
        return len(text)
    if encoding == types.PositionEncodingKind.Utf8:
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _chars_for_units(line: str, units: int, encoding: str) -> int:
    """How many characters of ``line`` make up ``units`` units (clamped to the line)."""
    if units <= 0:
        return 0
    if encoding == types.PositionEncodingKind.Utf32 or line.isascii():
        return min(units, len(line))
    count = 0
    for i, ch in enumerate(line):
        if encoding == types.PositionEncodingKind.Utf8:
            count += len(ch.encode("utf-8", "surrogatepass"))
        else:
            count += 2 if ord(ch) > 0xFFFF else 1
        if count >= units:
            return i + 1
    return len(line)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


class Buffer:
    """One open document: its text, language, version and functions."""

    def __init__(
        self,
        uri: str,
        language: Language,
        text: str,
        version: int | None = None,
        encoding: str = types.PositionEncodingKind.Utf16,
    ) -> None:
        self.uri = uri
        self.language = language
        self.version = version
        self.encoding = encoding
        self._text = text
        self._line_starts: list[int] | None = None
        self._tree: Any = None
        self._functions: list[FunctionInfo] | None = None
        self._asm_cache: tuple[str, list[FunctionInfo]] | None = None
        self.too_large = len(text) > MAX_ANALYSED_CHARS
        if language is Language.C and not self.too_large:
            self._tree = _c_parser().parse(_encode(text))

    # ---------------------------------------------------------------- text

    @property
    def text(self) -> str:
        return self._text

    @property
    def line_starts(self) -> list[int]:
        if self._line_starts is None:
            starts = [0]
            starts.extend(m.end() for m in _NEWLINE.finditer(self._text))
            self._line_starts = starts
        return self._line_starts

    def line_count(self) -> int:
        return len(self.line_starts)

    def line(self, number: int) -> str:
        """Line ``number`` without its line break ('' past the end)."""
        starts = self.line_starts
        if number < 0 or number >= len(starts):
            return ""
        end = starts[number + 1] if number + 1 < len(starts) else len(self._text)
        return self._text[starts[number] : end].rstrip("\r\n")

    def offset_at(self, position: types.Position) -> int:
        """Character offset of an LSP position (clamped into the text)."""
        starts = self.line_starts
        if position.line < 0:
            return 0
        if position.line >= len(starts):
            return len(self._text)
        return starts[position.line] + _chars_for_units(
            self.line(position.line), position.character, self.encoding
        )

    def position_at(self, offset: int) -> types.Position:
        """LSP position of a character offset."""
        import bisect

        offset = max(0, min(offset, len(self._text)))
        line = bisect.bisect_right(self.line_starts, offset) - 1
        prefix = self._text[self.line_starts[line] : offset]
        return types.Position(line, _units(prefix, self.encoding))

    def end_position(self) -> types.Position:
        last = self.line_count() - 1
        return types.Position(last, _units(self.line(last), self.encoding))

    def _point(self, offset: int) -> tuple[int, int]:
        """tree-sitter point (row, UTF-8 byte column) of a character offset."""
        import bisect

        line = bisect.bisect_right(self.line_starts, offset) - 1
        return line, len(_encode(self._text[self.line_starts[line] : offset]))

    def _byte_offset(self, offset: int) -> int:
        if self._text.isascii():
            return offset
        return len(_encode(self._text[:offset]))

    def position_of_point(self, row: int, column: int) -> types.Position:
        """LSP position of a tree-sitter point."""
        line = self.line(row)
        if line.isascii():
            return types.Position(row, min(column, len(line)))
        prefix = _encode(line)[:column].decode("utf-8", "surrogatepass")
        return types.Position(row, _units(prefix, self.encoding))

    # ---------------------------------------------------------------- changes

    def apply_change(self, change: Any) -> None:
        """Apply one ``TextDocumentContentChangeEvent`` (incremental or whole text)."""
        change_range = getattr(change, "range", None)
        if change_range is None:
            self._replace_all(change.text)
            return
        start = self.offset_at(change_range.start)
        end = max(start, self.offset_at(change_range.end))
        self._splice(start, end, change.text)

    def _replace_all(self, text: str) -> None:
        self._text = text
        self._line_starts = None
        self._functions = None
        self.too_large = len(text) > MAX_ANALYSED_CHARS
        if self.language is Language.C:
            self._tree = None if self.too_large else _c_parser().parse(_encode(text))

    def _splice(self, start: int, end: int, new: str) -> None:
        old_text = self._text
        if self._tree is not None:
            start_byte = self._byte_offset(start)
            old_end_byte = self._byte_offset(end)
            start_point = self._point(start)
            old_end_point = self._point(end)
        self._text = old_text[:start] + new + old_text[end:]
        self._line_starts = None
        self._functions = None
        if len(self._text) > MAX_ANALYSED_CHARS:
            self.too_large = True
            self._tree = None
            return
        if self.too_large:  # shrank below the limit: parse afresh
            self._replace_all(self._text)
            return
        if self.language is not Language.C:
            return
        if self._tree is None:
            self._tree = _c_parser().parse(_encode(self._text))
            return
        new_bytes = _encode(new)
        lines = _NEWLINE.split(new)
        if len(lines) == 1:
            new_end_point = (start_point[0], start_point[1] + len(new_bytes))
        else:
            new_end_point = (start_point[0] + len(lines) - 1, len(_encode(lines[-1])))
        self._tree.edit(
            start_byte=start_byte,
            old_end_byte=old_end_byte,
            new_end_byte=start_byte + len(new_bytes),
            start_point=start_point,
            old_end_point=old_end_point,
            new_end_point=new_end_point,
        )
        self._reparse()

    def _reparse(self) -> None:
        self._tree = _c_parser().parse(_encode(self._text), self._tree)

    def replace_text(self, text: str, version: int | None) -> None:
        """Start again from ``text`` (when the buffer got out of step with the client)."""
        self._replace_all(text)
        self.version = version

    def apply_changes(self, changes: Iterable[Any], version: int | None) -> None:
        for change in changes:
            self.apply_change(change)
        self.version = version

    # ---------------------------------------------------------------- functions

    @property
    def tree(self) -> Any:
        return self._tree

    def functions(self) -> list[FunctionInfo]:
        """The functions of the buffer (cached until the next change). For assembly the
        caller should prefer :meth:`functions_if_ready` on the event loop and compute
        :meth:`asm_functions` in a thread: asmfile is pure Python."""
        if self._functions is None:
            if self.too_large:
                self._functions = []
            elif self.language is Language.C:
                self._functions = _c_functions(self)
            else:
                self._functions = self.asm_functions()
        return self._functions

    def functions_if_ready(self) -> list[FunctionInfo] | None:
        """The functions when they are known without work, else None."""
        if self._functions is not None:
            return self._functions
        if self.language is Language.C or self.too_large:
            return self.functions()
        if self._asm_cache is not None and self._asm_cache[0] is self._text:
            self._functions = self._asm_cache[1]
            return self._functions
        return None

    def stale_functions(self) -> list[FunctionInfo]:
        """The last functions computed, possibly for an older text (for display only)."""
        ready = self.functions_if_ready()
        if ready is not None:
            return ready
        return self._asm_cache[1] if self._asm_cache else []

    def asm_functions(self, text: str | None = None) -> list[FunctionInfo]:
        """Functions of an assembly text (default: this buffer's); safe to call in a thread."""
        text = self._text if text is None else text
        if self._asm_cache is not None and self._asm_cache[0] is text:
            return self._asm_cache[1]
        found = asm_functions(text, self.encoding)
        self._asm_cache = (text, found)
        return found

    def function_named(self, name: str) -> FunctionInfo | None:
        return next((f for f in self.functions() if f.name == name), None)

    def function_at(self, position: types.Position) -> FunctionInfo | None:
        """The innermost function whose range contains ``position``."""
        best = None
        for fn in self.functions():
            if fn.contains(position):
                best = fn
        return best


# --------------------------------------------------------------------------- C


_PARSER: Any = None


def _c_parser() -> Any:
    global _PARSER  # one parser per process; tree-sitter parsers are cheap but not free
    if _PARSER is None:
        import tree_sitter_c
        from tree_sitter import Language as TSLanguage
        from tree_sitter import Parser

        _PARSER = Parser(TSLanguage(tree_sitter_c.language()))
    return _PARSER


_QUERY: Any = None


def _c_function_query() -> Any:
    global _QUERY
    if _QUERY is None:
        import tree_sitter_c
        from tree_sitter import Language as TSLanguage
        from tree_sitter import Query, QueryCursor

        _QUERY = QueryCursor(
            Query(TSLanguage(tree_sitter_c.language()), "(function_definition) @f")
        )
    return _QUERY


def _declarator_name(node: Any) -> tuple[Any, Any] | None:
    """(identifier node, function_declarator node) of a function definition's declarator."""
    function_declarator = None
    current = node
    for _ in range(32):  # declarators nest, but never deeply in real code
        if current is None:
            return None
        kind = current.type
        if kind == "function_declarator" and function_declarator is None:
            function_declarator = current
        if kind in ("identifier", "field_identifier") and function_declarator is not None:
            return current, function_declarator
        inner = current.child_by_field_name("declarator")
        if inner is None:
            inner = next((c for c in current.named_children if c.type != "attribute"), None)
        current = inner
    return None


def _c_functions(buffer: Buffer) -> list[FunctionInfo]:
    tree = buffer.tree
    if tree is None:
        return []
    found: list[FunctionInfo] = []
    # A query runs in C and also finds the definitions that error recovery nested inside
    # a half-typed function's body, which a walk over top-level nodes would miss.
    definitions = _c_function_query().captures(tree.root_node).get("f", [])
    for node in definitions:
        named = _declarator_name(node.child_by_field_name("declarator"))
        if named is None:
            continue
        ident, declarator = named
        name = ident.text.decode("utf-8", "replace") if ident.text else ""
        if not name:
            continue
        found.append(
            FunctionInfo(
                name=name,
                range=types.Range(
                    buffer.position_of_point(*node.start_point),
                    buffer.position_of_point(*node.end_point),
                ),
                name_range=types.Range(
                    buffer.position_of_point(*ident.start_point),
                    buffer.position_of_point(*ident.end_point),
                ),
                signature_end=buffer.position_of_point(*declarator.end_point),
            )
        )
    # the stack walk visits containers out of order; users expect file order
    found.sort(key=lambda f: (f.range.start.line, f.range.start.character))
    return found


# --------------------------------------------------------------------------- assembly


def asm_functions(
    text: str, encoding: str = types.PositionEncodingKind.Utf16
) -> list[FunctionInfo]:
    """The functions of GAS assembly ``text``; gcc's parts and clones (``f.cold``,
    ``f.part.0``) are left out: they are optimized with the function they were made from."""
    from asmopt.executor.asmfile import parse_functions

    try:
        parsed = parse_functions(text)
    except Exception:  # a half-typed buffer must never break the editor
        return []
    lines = text.splitlines()
    found = []
    for fn in parsed:
        if fn.parent is not None:
            continue
        label = lines[fn.label_line] if fn.label_line < len(lines) else ""
        column = label.find(fn.name)
        column = max(column, 0)
        prefix = label[:column]
        start_units = _units(prefix, encoding)
        name_units = _units(fn.name, encoding)
        colon = label.find(":", column + len(fn.name))
        sig_units = _units(label[: colon + 1], encoding) if colon >= 0 else start_units + name_units
        end_line = max(fn.end_line, fn.label_line + 1)
        found.append(
            FunctionInfo(
                name=fn.name,
                range=types.Range(types.Position(fn.start_line, 0), types.Position(end_line, 0)),
                name_range=types.Range(
                    types.Position(fn.label_line, start_units),
                    types.Position(fn.label_line, start_units + name_units),
                ),
                signature_end=types.Position(fn.label_line, sig_units),
            )
        )
    return found


class DocumentStore:
    """The open buffers asmopt understands, by URI."""

    def __init__(self) -> None:
        self._buffers: dict[str, Buffer] = {}

    def open(
        self, uri: str, language_id: str, text: str, version: int | None, encoding: str
    ) -> Buffer | None:
        language = language_for(language_id)
        if language is None:
            self._buffers.pop(uri, None)
            return None
        buffer = Buffer(uri, language, text, version, encoding)
        self._buffers[uri] = buffer
        return buffer

    def get(self, uri: str) -> Buffer | None:
        return self._buffers.get(uri)

    def close(self, uri: str) -> Buffer | None:
        return self._buffers.pop(uri, None)

    def __iter__(self):
        return iter(list(self._buffers.values()))
