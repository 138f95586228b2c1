# Over 500 lines: one parser; the function scan and the symbol queries share its lexer.
"""The structure of a GAS assembly file: which lines make up which function.

Used by the executor (the body of one function for llvm-mca), by the model (splicing a
candidate function into a translation unit) and by the language server (functions in a ``.s``
buffer). Both AT&T and Intel syntax (``.intel_syntax noprefix``) are understood.

A function's *region* is the run of lines that belongs to it: the directives gcc puts before
the label (``.globl``, ``.type``, ``.p2align``, a section switch), the label, the code, and the
trailing ``.cfi_endproc`` / ``.LFE`` / ``.size`` lines. gcc emits a function's cold part
(``f.cold``, in ``.text.unlikely``) right after the hot part and only then the ``.size`` of
both, so a hot function's region *contains* its cold part's region::

    .text                            <- f's region starts
    .globl f / .type f, @function
    f:  ... .cfi_endproc             <- f's own code ends here (body_end_line)
    .section .text.unlikely          <- f.cold's region starts
    .cfi_startproc / .type f.cold, @function
    f.cold: ... .cfi_endproc
    .LFE0: / .text / .size f, .-f / .section .text.unlikely / .size f.cold, .-f.cold
    .LCOLDE0: / .text / .LHOTE0:     <- both regions end here

Clones gcc makes of a function (``f.part.0``, ``f.constprop.0``, ``f.isra.0``) are separate
regions elsewhere in the file; :func:`function_family` finds them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "AsmFunction",
    "AsmStructureError",
    "DataItem",
    "LineState",
    "clone_parent",
    "comparable_code",
    "data_item",
    "defined_symbols",
    "function_body",
    "function_family",
    "function_text",
    "is_family_member",
    "line_states",
    "local_labels",
    "parse_functions",
    "referenced_symbols",
    "section_declarations",
    "statements",
]


class AsmStructureError(LookupError):
    """A function asked for by name is not defined in the assembly text."""


@dataclass(frozen=True)
class AsmFunction:
    """One function of an assembly file; line numbers are 0-based, ends exclusive.

    ``start_line`` is the first line of the function's region (its leading directives),
    ``label_line`` the line of ``name:``, ``end_line`` the line after its region (after
    ``.size name, .-name``, or after ``.cfi_endproc`` when there is no ``.size``).
    ``body_end_line`` ends the function's own code: for a hot part it stops before the
    ``.cold`` part gcc nests inside the region. ``parent`` names the function a gcc part or
    clone was made from (``f.cold``, ``f.part.0``, ``f.constprop.0.isra.0`` -> ``f``).
    """

    name: str
    start_line: int
    label_line: int
    end_line: int
    section: str
    is_global: bool
    parent: str | None
    has_cfi: bool
    body_end_line: int = -1
    intel_syntax: bool = False


# ---------------------------------------------------------------------------------------------
# Lexing: one physical line -> statements (labels, then a directive or an instruction).

_SYMBOL = r"[A-Za-z_.][\w.$]*"
_LABEL_RE = re.compile(rf"\s*({_SYMBOL}|\d+)\s*:(?!:)")
_OP_RE = re.compile(r"\s*(\S+)\s*(.*)$", re.S)
_LOCAL_GCC_END = re.compile(r"\.L(FE|COLDE|HOTE)\d+$")
_LOCAL_GCC_BEGIN = re.compile(r"\.L(COLDB|HOTB)\d+$")
_CLONE_SUFFIX = re.compile(
    r"^(?P<base>.+?)(?P<suffix>(?:\.(?:cold|part|constprop|isra|clone|lto_priv|localalias"
    r"|specialized|simdclone)(?:\.\d+)?)+)$"
)
_FUNCTION_TYPES = {"@function", "%function", "stt_func", '"function"', "@gnu_indirect_function"}
_BINDING_DIRECTIVES = {".globl", ".global"}
_ATTRIBUTE_DIRECTIVES = {
    ".globl",
    ".global",
    ".local",
    ".weak",
    ".hidden",
    ".protected",
    ".internal",
    ".type",
    ".size",
}
_ALIGN_DIRECTIVES = {".p2align", ".align", ".balign"}
_SECTION_DIRECTIVES = {
    ".text",
    ".data",
    ".bss",
    ".section",
    ".pushsection",
    ".popsection",
    ".previous",
}
# Directives whose operands never name a symbol the code depends on.
_NON_REFERENCING = (
    _ATTRIBUTE_DIRECTIVES
    | _ALIGN_DIRECTIVES
    | _SECTION_DIRECTIVES
    | {
        ".file",
        ".ident",
        ".string",
        ".ascii",
        ".asciz",
        ".loc",
        ".intel_syntax",
        ".att_syntax",
        ".code64",
        ".code32",
        ".zero",
        ".skip",
        ".space",
        ".comm",
        ".lcomm",
        ".subsection",
    }
)
_INTEL_WORDS = {
    "ptr",
    "byte",
    "word",
    "dword",
    "qword",
    "tbyte",
    "oword",
    "fword",
    "xmmword",
    "ymmword",
    "zmmword",
    "offset",
    "flat",
    "short",
    "near",
    "far",
    "rel",
}
_REGISTER_RE = re.compile(
    r"(r\d+[dwb]?|[re]?[abcd]x|[abcd][lh]|[re]?(si|di|sp|bp|ip)|(si|di|sp|bp)l|[xyz]?mm\d+"
    r"|k[0-7]|st|cr\d+|dr\d+|[cdefgs]s|tmm[0-7]|bnd[0-3])$",
    re.I,
)
# Not after "%" (an AT&T register); "$" may precede (an AT&T immediate address: $.LC0).
_OPERAND_SYMBOL = re.compile(rf"(?<![\w.%$]){_SYMBOL}(?:@\w+)?|(?<=\$){_SYMBOL}")


@dataclass
class _Stmt:
    labels: list[str]
    op: str  # lower-cased directive or mnemonic; "" when the statement is labels only
    args: str


@dataclass
class _Line:
    stmts: list[_Stmt] = field(default_factory=list)
    comment_only: bool = False  # a line with only a comment: kept with the code it touches

    @property
    def blank(self) -> bool:
        return not self.stmts

    @property
    def labels(self) -> list[str]:
        return [label for s in self.stmts for label in s.labels]

    @property
    def ops(self) -> list[_Stmt]:
        return [s for s in self.stmts if s.op]


def _strip_comments(line: str, in_block: bool) -> tuple[str, bool]:
    """Remove ``#`` and ``/* */`` comments outside string literals."""
    out: list[str] = []
    i = 0
    quote = False
    while i < len(line):
        ch = line[i]
        if in_block:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out), True
            i = end + 2
            in_block = False
            out.append(" ")
            continue
        if quote:
            out.append(ch)
            if ch == "\\" and i + 1 < len(line):
                out.append(line[i + 1])
                i += 2
                continue
            if ch == '"':
                quote = False
        elif ch == '"':
            quote = True
            out.append(ch)
        elif ch == "#":
            break
        elif line.startswith("/*", i):
            in_block = True
            i += 2
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out), in_block


def _split_statements(code: str) -> list[str]:
    """Split on GAS's x86 statement separator ``;`` outside string literals."""
    parts: list[str] = []
    current: list[str] = []
    quote = False
    prev = ""
    for ch in code:
        if ch == '"' and prev != "\\":
            quote = not quote
        if ch == ";" and not quote:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        prev = ch
    parts.append("".join(current))
    return parts


def _lex(text: str) -> list[_Line]:
    lines: list[_Line] = []
    in_block = False
    for raw in text.splitlines():
        code, in_block_after = _strip_comments(raw, in_block)
        line = _Line()
        for piece in _split_statements(code):
            rest = piece
            labels: list[str] = []
            while True:
                m = _LABEL_RE.match(rest)
                if not m:
                    break
                labels.append(m.group(1))
                rest = rest[m.end() :]
            m = _OP_RE.match(rest)
            op, args = (m.group(1).lower(), m.group(2).strip()) if m else ("", "")
            if labels or op:
                line.stmts.append(_Stmt(labels, op, args))
        line.comment_only = not line.stmts and bool(raw.strip()) and not in_block
        in_block = in_block_after
        lines.append(line)
    return lines


def statements(text: str) -> Iterator[tuple[list[str], str, str]]:
    """Each statement of ``text`` as (its labels, the directive or mnemonic in lower case or
    "", its operands): comments removed, ``;``-separated statements apart."""
    for line in _lex(text):
        for stmt in line.stmts:
            yield stmt.labels, stmt.op, stmt.args


def _first_arg(args: str) -> str:
    return args.split(",", 1)[0].strip().strip('"')


def _is_local(name: str) -> bool:
    return name.startswith(".L") or name.isdigit()


def clone_parent(name: str) -> str | None:
    """The function a gcc part or clone was made from, or None for an ordinary name.

    ``f.cold``, ``f.part.0``, ``f.constprop.0``, ``f.isra.0`` and chains such as
    ``f.constprop.0.isra.0`` all give ``f``.
    """
    m = _CLONE_SUFFIX.match(name)
    return m.group("base") if m else None


def is_family_member(member: str, name: str) -> bool:
    """Whether ``member`` is ``name`` or a gcc part/clone of it (``name.cold``,
    ``name.part.0``, ``name.constprop.0.isra.0``)."""
    return _in_family(member, name)


def _in_family(member: str, name: str) -> bool:
    if member == name:
        return True
    if not member.startswith(name + "."):
        return False
    m = _CLONE_SUFFIX.match(member)
    return m is not None and len(m.group("base")) <= len(name)


# ---------------------------------------------------------------------------------------------
# Sections and syntax, tracked line by line.


@dataclass
class _SectionTracker:
    current: str = ".text"
    previous: str = ".text"
    stack: list[tuple[str, str]] = field(default_factory=list)
    flags: dict[str, str] = field(default_factory=dict)

    def apply(self, stmt: _Stmt) -> None:
        op = stmt.op
        if op in (".text", ".data", ".bss"):
            self._switch(op)
        elif op in (".section", ".pushsection"):
            name = _first_arg(stmt.args)
            rest = stmt.args.split(",", 2)
            if len(rest) > 1:
                self.flags.setdefault(name, rest[1].strip().strip('"'))
            if op == ".pushsection":
                self.stack.append((self.current, self.previous))
            self._switch(name)
        elif op == ".popsection" and self.stack:
            self.current, self.previous = self.stack.pop()
        elif op == ".previous":
            self.current, self.previous = self.previous, self.current

    def _switch(self, name: str) -> None:
        self.previous, self.current = self.current, name

    def executable(self, name: str) -> bool:
        return name == ".text" or name.startswith(".text.") or "x" in self.flags.get(name, "")


@dataclass
class _Layout:
    """Everything the region finder needs, computed once per text."""

    lines: list[_Line]
    section_at: list[str]  # section in effect at the start of each line (and after the last)
    intel_at: list[bool]
    executable_at: list[bool]
    labels: dict[str, int]  # first definition line of each label
    typed_functions: set[str]
    globals_: set[str]
    called: set[str]
    cfi_open: list[int | None]  # for lines inside .cfi_startproc ... .cfi_endproc: the start


def _layout(text: str) -> _Layout:
    lines = _lex(text)
    tracker = _SectionTracker()
    intel = False
    section_at: list[str] = []
    intel_at: list[bool] = []
    executable_at: list[bool] = []
    labels: dict[str, int] = {}
    typed: set[str] = set()
    globals_: set[str] = set()
    called: set[str] = set()
    cfi_open: list[int | None] = []
    open_at: int | None = None
    for i, line in enumerate(lines):
        section_at.append(tracker.current)
        intel_at.append(intel)
        executable_at.append(tracker.executable(tracker.current))
        cfi_open.append(open_at)
        for stmt in line.stmts:
            for label in stmt.labels:
                labels.setdefault(label, i)
            op = stmt.op
            if op in _SECTION_DIRECTIVES:
                tracker.apply(stmt)
            elif op == ".intel_syntax":
                intel = True
            elif op == ".att_syntax":
                intel = False
            elif op == ".type":
                parts = [p.strip() for p in stmt.args.split(",")]
                if len(parts) >= 2 and parts[1].lower() in _FUNCTION_TYPES:
                    typed.add(parts[0].strip('"'))
            elif op in _BINDING_DIRECTIVES:
                globals_.update(p.strip().strip('"') for p in stmt.args.split(","))
            elif op == ".cfi_startproc":
                open_at = i
            elif op == ".cfi_endproc":
                open_at = None
            elif op.startswith("call") or op.startswith("jmp"):
                called.update(_symbols_in(stmt.args, intel))
        if line.ops and line.ops[-1].op == ".cfi_startproc":
            cfi_open[i] = i
    section_at.append(tracker.current)
    intel_at.append(intel)
    executable_at.append(tracker.executable(tracker.current))
    return _Layout(
        lines,
        section_at,
        intel_at,
        executable_at,
        labels,
        typed,
        globals_,
        called,
        cfi_open,
    )


def _symbols_in(args: str, intel: bool = True) -> set[str]:
    args = re.sub(r'"(?:\\.|[^"\\])*"', " ", args)
    args = re.sub(r"\{[^}]*\}", " ", args)  # AVX-512 masks and broadcasts
    found: set[str] = set()
    for m in _OPERAND_SYMBOL.finditer(args):
        name = m.group(0).split("@", 1)[0]
        if name == "." or name.lower() in _INTEL_WORDS or _REGISTER_RE.match(name):
            continue
        found.add(name)
    return found


# ---------------------------------------------------------------------------------------------
# Finding functions.


def _is_instruction(stmt: _Stmt) -> bool:
    return bool(stmt.op) and not stmt.op.startswith(".") and not stmt.op.endswith("=")


def _followed_by_code(lay: _Layout, label_line: int, label: str) -> tuple[bool, bool]:
    """(an instruction comes before any other non-local label, a .cfi_startproc does)."""
    lines = lay.lines
    seen_label = False
    cfi = False
    for i in range(label_line, len(lines)):
        for stmt in lines[i].stmts:
            if not seen_label:
                if label in stmt.labels:
                    seen_label = True
                    if not stmt.op:
                        continue
                else:
                    continue
            elif any(not _is_local(lab) for lab in stmt.labels):
                return False, cfi
            if stmt.op == ".cfi_startproc":
                cfi = True
            elif _is_instruction(stmt):
                return True, cfi
            elif stmt.op and stmt.op not in _ALIGN_DIRECTIVES and not stmt.op.startswith(".cfi"):
                return False, cfi
    return False, cfi


def _function_labels(lay: _Layout, known: frozenset[str]) -> list[tuple[str, int, bool]]:
    """(name, label line, has_cfi) for every label that starts a function, in file order."""
    found: list[tuple[str, int, bool]] = []
    claimed_cfi: set[int] = set()
    for name, line in sorted(lay.labels.items(), key=lambda kv: kv[1]):
        if _is_local(name):
            continue
        has_code, cfi_follows = _followed_by_code(lay, line, name)
        cfi_start = lay.cfi_open[line]
        in_cfi = cfi_start is not None and cfi_start not in claimed_cfi
        typed = name in lay.typed_functions
        plain = (name in lay.globals_ or name in lay.called or name in known) and has_code
        if not (typed or in_cfi or cfi_follows or plain):
            continue
        if in_cfi and cfi_start is not None:
            claimed_cfi.add(cfi_start)
        found.append((name, line, in_cfi or cfi_follows))
    return found


def _scan_start(lay: _Layout, name: str, label_line: int) -> int:
    """Walk back from the label over the directives that belong to the function.

    Accepted, nearest first: ``.globl``/``.type``/... of this name, alignment,
    ``.cfi_startproc`` (a cold part opens its CFI before its label), then one section switch.
    Beyond that switch only gcc's ``.LHOTB``/``.LCOLDB`` markers (and the switch that gcc
    emits just for them) still belong to the function."""
    start = label_line
    switches = 0
    marker_seen = False
    i = label_line - 1
    while i >= 0:
        line = lay.lines[i]
        if line.blank and not line.comment_only:
            break
        if line.comment_only:
            i -= 1
            continue  # tentative: kept only if something that belongs comes before it
        ok = True
        for stmt in line.stmts:
            if stmt.labels:
                if all(_LOCAL_GCC_BEGIN.match(lab) for lab in stmt.labels):
                    marker_seen = marker_seen or switches > 0
                else:
                    ok = False
            op = stmt.op
            if not op:
                continue
            if op in _ATTRIBUTE_DIRECTIVES:
                ok = ok and switches == 0 and _first_arg(stmt.args) == name
            elif op in _ALIGN_DIRECTIVES or op == ".cfi_startproc":
                ok = ok and switches == 0
            elif op in (".text", ".section", ".pushsection"):
                ok = ok and (switches == 0 or (switches == 1 and marker_seen))
                switches += 1
            else:
                ok = False
        if not ok:
            break
        start = i
        i -= 1
    return start


def _matching_endproc(lay: _Layout, from_line: int) -> int | None:
    for i in range(from_line, len(lay.lines)):
        for stmt in lay.lines[i].stmts:
            if stmt.op == ".cfi_endproc":
                return i
    return None


def parse_functions(text: str, *, assume_functions: Iterable[str] = ()) -> list[AsmFunction]:
    """Every function defined in ``text``, in file order.

    A function is a label named by ``.type x, @function``, a label that opens a
    ``.cfi_startproc`` region, or (hand-written assembly) a global or called label followed by
    instructions. ``.L`` labels are never functions. Labels in ``assume_functions`` count when
    instructions follow them even if nothing else marks them (a bare ``f:`` answer).
    """
    return _parse(text, frozenset(assume_functions))


def _parse(text: str, known: frozenset[str]) -> list[AsmFunction]:
    lay = _layout(text)
    heads = _function_labels(lay, known)
    starts = [_scan_start(lay, name, line) for name, line, _ in heads]
    n = len(lay.lines)
    body_ends: list[int] = []
    for k, (name, label_line, has_cfi) in enumerate(heads):
        next_start = starts[k + 1] if k + 1 < len(heads) else n
        if has_cfi:
            endproc = _matching_endproc(lay, label_line)
            end = min(endproc + 1 if endproc is not None else n, max(next_start, label_line + 1))
        else:
            end = _plain_code_end(lay, name, label_line, next_start)
        body_ends.append(end)

    functions: list[AsmFunction] = []
    for k, (name, label_line, has_cfi) in enumerate(heads):
        end = _scan_tail(lay, name, body_ends[k], heads, starts, body_ends)
        functions.append(
            AsmFunction(
                name=name,
                start_line=starts[k],
                label_line=label_line,
                end_line=end,
                section=lay.section_at[label_line],
                is_global=name in lay.globals_,
                parent=clone_parent(name),
                has_cfi=has_cfi,
                body_end_line=body_ends[k],
                intel_syntax=lay.intel_at[label_line],
            )
        )
    return functions


def _plain_code_end(lay: _Layout, name: str, label_line: int, next_start: int) -> int:
    """End of a function without CFI: its .size, a switch to data, or the next function."""
    last = label_line + 1
    for i in range(label_line + 1, max(next_start, label_line + 1)):
        line = lay.lines[i]
        if any(
            (stmt.op == ".size" and _first_arg(stmt.args) == name)
            or (stmt.op in _SECTION_DIRECTIVES and not lay.executable_at[i + 1])
            or stmt.op == ".ident"
            for stmt in line.stmts
        ):
            break
        if not line.blank and not line.comment_only:
            last = i + 1
    return last


def _scan_tail(
    lay: _Layout,
    name: str,
    body_end: int,
    heads: list[tuple[str, int, bool]],
    starts: list[int],
    body_ends: list[int],
) -> int:
    """Extend a function over its trailing lines: .LFE markers, .size of itself and its
    family, the gcc hot/cold end markers, and any of its parts that gcc nests right here."""
    part_at = {
        starts[k]: body_ends[k]
        for k, (other, _, _) in enumerate(heads)
        if other != name and _in_family(other, name)
    }
    end = body_end
    i = body_end
    while i < len(lay.lines):
        if i in part_at and i < part_at[i]:
            i = end = part_at[i]
            continue
        line = lay.lines[i]
        if line.blank or line.comment_only:
            i += 1
            continue  # tentative
        belongs = True
        committing = False
        for stmt in line.stmts:
            if stmt.labels and not all(_LOCAL_GCC_END.match(lab) for lab in stmt.labels):
                belongs = False
            op = stmt.op
            if stmt.labels:
                committing = True
            if not op:
                continue
            if op == ".size":
                target = _first_arg(stmt.args)
                if _in_family(target, name) or _in_family(name, target):
                    committing = True
                else:
                    belongs = False
            elif op not in (".text", ".section", ".previous", ".popsection", ".pushsection"):
                belongs = False
        if not belongs:
            break
        i += 1
        if committing:
            end = i
    return end


# ---------------------------------------------------------------------------------------------
# Public queries.


def _find(functions: list[AsmFunction], name: str) -> AsmFunction:
    for fn in functions:
        if fn.name == name:
            return fn
    names = ", ".join(f.name for f in functions) or "none"
    raise AsmStructureError(f"no function `{name}` in this assembly (functions: {names})")


def function_family(text: str, name: str) -> list[AsmFunction]:
    """The function ``name`` followed by its gcc parts and clones (``name.cold``,
    ``name.part.0``, ``name.constprop.0``, ...), in file order. Empty if none is defined."""
    return [fn for fn in parse_functions(text) if _in_family(fn.name, name)]


def function_text(text: str, name: str) -> str:
    """The lines of function ``name``'s region (with a final newline).

    Raises :class:`AsmStructureError` when there is no such function."""
    fn = _find(parse_functions(text), name)
    lines = text.splitlines()
    return "".join(line + "\n" for line in lines[fn.start_line : fn.end_line])


def function_body(text: str, name: str) -> str:
    """The instructions and labels of ``name``'s own code, after its label: what llvm-mca
    should see. Directives (CFI, ``.size``, alignment, sections) and comment lines are
    dropped; Intel-syntax code gets a leading ``.intel_syntax noprefix``."""
    fn = _find(parse_functions(text), name)
    raw = text.splitlines()
    lexed = _lex(text)
    out: list[str] = [".intel_syntax noprefix"] if fn.intel_syntax else []
    for i in range(fn.label_line + 1, fn.body_end_line):
        stmts = lexed[i].stmts
        if not stmts:
            continue
        if all(not s.labels and s.op.startswith(".") for s in stmts):
            continue
        out.append(raw[i])
    return "".join(line + "\n" for line in out)


def referenced_symbols(text: str) -> set[str]:
    """Symbols used as operands by instructions and data directives (``.long .L5-.L4``).

    Definitions and symbol-attribute directives (``.globl``, ``.type``, ``.size``) do not
    count; ``@PLT``/``@GOTPCREL`` suffixes are dropped; registers are never symbols."""
    found: set[str] = set()
    intel = False
    for line in _lex(text):
        for stmt in line.stmts:
            op = stmt.op
            if op == ".intel_syntax":
                intel = True
            elif op == ".att_syntax":
                intel = False
            if not op or op in _NON_REFERENCING or op.startswith(".cfi"):
                continue
            args = stmt.args
            if op in (".set", ".equ", ".equiv"):
                args = args.split(",", 1)[1] if "," in args else ""
            found |= _symbols_in(args, intel)
    return found


def defined_symbols(text: str) -> set[str]:
    """Every non-numeric label defined in ``text`` (and names given by ``.set``/``.equ``)."""
    found: set[str] = set()
    for line in _lex(text):
        for stmt in line.stmts:
            found.update(label for label in stmt.labels if not label.isdigit())
            if stmt.op in (".set", ".equ", ".equiv"):
                found.add(_first_arg(stmt.args))
    return found


_LOCAL_LABEL = re.compile(r"\.L[\w$.]+")


def comparable_code(asm: str, only: Iterable[str] | None = None) -> dict[str, str]:
    """Each function's code in a form that compares across builds: comments and blank lines
    dropped, the function's own code labels numbered in order of appearance, and a constant
    it names by label (``.LC0``) replaced by that constant's contents. Two compilers' builds
    of a function compare equal when they differ only in how they number labels. ``only``:
    just these functions."""
    lines = asm.splitlines()
    wanted = None if only is None else set(only)
    constants: dict[str, str] = {}  # label -> its contents ("" for a label that is not data)
    return {
        fn.name: _comparable(asm, "\n".join(lines[fn.label_line : fn.end_line]), constants)
        for fn in parse_functions(asm)
        if wanted is None or fn.name in wanted
    }


def _comparable(asm: str, text: str, constants: dict[str, str]) -> str:
    own = local_labels(text)
    numbering: dict[str, str] = {}

    def rename(m: re.Match[str]) -> str:
        label = m.group(0)
        if label not in constants:
            item = data_item(asm, label)
            constants[label] = "{" + "; ".join(item.content) + "}" if item is not None else ""
        if constants[label]:
            return constants[label]
        if label in own:
            return numbering.setdefault(label, f".L#{len(numbering)}")
        return label

    lines = (" ".join(_LOCAL_LABEL.sub(rename, raw.split("#", 1)[0]).split()) for raw in
             text.splitlines())  # fmt: skip
    return "\n".join(line for line in lines if line)


def local_labels(region_text: str) -> set[str]:
    """The ``.L`` labels defined in ``region_text`` (the names a splice may need to rename)."""
    return {label for label in defined_symbols(region_text) if label.startswith(".L")}


# ---------------------------------------------------------------------------------------------
# Sections, syntax and data items, for splicing.


@dataclass(frozen=True)
class LineState:
    """The section and syntax in effect at the start of a line."""

    section: str
    intel_syntax: bool


def line_states(text: str, start: LineState | None = None) -> list[LineState]:
    """The state at the start of every line of ``text`` and, last, after its final line.

    ``start`` is the state the text begins in (default: ``.text``, AT&T), so a fragment can be
    simulated as if it were inserted at some point of another file."""
    start = start or LineState(".text", False)
    tracker = _SectionTracker(current=start.section, previous=start.section)
    intel = start.intel_syntax
    states: list[LineState] = []
    for line in _lex(text):
        states.append(LineState(tracker.current, intel))
        for stmt in line.stmts:
            if stmt.op in _SECTION_DIRECTIVES:
                tracker.apply(stmt)
            elif stmt.op == ".intel_syntax":
                intel = True
            elif stmt.op == ".att_syntax":
                intel = False
    states.append(LineState(tracker.current, intel))
    return states


def section_declarations(text: str) -> dict[str, str]:
    """For each section named in ``text``, the operands of its first ``.section`` directive
    that gives flags (``.rodata.cst16,"aM",@progbits,16``), or just the name."""
    found: dict[str, str] = {}
    for line in _lex(text):
        for stmt in line.stmts:
            if stmt.op in (".section", ".pushsection"):
                name = _first_arg(stmt.args)
                if name not in found or ("," in stmt.args and "," not in found[name]):
                    found[name] = stmt.args
    return found


@dataclass(frozen=True)
class DataItem:
    """A labelled constant or object outside code: its section and its lines (with the
    alignment and symbol directives just before the label)."""

    label: str
    section: str
    start_line: int
    end_line: int
    text: str
    content: tuple[str, ...]  # the data lines after the label, whitespace-normalised


def data_item(text: str, label: str) -> DataItem | None:
    """The data item ``label`` defines in a non-code section, or None (undefined, or code)."""
    lay = _layout(text)
    line = lay.labels.get(label)
    if line is None or lay.executable_at[line]:
        return None
    start = line
    while start > 0:
        prev = lay.lines[start - 1]
        ops = prev.ops
        if prev.labels or not ops:
            break
        if not all(
            s.op in _ALIGN_DIRECTIVES
            or (s.op in _ATTRIBUTE_DIRECTIVES and _first_arg(s.args) == label)
            for s in ops
        ):
            break
        start -= 1
    end = line + 1
    while end < len(lay.lines):
        nxt = lay.lines[end]
        if nxt.labels or any(
            s.op in _SECTION_DIRECTIVES
            or s.op in (".ident", ".intel_syntax", ".att_syntax", ".comm", ".lcomm")
            # clang puts `.type x,@object` / `.local x` / `.comm x` between two constants:
            # directives about another symbol end this item.
            or (s.op in _ATTRIBUTE_DIRECTIVES and _first_arg(s.args) != label)
            for s in nxt.stmts
        ):
            break
        end += 1
    # alignment and symbol directives right before the next label belong to that label
    while end - 1 > line and all(
        s.op in _ALIGN_DIRECTIVES or s.op in _ATTRIBUTE_DIRECTIVES for s in lay.lines[end - 1].ops
    ):
        end -= 1
    raw = text.splitlines()
    content = tuple(
        " ".join(raw_line.split()) for raw_line in raw[line + 1 : end] if raw_line.strip()
    )
    same_line = raw[line].split(":", 1)[1].strip() if ":" in raw[line] else ""
    if same_line:
        content = (" ".join(same_line.split()), *content)
    return DataItem(
        label=label,
        section=lay.section_at[line],
        start_line=start,
        end_line=end,
        text="".join(r + "\n" for r in raw[start:end]),
        content=content,
    )
