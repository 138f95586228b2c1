"""Editor buffers and the functions in them.

A :class:`Buffer` keeps the text the client sent (applying incremental changes itself, so that
it knows the old text of every edit) and, for C, a tree-sitter tree that is edited and
re-parsed incrementally on each change. Functions come from that tree (C) or from
:mod:`asmopt.executor.asmfile` (GAS assembly, AT&T and Intel syntax).

Positions on the wire are counted in the negotiated encoding (UTF-16 code units unless the
client chose UTF-8 or UTF-32); tree-sitter counts UTF-8 bytes. All conversions live here.
"""

from __future__ import annotations

import bisect
import enum
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
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
        return position.line, _chars_for_units(line, position.character, self.encoding)

    def offset_at(self, position: types.Position) -> int:
        """Character offset of an LSP position (clamped into the text)."""
        line, column = self._column(position)
        return self.line_starts[line] + column

    def position_at(self, offset: int) -> types.Position:
        """LSP position of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.line_starts, offset) - 1
        prefix = self._lines[line][: offset - self.line_starts[line]]
        return types.Position(line, _units(prefix, self.encoding))

    def end_position(self) -> types.Position:
        last = self.line_count() - 1
        return types.Position(last, _units(self.line(last), self.encoding))

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
            self._tree = None if self.too_large else _c_parser().parse(_encode(text))
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
                self._tree = _c_parser().parse(_encode(self.text))
            else:
                self._tree.edit(**tree_edit)
                self._tree = _c_parser().parse(_encode(self.text), self._tree)
        else:
            self._asm.edit(first, old_lines, pieces, old_count)

    def _tree_edit(self, start: tuple[int, int], end: tuple[int, int], new: str) -> dict[str, Any]:
        """tree-sitter's description of an edit (UTF-8 bytes and (row, byte column) points)."""
        lines = self._lines

        def point(at: tuple[int, int]) -> tuple[int, int]:
            return at[0], len(_encode(lines[at[0]][: at[1]]))

        def byte_offset(at: tuple[int, int]) -> int:
            before = sum(len(_encode(line)) for line in lines[: at[0]])
            return before + point(at)[1]

        start_point, old_end_point = point(start), point(end)
        start_byte = byte_offset(start)
        old_end_byte = start_byte + len(_encode(_slice(lines, start, end)))
        new_bytes = _encode(new)
        new_lines = _NEWLINE.split(new)
        if len(new_lines) == 1:
            new_end_point = (start_point[0], start_point[1] + len(new_bytes))
        else:
            new_end_point = (start_point[0] + len(new_lines) - 1, len(_encode(new_lines[-1])))
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
                self._functions = _c_functions(self)
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


def _slice(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    if start[0] == end[0]:
        return lines[start[0]][start[1] : end[1]]
    return (
        lines[start[0]][start[1] :]
        + "".join(lines[start[0] + 1 : end[0]])
        + lines[end[0]][: end[1]]
    )


_ODD_BREAKS = re.compile("[\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_SPLIT = re.compile(r"(?<=\n)|(?<=\r)(?!\n)")


def split_lines(text: str) -> list[str]:
    """``text`` cut after each LSP line break (``\\n``, ``\\r\\n``, ``\\r``); the last piece
    has no break (it is '' when the text ends with one)."""
    if _ODD_BREAKS.search(text):  # str.splitlines would also cut at these
        return _SPLIT.split(text)
    pieces = text.splitlines(keepends=True)
    if not pieces or pieces[-1].endswith(("\n", "\r")):
        pieces.append("")
    return pieces


# --------------------------------------------------------------------------- assembly index

# Lines that cannot change where functions begin or end when edited inside a function's
# body: instructions (but not calls or jumps to a named symbol, which can make a label a
# function), blank lines, comments, and a few per-instruction directives.
_PLAIN_DIRECTIVE = re.compile(
    r"\.(loc|cfi_(offset|def_cfa\w*|restore|remember_state|restore_state|adjust_cfa_offset"
    r"|rel_offset|escape))\b"
)
_BRANCH_TO_SYMBOL = re.compile(r"(call|jmp)\w*\s+\*?\$?([A-Za-z_][\w.$]*)", re.I)


def plain_line(line: str) -> bool:
    """Whether editing ``line`` (inside a function's body) leaves the functions as they are."""
    code = line.split("#", 1)[0].strip()
    if not code:
        return True
    if ":" in code or ";" in code or '"' in code:
        return False  # a label, several statements, or a string: let the parser decide
    if code.startswith("."):
        return _PLAIN_DIRECTIVE.match(code) is not None
    return _BRANCH_TO_SYMBOL.match(code) is None


class AsmFunctionIndex:
    """Where each function of an assembly buffer lies, kept up to date cheaply.

    A full parse (:func:`parse_asm`) of a 100,000-line file takes over a second, so it runs
    only after a structural edit (and in the background); an edit of plain lines inside a
    function's body just moves the line numbers (numpy arrays: microseconds per edit)."""

    def __init__(self) -> None:
        self.generation = 0  # bumped by structural edits
        self.exact = False
        self.parsed_once = False
        self._names: list[str] = []
        self._clone: list[bool] = []
        self._starts = np.zeros(0, dtype=np.int64)
        self._labels = np.zeros(0, dtype=np.int64)
        self._ends = np.zeros(0, dtype=np.int64)
        self._body_ends = np.zeros(0, dtype=np.int64)
        self._infos: list[FunctionInfo] | None = None

    @classmethod
    def from_parse(cls, parsed: list[Any]) -> AsmFunctionIndex:
        index = cls()
        index._load(parsed)
        return index

    def _load(self, parsed: list[Any]) -> None:
        self._names = [fn.name for fn in parsed]
        self._clone = [fn.parent is not None for fn in parsed]
        self._starts = np.array([fn.start_line for fn in parsed], dtype=np.int64)
        self._labels = np.array([fn.label_line for fn in parsed], dtype=np.int64)
        self._ends = np.array([fn.end_line for fn in parsed], dtype=np.int64)
        body = [fn.body_end_line if fn.body_end_line >= 0 else fn.end_line for fn in parsed]
        self._body_ends = np.array(body, dtype=np.int64)
        self._infos = None

    def reset(self, lines: list[str]) -> None:
        """A new text: nothing is known until it is parsed."""
        self.generation += 1
        self.exact = False
        self.parsed_once = False
        self._load([])

    def adopt(self, generation: int, parsed: list[Any]) -> bool:
        """Take a parse of the text as it was at ``generation``; False if it is outdated."""
        if generation != self.generation:
            return False
        self._load(parsed)
        self.exact = True
        self.parsed_once = True
        return True

    def edit(self, first: int, old: list[str], new: list[str], old_count: int) -> None:
        """Lines ``first .. first + old_count`` (``old``) were replaced by ``new``."""
        delta = len(new) - old_count
        last = first + old_count - 1
        self._infos = None
        # Only the lines that really changed matter (typing a line break splits one line
        # into two, one of them as it was).
        lo, old_hi, new_hi = 0, len(old), len(new)
        while lo < old_hi and lo < new_hi and old[lo] == new[lo]:
            lo += 1
        while old_hi > lo and new_hi > lo and old[old_hi - 1] == new[new_hi - 1]:
            old_hi -= 1
            new_hi -= 1
        changed_first, changed_last = first + lo, first + max(old_hi - 1, lo)
        inside = False
        if len(self._labels):
            k = int(np.searchsorted(self._labels, changed_first, side="left")) - 1
            inside = (
                k >= 0 and self._labels[k] < changed_first and changed_last < self._body_ends[k] - 1
            )
        local = (
            inside
            and all(plain_line(line) for line in old[lo:old_hi])
            and all(plain_line(line) for line in new[lo:new_hi])
        )
        # Move everything after the edit; the function around it grows or shrinks.
        after = self._starts > last
        self._starts[after] += delta
        self._labels[self._labels > last] += delta
        self._ends[self._ends > last] += delta
        self._body_ends[self._body_ends > last] += delta
        if not local:
            self.generation += 1
            self.exact = False

    def infos(self, lines: list[str], encoding: str) -> list[FunctionInfo]:
        """The functions (gcc's parts and clones left out) as :class:`FunctionInfo`."""
        if self._infos is not None:
            return self._infos
        found = []
        count = len(lines)
        for k, name in enumerate(self._names):
            if self._clone[k]:
                continue
            label_line = int(self._labels[k])
            if label_line >= count:
                continue
            label = lines[label_line].rstrip("\r\n")
            found.append(
                _asm_info(
                    name,
                    int(self._starts[k]),
                    label_line,
                    max(int(self._ends[k]), label_line + 1),
                    label,
                    encoding,
                )
            )
        self._infos = found
        return found


def parse_asm(text: str) -> list[Any]:
    """:func:`asmopt.executor.asmfile.parse_functions`, never raising (a half-typed buffer
    must not break the editor)."""
    from asmopt.executor.asmfile import parse_functions

    try:
        return parse_functions(text)
    except Exception:
        return []


def _asm_info(
    name: str, start: int, label_line: int, end_line: int, label: str, encoding: str
) -> FunctionInfo:
    column = max(label.find(name), 0)
    start_units = _units(label[:column], encoding)
    name_units = _units(name, encoding)
    colon = label.find(":", column + len(name))
    sig_units = _units(label[: colon + 1], encoding) if colon >= 0 else start_units + name_units
    return FunctionInfo(
        name=name,
        range=types.Range(types.Position(start, 0), types.Position(end_line, 0)),
        name_range=types.Range(
            types.Position(label_line, start_units),
            types.Position(label_line, start_units + name_units),
        ),
        signature_end=types.Position(label_line, sig_units),
    )


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
    return AsmFunctionIndex.from_parse(parse_asm(text)).infos(split_lines(text), encoding)


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
