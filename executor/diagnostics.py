"""Diagnostics from the messages of gcc, clang, GNU as, ld, collect2 and llvm-mca.

The tools run with ``LC_ALL=C`` (see ``toolchain.py``), so their messages are English with
ASCII quotes, which is what :func:`parse_diagnostics` reads.
"""

from __future__ import annotations

import re

from asmopt.executor.results import Diagnostic, Severity

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

_SEVERITY = {
    "fatal error": Severity.ERROR,
    "error": Severity.ERROR,
    "Fatal error": Severity.ERROR,
    "Error": Severity.ERROR,
    "warning": Severity.WARNING,
    "Warning": Severity.WARNING,
    "note": Severity.NOTE,
    "NOTE": Severity.NOTE,
    "remark": Severity.NOTE,
    "Info": Severity.NOTE,
}

# gcc, clang (including clang's integrated assembler), llvm-mca: file:line:col: error: msg
_LOCATED = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?:(?P<col>\d+):)? "
    r"(?P<sev>fatal error|error|warning|note|remark): (?P<msg>.*)$"
)
# GNU as: file:line: Error: msg   (and {standard input}:3: Warning: ...)
_GAS = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+): (?P<sev>Fatal error|Error|Warning|Info): (?P<msg>.*)$"
)
# A tool speaking about itself: "cc1: fatal error: ...", "collect2: error: ...",
# "clang: error: ...", and GNU as without a location: "Error: can't open x.s ..."
_UNLOCATED = re.compile(
    r"^(?:(?P<prog>[^\s:]+): )?"
    r"(?P<sev>fatal error|error|warning|note|Fatal error|Error|Warning): (?P<msg>.*)$"
)
# The linker's prefix: "/usr/bin/ld: ", "ld.lld: ", and "/usr/bin/ld:x.o: ..." without a space.
_LINKER = re.compile(r"^(?:\S*/)?(?:[\w-]+-)?ld(?:\.(?:bfd|gold|lld))?: ?(?P<rest>.*)$")
_LD_CONTEXT = re.compile(r"^(?P<object>.*?): in function [`'](?P<function>[^']*)':$")
# Where ld found a problem, with a source line: "/tmp/x.c:4: undefined reference to `bar'"
_LD_LINE = re.compile(r"^(?P<file>[^:()]+?):(?P<line>\d+): (?P<msg>.*)$")
# ... or only an object and section: "x.c:(.text+0x1a): msg", "(.text+0x1): msg"
_LD_SECTION = re.compile(r"^(?:(?P<file>[^:()]*?):)?\((?P<where>[^)]*)\): (?P<msg>.*)$")
# Programs that name themselves; other "name: error:" prefixes are files.
_TOOL_NAME = re.compile(
    r"^(?:.*/)?(?:gcc|g\+\+|cc|c\+\+|cc1|cc1plus|clang|clang\+\+|collect2|lto-wrapper|as|"
    r"llvm-mca|llc)(?:-[\d.]+)?$"
)


def _int(text: str | None) -> int | None:
    return int(text) if text else None


def _parse_linker(rest: str, function: str | None) -> Diagnostic | None:
    """One message after the ld prefix, or a continuation line of an ld context."""
    lowered = rest.lower()
    if lowered.startswith("warning: "):
        return Diagnostic(None, None, None, Severity.WARNING, rest[len("warning: ") :])
    if rest.startswith("NOTE: "):
        return Diagnostic(None, None, None, Severity.NOTE, rest[len("NOTE: ") :])
    suffix = f" (in function `{function}')" if function else ""
    match = _LD_LINE.match(rest)
    if match:
        return Diagnostic(
            match["file"], int(match["line"]) or None, None, Severity.ERROR, match["msg"] + suffix
        )
    match = _LD_SECTION.match(rest)
    if match:
        where = f"{match['where']}, in function `{function}'" if function else match["where"]
        return Diagnostic(
            match["file"] or None, None, None, Severity.ERROR, f"{match['msg']} ({where})"
        )
    return Diagnostic(None, None, None, Severity.ERROR, rest) if rest else None


def parse_diagnostics(stderr: str) -> tuple[Diagnostic, ...]:
    """Diagnostics from the stderr of gcc, clang, GNU as, ld, collect2 or llvm-mca.

    Recognised: ``file:line:col: error|warning|note: msg`` (gcc, clang, clang's integrated
    assembler; ``fatal error`` is an error), GNU as's ``file:line: Error|Warning: msg``, tool
    messages without a location (``cc1: fatal error: ...``, ``collect2: error: ld returned 1
    exit status``), and ld's messages: an ``in function `f':`` context followed by
    ``x.c:(.text+0x1a): undefined reference to `foo'`` (an error with no line) or
    ``x.c:4: ...`` when the object had debug information. Source excerpts, carets and
    summaries ("1 error generated.") are skipped.
    """
    found: list[Diagnostic] = []
    ld_function: str | None = None  # inside an ld "in function" block
    in_ld_block = False
    for raw in _ANSI.sub("", stderr).splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        linker = _LINKER.match(line)
        if linker:
            rest = linker["rest"]
            context = _LD_CONTEXT.match(rest)
            if context:
                ld_function, in_ld_block = context["function"], True
                continue
            in_ld_block = False
            diag = _parse_linker(rest, None)
            if diag:
                found.append(diag)
            continue
        match = _LOCATED.match(line)
        if match:
            in_ld_block = False
            found.append(
                Diagnostic(
                    match["file"],
                    int(match["line"]),
                    _int(match["col"]),
                    _SEVERITY[match["sev"]],
                    match["msg"],
                )
            )
            continue
        match = _GAS.match(line)
        if match:
            in_ld_block = False
            found.append(
                Diagnostic(
                    match["file"], int(match["line"]), None, _SEVERITY[match["sev"]], match["msg"]
                )
            )
            continue
        match = _UNLOCATED.match(line)
        if match:
            in_ld_block = False
            prog = match["prog"]
            file = prog if prog and not _TOOL_NAME.match(prog) else None
            found.append(Diagnostic(file, None, None, _SEVERITY[match["sev"]], match["msg"]))
            continue
        if in_ld_block and not line[0].isspace():
            diag = _parse_linker(line, ld_function)
            if diag:
                found.append(diag)
            continue
        # Anything else is an excerpt, a caret line, "In function 'main':", "N errors
        # generated.", "Assembler messages:" or "compilation terminated.": context only.
    return tuple(found)
