"""Editor buffers and the functions in them.

A :class:`Buffer` keeps the text the client sent (applying incremental changes itself, so that
it knows the old text of every edit) and, for C, a tree-sitter tree that is edited and
re-parsed incrementally on each change. Functions come from that tree (C) or from
:mod:`asmopt.executor.asmfile` (GAS assembly, AT&T and Intel syntax).

Positions on the wire are counted in the negotiated encoding (UTF-16 code units unless the
client chose UTF-8 or UTF-32); tree-sitter counts UTF-8 bytes. The conversions live in
:mod:`asmopt.server.text`; where functions are, in :mod:`asmopt.server.functions`.
"""

from __future__ import annotations

import bisect
import enum
import itertools
import re
from collections.abc import Iterable
from typing import Any

from lsprotocol import types

from asmopt.server.functions import (
    AsmFunctionIndex,
    FunctionInfo,
    asm_functions,
    c_functions,
    c_parser,
    parse_asm,
)
from asmopt.server.text import chars_for_units, slice_lines, split_lines, units, utf8

# FunctionInfo, asm_functions and parse_asm are part of this module's interface: callers ask
# a buffer for its functions and need not know which module finds them.
__all__ = [
    "Buffer",
    "DocumentStore",
    "FunctionInfo",
    "Language",
    "asm_functions",
    "language_for",
    "language_of",
    "parse_asm",
]

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


_UNKNOWN_IDS = frozenset({"", "plaintext", "text", "txt", "unknown", "none", "undefined"})
_EXTENSIONS = {".c": Language.C, ".s": Language.ASM, ".asm": Language.ASM}


def language_of(language_id: str | None, uri: str) -> Language | None:
    """The language of a buffer: its ``languageId``, else, when the id says nothing (empty,
    as from Neovim without filetype detection, or plain text), its file name's extension.
    Another language the editor named (``python``) is respected."""
    language = language_for(language_id)
    if language is not None:
        return language
    if (language_id or "").strip().lower() not in _UNKNOWN_IDS:
        return None
    name = uri.rsplit("/", 1)[-1].split("?", 1)[0]
    dot = name.rfind(".")
    if dot <= 0:
        return None
    suffix = name[dot:]
    return _EXTENSIONS.get(suffix) or _EXTENSIONS.get(suffix.lower())


class Buffer:
    """One open document: its text, language, version and functions.

    The text is kept as a list of lines (each with its line break), so an edit costs the
    lines it touches, not the whole buffer: a 100,000-line assembly file stays responsive
    while it is typed in. The whole text is joined only when something asks for it.
    """

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
        self._tree: Any = None
        self._text: str | None = None
        self._line_starts: list[int] | None = None
        self._functions: list[FunctionInfo] | None = None
        self._asm = AsmFunctionIndex()
        self._replace_all(text)

    # ---------------------------------------------------------------- text

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = "".join(self._lines)
        return self._text

    @property
    def lines(self) -> list[str]:
        """The lines, each with its line break (the last has none); do not modify."""
        return self._lines

    @property
    def line_starts(self) -> list[int]:
        if self._line_starts is None:
            self._line_starts = list(itertools.accumulate(map(len, self._lines[:-1]), initial=0))
        return self._line_starts

    def line_count(self) -> int:
        return len(self._lines)

    def line(self, number: int) -> str:
        """Line ``number`` without its line break ('' past the end)."""
        if number < 0 or number >= len(self._lines):
            return ""
        return self._lines[number].rstrip("\r\n")

    def _column(self, position: types.Position) -> tuple[int, int]:
        """(line, character index in that line) of an LSP position, clamped into the text."""
        if position.line < 0:
            return 0, 0
        if position.line >= len(self._lines):
            last = len(self._lines) - 1
            return last, len(self._lines[last])
        line = self.line(position.line)
        return position.line, chars_for_units(line, position.character, self.encoding)

    def offset_at(self, position: types.Position) -> int:
        """Character offset of an LSP position (clamped into the text)."""
        line, column = self._column(position)
        return self.line_starts[line] + column

    def position_at(self, offset: int) -> types.Position:
        """LSP position of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.line_starts, offset) - 1
        prefix = self._lines[line][: offset - self.line_starts[line]]
        return types.Position(line, units(prefix, self.encoding))

    def end_position(self) -> types.Position:
        last = self.line_count() - 1
        return types.Position(last, units(self.line(last), self.encoding))

    def position_of_point(self, row: int, column: int) -> types.Position:
        """LSP position of a tree-sitter point."""
        line = self.line(row)
        if line.isascii():
            return types.Position(row, min(column, len(line)))
        prefix = utf8(line)[:column].decode("utf-8", "surrogatepass")
        return types.Position(row, units(prefix, self.encoding))

    # ---------------------------------------------------------------- changes

    def apply_change(self, change: Any) -> None:
        """Apply one ``TextDocumentContentChangeEvent`` (incremental or whole text)."""
        change_range = getattr(change, "range", None)
        if change_range is None:
            self._replace_all(change.text)
            return
        start = self._column(change_range.start)
        end = self._column(change_range.end)
        if end < start:
            end = start
        self._splice(start, end, change.text)

    def _replace_all(self, text: str) -> None:
        self._lines = split_lines(text)
        self._text = text
        self._length = len(text)
        self._line_starts = None
        self._functions = None
        self.too_large = self._length > MAX_ANALYSED_CHARS
        if self.language is Language.C:
            self._tree = None if self.too_large else c_parser().parse(utf8(text))
        else:
            self._asm.reset(self._lines)

    def _splice(self, start: tuple[int, int], end: tuple[int, int], new: str) -> None:
        lines = self._lines
        first, last = start[0], end[0]
        # A "\r" and a "\n" that end up side by side are one line break: take the
        # neighbouring line into the edit when that can happen.
        if (
            first > 0
            and start[1] == 0
            and lines[first - 1].endswith("\r")
            and (new or lines[last][end[1] :])[:1] == "\n"
        ):
            first -= 1
            start = (first, len(lines[first]))
        prefix = lines[first][: start[1]] if first == start[0] else lines[first]
        suffix = lines[last][end[1] :]
        if (
            (new + suffix).endswith("\r")
            and last + 1 < len(lines)
            and lines[last + 1].startswith("\n")
        ):
            last += 1
            suffix += lines[last]
        if self._tree is not None:
            tree_edit = self._tree_edit(start, end, new)
        old_count = last - first + 1
        old_lines = lines[first : last + 1]
        pieces = split_lines(prefix + new + suffix)
        if last + 1 < len(lines):
            pieces.pop()  # the chunk ends with a line break: its empty tail is the next line
        removed = sum(map(len, old_lines))
        lines[first : last + 1] = pieces
        self._length += sum(map(len, pieces)) - removed
        self._text = None
        self._line_starts = None
        self._functions = None
        if self._length > MAX_ANALYSED_CHARS:
            self.too_large = True
            self._tree = None
            return
        if self.too_large:  # shrank below the limit: analyse afresh
            self._replace_all(self.text)
            return
        if self.language is Language.C:
            if self._tree is None:
                self._tree = c_parser().parse(utf8(self.text))
            else:
                self._tree.edit(**tree_edit)
                self._tree = c_parser().parse(utf8(self.text), self._tree)
        else:
            self._asm.edit(first, old_lines, pieces, old_count)

    def _tree_edit(self, start: tuple[int, int], end: tuple[int, int], new: str) -> dict[str, Any]:
        """tree-sitter's description of an edit (UTF-8 bytes and (row, byte column) points)."""
        lines = self._lines

        def point(at: tuple[int, int]) -> tuple[int, int]:
            return at[0], len(utf8(lines[at[0]][: at[1]]))

        def byte_offset(at: tuple[int, int]) -> int:
            before = sum(len(utf8(line)) for line in lines[: at[0]])
            return before + point(at)[1]

        start_point, old_end_point = point(start), point(end)
        start_byte = byte_offset(start)
        old_end_byte = start_byte + len(utf8(slice_lines(lines, start, end)))
        new_bytes = utf8(new)
        new_lines = _NEWLINE.split(new)
        if len(new_lines) == 1:
            new_end_point = (start_point[0], start_point[1] + len(new_bytes))
        else:
            new_end_point = (start_point[0] + len(new_lines) - 1, len(utf8(new_lines[-1])))
        return {
            "start_byte": start_byte,
            "old_end_byte": old_end_byte,
            "new_end_byte": start_byte + len(new_bytes),
            "start_point": start_point,
            "old_end_point": old_end_point,
            "new_end_point": new_end_point,
        }

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
        """The functions of the buffer (cached until the next change). For assembly this is
        exact only once :meth:`asm_functions` has parsed the current text (see
        :meth:`functions_if_ready`); until then it is the last parse, moved with the edits."""
        if self._functions is None:
            if self.too_large:
                self._functions = []
            elif self.language is Language.C:
                self._functions = c_functions(self._tree, self.position_of_point)
            else:
                found = self.functions_if_ready()
                return found if found is not None else self.stale_functions()
        return self._functions

    def functions_if_ready(self) -> list[FunctionInfo] | None:
        """The exact functions when they are known without parsing, else None."""
        if self._functions is not None:
            return self._functions
        if self.language is Language.C or self.too_large:
            return self.functions()
        if self._asm.exact:
            self._functions = self._asm.infos(self._lines, self.encoding)
            return self._functions
        return None

    def stale_functions(self) -> list[FunctionInfo]:
        """The functions as far as known without parsing: exact, or the last parse moved
        along with the edits since (for display: lenses, outline, folding)."""
        ready = self.functions_if_ready()
        if ready is not None:
            return ready
        return self._asm.infos(self._lines, self.encoding)

    @property
    def asm_parsed_once(self) -> bool:
        """Whether an assembly buffer has been parsed (exactly) at least once."""
        return self._asm.parsed_once

    @property
    def asm_generation(self) -> int:
        """Counts the edits that may have changed the assembly's functions."""
        return self._asm.generation

    def asm_functions(self, text: str | None = None) -> list[FunctionInfo]:
        """Functions of an assembly text (default: this buffer's), parsed exactly; safe to
        call in a thread."""
        if text is not None and text is not self._text:
            return asm_functions(text, self.encoding)
        generation = self._asm.generation
        lines = list(self._lines)
        parsed = parse_asm("".join(lines))
        return self.take_asm_parse(generation, lines, parsed)

    def take_asm_parse(
        self, generation: int, lines: list[str], parsed: list[Any] | None
    ) -> list[FunctionInfo]:
        """Adopt ``parsed`` (from :func:`parse_asm` of ``lines``) if no structural edit came
        since ``generation``; returns the functions of ``lines``."""
        if parsed is None:
            parsed = []
        if self._asm.adopt(generation, parsed):
            self._functions = None
            found = self.functions_if_ready()
            if found is not None:
                return found
        return AsmFunctionIndex.from_parse(parsed).infos(lines, self.encoding)

    def function_named(self, name: str) -> FunctionInfo | None:
        return next((f for f in self.functions() if f.name == name), None)

    def function_at(self, position: types.Position) -> FunctionInfo | None:
        """The innermost function whose range contains ``position``."""
        best = None
        for fn in self.functions():
            if fn.contains(position):
                best = fn
        return best


class DocumentStore:
    """The open buffers asmopt understands, by URI."""

    def __init__(self) -> None:
        self._buffers: dict[str, Buffer] = {}

    def open(
        self, uri: str, language_id: str, text: str, version: int | None, encoding: str
    ) -> Buffer | None:
        language = language_of(language_id, uri)
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
