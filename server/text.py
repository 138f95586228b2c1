"""Text as the editor counts it: lines cut at LSP line breaks, and widths in the negotiated
position encoding (UTF-16 code units unless the client chose UTF-8 or UTF-32; tree-sitter
counts UTF-8 bytes). Every conversion between the two lives here."""

from __future__ import annotations

import re

from lsprotocol import types


def units(text: str, encoding: str) -> int:
    """Length of ``text`` in the position encoding's units."""
    if encoding == types.PositionEncodingKind.Utf32 or text.isascii():
        return len(text)
    if encoding == types.PositionEncodingKind.Utf8:
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def chars_for_units(line: str, units: int, encoding: str) -> int:
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


def utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def slice_lines(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
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
