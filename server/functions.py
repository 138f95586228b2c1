"""Where the functions of a buffer are: an index of an assembly buffer's functions that edits
keep up to date cheaply, and a C buffer's function definitions from its tree-sitter tree."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from lsprotocol import types

from asmopt.server.text import split_lines, units


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
    start_units = units(label[:column], encoding)
    name_units = units(name, encoding)
    colon = label.find(":", column + len(name))
    sig_units = units(label[: colon + 1], encoding) if colon >= 0 else start_units + name_units
    return FunctionInfo(
        name=name,
        range=types.Range(types.Position(start, 0), types.Position(end_line, 0)),
        name_range=types.Range(
            types.Position(label_line, start_units),
            types.Position(label_line, start_units + name_units),
        ),
        signature_end=types.Position(label_line, sig_units),
    )


def asm_functions(
    text: str, encoding: str = types.PositionEncodingKind.Utf16
) -> list[FunctionInfo]:
    """The functions of GAS assembly ``text``; gcc's parts and clones (``f.cold``,
    ``f.part.0``) are left out: they are optimized with the function they were made from."""
    return AsmFunctionIndex.from_parse(parse_asm(text)).infos(split_lines(text), encoding)


# --------------------------------------------------------------------------- C


_PARSER: Any = None


def c_parser() -> Any:
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


def c_functions(
    tree: Any, position_of_point: Callable[[int, int], types.Position]
) -> list[FunctionInfo]:
    """The function definitions of a C buffer's tree, in file order."""
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
                    position_of_point(*node.start_point),
                    position_of_point(*node.end_point),
                ),
                name_range=types.Range(
                    position_of_point(*ident.start_point),
                    position_of_point(*ident.end_point),
                ),
                signature_end=position_of_point(*declarator.end_point),
            )
        )
    # the stack walk visits containers out of order; users expect file order
    found.sort(key=lambda f: (f.range.start.line, f.range.start.character))
    return found


# --------------------------------------------------------------------------- assembly
