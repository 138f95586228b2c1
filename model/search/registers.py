"""Which caller-saved registers a function from another build may change, and whether a
caller relies on them: the check that makes a splice safe.

gcc's ``-fipa-ra`` (on at ``-O2`` and above) lets a caller keep a value in a call-clobbered
register across a call to a function of the same file that gcc knows leaves that register
alone. The baseline's ``main`` on the editor suite's program keeps ``r9``-``r11`` across
``call align``, for instance. A function spliced in from another build (clang, another gcc
variant, an LLM's answer) may write them: the program then computes garbage, crashes, or,
worst, passes tests that never take that path.

:func:`splice_is_safe` refuses such a file. For every call from a function of one source to
a function of another it takes the registers the callee's new version *may* change and its
caller's own build *surely* let it change (:func:`clobbers_at_most`,
:func:`clobbers_at_least`), and refuses when one of them is live after the call in the
caller: read on some path before it is written (:func:`live_after_calls`). Every
approximation errs towards "live" (an unknown instruction reads what it names, a call reads
every argument register, an indirect jump may go to any label of the function), so a refusal
can be needless but an acceptance is sound for code that follows the ABI otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from asmopt.executor.asmfile import clone_parent, comparable_code, parse_functions, statements

__all__ = [
    "CALLER_SAVED",
    "arguments_read",
    "clobbers_at_least",
    "clobbers_at_most",
    "live_after_calls",
    "splice_is_safe",
    "strings",
]

_GPRS = "rax rcx rdx rsi rdi r8 r9 r10 r11".split()
CALLER_SAVED = frozenset(_GPRS + [f"xmm{i}" for i in range(32)] + [f"k{i}" for i in range(8)])
_ARGUMENTS = frozenset("rdi rsi rdx rcx r8 r9 rax".split() + [f"xmm{i}" for i in range(8)])
_RESULTS = frozenset({"rax", "rdx", "xmm0", "xmm1"})

# Every name of a caller-saved register -> (the register it is part of, its width in bits).
_NAMES: dict[str, tuple[str, int]] = {}
for _r, _e, _w, _b in (
    ("rax", "eax", "ax", "al"),
    ("rcx", "ecx", "cx", "cl"),
    ("rdx", "edx", "dx", "dl"),
    ("rsi", "esi", "si", "sil"),
    ("rdi", "edi", "di", "dil"),
):
    _NAMES.update({_r: (_r, 64), _e: (_r, 32), _w: (_r, 16), _b: (_r, 8)})
_NAMES.update({"ah": ("rax", 8), "ch": ("rcx", 8), "dh": ("rdx", 8)})
for _n in range(8, 12):
    _NAMES.update({f"r{_n}": (f"r{_n}", 64), f"r{_n}d": (f"r{_n}", 32)})
    _NAMES.update({f"r{_n}w": (f"r{_n}", 16), f"r{_n}b": (f"r{_n}", 8)})
for _n in range(32):
    _NAMES.update({f"{p}mm{_n}": (f"xmm{_n}", 128) for p in "xyz"})
_NAMES.update({f"k{_n}": (f"k{_n}", 64) for _n in range(8)})

_ATT_REG = re.compile(r"%([a-z][a-z0-9]*)")
_INTEL_REG = re.compile(r"(?<![\w.$%])([a-z][a-z0-9]*)(?![\w.$])")


def _registers(text: str, intel: bool) -> set[str]:
    """The caller-saved registers named in ``text`` (full names)."""
    found = (_INTEL_REG if intel else _ATT_REG).findall(text.lower())
    return {_NAMES[r][0] for r in found if r in _NAMES}


# ---------------------------------------------------------------------------------------------
# Instructions.


@dataclass(frozen=True)
class _Insn:
    labels: tuple[str, ...]
    mnemonic: str  # lower case, prefixes (rep, lock, notrack, bnd) dropped
    operands: tuple[str, ...]  # in source order
    intel: bool
    rep: bool = False

    @property
    def dest(self) -> str:
        """The operand an instruction writes, when it writes one it names."""
        if not self.operands:
            return ""
        return self.operands[0] if self.intel else self.operands[-1]

    @property
    def sources(self) -> tuple[str, ...]:
        return self.operands[1:] if self.intel else self.operands[:-1]


_PREFIXES = {"rep", "repe", "repz", "repne", "repnz", "lock", "notrack", "bnd", "data16"}
_LABEL = re.compile(r"^([\w.$]+):\s*")


def _split_operands(args: str) -> tuple[str, ...]:
    """Top-level comma-separated operands (commas inside () or [] do not split)."""
    out: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(args):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(args[start:i].strip())
            start = i + 1
    last = args[start:].strip()
    if last or out:
        out.append(last)
    return tuple(out)


# Directives that put bytes in the code the analysis cannot read as instructions (raw
# encodings, repetitions, macros): a function containing one may change anything.
_OPAQUE = re.compile(
    r"^\.(?:byte|2byte|4byte|8byte|short|word|hword|value|long|int|quad|octa|inst|insn|"
    r"incbin|fill|skip|space|zero|ascii|asciz|string|rept|irp|irpc|macro|include)$"
)


class _CodeSections:
    """Whether the statements of a function's text are code: gcc puts a jump table in
    ``.rodata`` in the middle of its function, then goes back to ``.text``."""

    def __init__(self) -> None:
        self.now = True
        self._previous = True
        self._stack: list[bool] = []

    def apply(self, op: str, args: str) -> None:
        if op in (".text", ".data", ".bss"):
            self._switch(op == ".text")
        elif op in (".section", ".pushsection"):
            parts = [p.strip().strip('"') for p in args.split(",")]
            name, flags = parts[0], parts[1] if len(parts) > 1 else ""
            executable = name.startswith((".text", ".init", ".fini")) or "x" in flags
            if op == ".pushsection":
                self._stack.append(self.now)
            self._switch(executable)
        elif op == ".previous":
            self._switch(self._previous)
        elif op == ".popsection" and self._stack:
            self._switch(self._stack.pop())

    def _switch(self, executable: bool) -> None:
        self._previous, self.now = self.now, executable


def _instructions(text: str, intel: bool = False) -> list[_Insn]:
    """The instructions of a function's text, each with the labels that precede it (a
    label at the end, with no instruction after it, is kept on an empty stop). Bytes the
    analysis cannot read become one ``.opaque`` instruction."""
    out: list[_Insn] = []
    labels: list[str] = []
    code = _CodeSections()
    for found, op, args in statements(text):
        if op.startswith("."):
            code.apply(op, args)
        if not code.now:
            continue  # data: a jump table, a constant; its labels are not code
        labels += found
        if not op:
            continue
        if op.startswith("."):
            if op in (".intel_syntax", ".att_syntax"):
                intel = op == ".intel_syntax"
            elif _OPAQUE.match(op):
                out.append(_Insn(tuple(labels), ".opaque", (), intel))
                labels = []
            continue
        words = [op, args] if args else [op]
        rep = False
        while len(words) > 1 and words[0].lower() in _PREFIXES:
            rep = rep or words[0].lower().startswith("rep")
            words = words[1].split(None, 1)
        mnemonic = words[0].lower()
        operands = _split_operands(words[1]) if len(words) > 1 else ()
        out.append(_Insn(tuple(labels), mnemonic, operands, intel, rep))
        labels = []
    if labels:
        out.append(_Insn(tuple(labels), "", (), intel))
    return out


def _target(insn: _Insn) -> str:
    """The symbol a call or jump goes to ("*" for an indirect one)."""
    op = insn.operands[0] if insn.operands else ""
    if op.startswith("*") or _registers(op, insn.intel) or "[" in op or "(" in op:
        return "*"
    return op.split("@", 1)[0].strip()


def _is_call(insn: _Insn) -> bool:
    return insn.mnemonic in ("call", "callq")


def _is_jump(insn: _Insn) -> bool:
    return insn.mnemonic in ("jmp", "jmpq")


def _is_branch(insn: _Insn) -> bool:
    return (insn.mnemonic.startswith("j") and not _is_jump(insn)) or insn.mnemonic.startswith(
        "loop"
    )


# A jump table: a label heading ``.long .Lx-.Ltable`` (gcc, PIC) or ``.quad .Lx`` entries.
_TABLE = re.compile(
    r"^\s*([\w.$]+):\s*\n((?:\s*\.(?:long|quad)\s+[\w.$]+(?:\s*-\s*[\w.$]+)?\s*\n?)+)", re.M
)
_ENTRY = re.compile(r"\.(?:long|quad)\s+([\w.$]+)")


def jump_tables(asm: str) -> dict[str, frozenset[str]]:
    """The jump tables of an assembly file: each table's label and the labels it jumps to."""
    return {m.group(1): frozenset(_ENTRY.findall(m.group(2))) for m in _TABLE.finditer(asm)}


def _switch_table(insns: list[_Insn], k: int, tables: dict[str, frozenset[str]]) -> str | None:
    """The jump table an indirect jump at ``insns[k]`` dispatches through: one its operand
    names, or one the straight-line code before it (back to a label) loads."""
    for j in range(k, -1, -1):
        insn = insns[j]
        named = {w for o in insn.operands for w in re.findall(r"[\w.$]+", o)} & set(tables)
        if named:
            return min(named)
        if insn.labels or (j != k and (_is_call(insn) or _is_jump(insn) or _is_branch(insn))):
            return None  # control may come here from elsewhere, with another address
    return None


def _local_target(target: str, local: set[str]) -> bool:
    """Whether a jump goes to one of ``local`` (``1f``/``1b``: to the numeric label 1)."""
    return target in local or (
        re.fullmatch(r"\d+[fb]", target) is not None and target[:-1] in local
    )


def _calls(
    insns: list[_Insn], local: set[str], tables: dict[str, frozenset[str]] | None = None
) -> list[str]:
    """Targets of calls and of jumps out of the function (tail calls), ``*`` for indirect
    ones; ``local`` holds the function's own labels. An indirect jump through a jump table
    of ``tables`` whose every entry is one of the function's labels is a switch, not a
    call."""
    found = []
    for k, insn in enumerate(insns):
        if _is_call(insn):
            found.append(_target(insn))
        elif _is_jump(insn) or _is_branch(insn):
            target = _target(insn)
            if target == "*" and _is_jump(insn) and tables:
                table = _switch_table(insns, k, tables)
                if table is not None and tables[table] <= local:
                    continue
            if not _local_target(target, local):
                found.append(target)
    return found


# Instructions that read or write registers they do not name. Sign extensions (AT&T and
# Intel names) read rax and write rdx, or rax itself.
_SIGN_INTO_RDX = ("cqto", "cltd", "cwtd", "cqo", "cdq", "cwd")
_SIGN_IN_RAX = ("cltq", "cdqe", "cwtl", "cwde", "cbtw", "cbw")
_IMPLICIT_WRITES = {
    **{name: {"rdx"} for name in _SIGN_INTO_RDX},
    **{name: {"rax"} for name in _SIGN_IN_RAX},
    "cpuid": {"rax", "rcx", "rdx"},
    "rdtsc": {"rax", "rdx"},
    "rdtscp": {"rax", "rdx", "rcx"},
    "syscall": {"rax", "rcx", "r11"},
    "xgetbv": {"rax", "rdx"},
    "lahf": {"rax"},
    "xlat": {"rax"},
    "xlatb": {"rax"},
    "rdpmc": {"rax", "rdx"},
    "rdmsr": {"rax", "rdx"},
    **{f"{v}pcmp{e}stri": {"rcx"} for v in ("", "v") for e in "ei"},
    **{f"{v}pcmp{e}strm": {"xmm0"} for v in ("", "v") for e in "ei"},
}
_IMPLICIT_READS = {
    **{name: {"rax"} for name in _SIGN_INTO_RDX + _SIGN_IN_RAX},
    "cpuid": {"rax", "rcx"},
    "syscall": {"rax", "rdi", "rsi", "rdx", "r10", "r8", "r9"},
    "xgetbv": {"rcx"},
    "xlat": {"rax"},
    "xlatb": {"rax"},
    "jrcxz": {"rcx"},
    "jecxz": {"rcx"},
    "sahf": {"rax"},
    **{f"{v}pcmpestr{k}": {"rax", "rdx"} for v in ("", "v") for k in "im"},
    **{name: {"rdx"} for name in ("mulx", "mulxl", "mulxq")},
}
# Implicit writes of part of a register (dx, ah, al; the low 128 bits of xmm0): not kills.
_PARTIAL_IMPLICIT_WRITES = frozenset(
    {"cwtd", "cwd", "cbtw", "cbw", "lahf", "xlat", "xlatb", "pcmpistrm", "pcmpestrm"}
)
# Instructions that write registers besides their destination (both operands of an exchange,
# a gather's mask, mulx's two halves): every register they name counts as written.
_WRITES_SEVERAL = re.compile(
    r"^(?:xchg\w*|xadd\w*|cmpxchg\w*|mulx\w*|v?p?gather\w*|v?p?scatter\w*|vp2intersect\w*|"
    r"rdrand\w*|rdseed\w*|v?p?expand\w*|v?p?compress\w*)$"
)
_MUL_DIV = re.compile(r"^i?(?:mul|div)[bwlq]?$")
_STRING_OP = re.compile(r"^(?:movs|stos|lods|scas|cmps|ins|outs)[bwlqd]?$")


def _is_string_op(insn: _Insn) -> bool:
    """A string instruction: no operands, or only memory ones (``movsb (%rsi), (%rdi)``),
    not the SSE ``movsd``/``cmpsd`` that share its names."""
    return bool(_STRING_OP.match(insn.mnemonic)) and all(
        "(" in o or "[" in o for o in insn.operands
    )


# Instructions that only read the operand in the written position (integer compares and
# tests, pushes, branches; one-operand multiplies and divides, whose operand is a source).
_READS_DEST = re.compile(
    r"^(?:v?u?comis[sd]|v?ptest|vtestp[sd]|cmp[bwlq]?|test[bwlq]?|bt[wlq]?|push\w*|call\w*|"
    r"jmp\w*|j\w+|ret\w*|nop\w*|prefetch\w*|out\w*|ldmxcsr|fxrstor\w*|xrstor\w*|loop\w*|"
    r"clflush\w*|v?pcmp[ei]str[im])$"
)


def _reads_dest_only(insn: _Insn) -> bool:
    return bool(_READS_DEST.match(insn.mnemonic)) or (
        bool(_MUL_DIV.match(insn.mnemonic)) and len(insn.operands) <= 1
    )


# Moves and conversions whose destination is written whole, never read; and VEX/EVEX
# instructions (three operands: the destination is not a source), less those below.
_WRITE_ONLY = re.compile(
    r"^(?:mov[lq]?|movabs[q]?|movz\w+|movs[bwl][wlq]|movsx\w*|movzx|lea[lq]?|pop[q]?|"
    r"cvtt?s[sd]2si[lq]?|movmskp[sd]|pmovmskb|movd|movq|movap[sd]|movup[sd]|movdq[au]|"
    r"v\w+|popcnt[lq]?|lzcnt[lq]?|tzcnt[lq]?|pextr\w+|(?:shlx|sarx|shrx|rorx|andn|bzhi|pdep|pext|"
    r"blsi|blsr|blsmsk)[lq]?)$"
)
# VEX and EVEX instructions that read their destination too (fused multiply-adds, dot
# products and other accumulations, two-table permutes, ternary logic, gathers and
# expansions that keep masked-off lanes), or only compare or test it.
_VEX_READS_DEST = re.compile(
    r"^v(?:fn?m(?:add|sub)\w*|fmaddsub\w*|fmsubadd\w*|4fn?madd\w*|p4dpwssd\w*|pdp\w*|"
    r"dpbf16\w*|pmadd52\w*|psh[lr]dv\w*|perm[it]2\w*|pternlog\w*|fixupimm\w*|p?gather\w*|"
    r"p?scatter\w*|p?expand\w*|p?compress\w*|zero\w*|pcmov\w*|p?maskmov\w*|[ls]dmxcsr|"
    r"p2intersect\w*|u?comis[sd]|ptest|testp[sd]|pcmp[ei]str[im])$"
)
# x ^ x and x - x for integers are 0 whatever x holds (not x - x for floats: NaN, Inf).
_ZEROING = re.compile(r"^(?:xor[bwlq]?|sub[bwlq]?|v?pxor[dq]?|v?xorp[sd]|v?psub[bwdq])$")


def _writes_whole(insn: _Insn) -> str | None:
    """The register an instruction surely replaces whole without reading it first, if any."""
    dest = insn.dest
    names = (_INTEL_REG if insn.intel else _ATT_REG).findall(dest.lower())
    if len(names) != 1 or names[0] not in _NAMES or "[" in dest or "(" in dest or "{" in dest:
        return None
    reg, width = _NAMES[names[0]]
    m = insn.mnemonic
    if (
        _ZEROING.match(m)
        and len(insn.operands) >= 2
        and len({o.lower() for o in insn.operands}) == 1
    ):
        # xor %eax, %eax: zeroes, reads nothing (an 8- or 16-bit one keeps the rest)
        return reg if width >= 32 or not reg.startswith("r") else None
    three_operand_imul = m.startswith("imul") and len(insn.operands) == 3
    if not (_WRITE_ONLY.match(m) or three_operand_imul) or _VEX_READS_DEST.match(m):
        return None
    if reg.startswith("xmm") and not m.startswith("v"):
        # A legacy SSE write to an xmm register keeps the bits above 128; for a scalar move
        # between registers it also keeps the upper lanes.
        return reg if m in ("movaps", "movapd", "movups", "movupd", "movdqa", "movdqu") else None
    if reg.startswith("xmm") and len(insn.operands) == 2 and m in ("vmovss", "vmovsd"):
        return reg  # from memory: zero-extends
    return reg if width >= 32 or reg.startswith(("xmm", "k")) else None


def _uses(insn: _Insn) -> set[str]:
    """Registers an instruction may read (named ones, whole, and implicit ones)."""
    m = insn.mnemonic
    if m == ".opaque":
        return set(CALLER_SAVED)
    whole = _writes_whole(insn)
    if whole is not None:
        regs = (
            set().union(*(_registers(o, insn.intel) for o in insn.sources))
            if (not _ZEROING.match(m) or len({o.lower() for o in insn.operands}) != 1)
            else set()
        )
        # The destination may also be a memory operand's base: count only its address.
        return regs | _address_registers(insn.dest, insn.intel)
    regs = set().union(*(_registers(o, insn.intel) for o in insn.operands)) if insn.operands \
        else set()  # fmt: skip
    regs |= _IMPLICIT_READS.get(m, set())
    if _MUL_DIV.match(m) and len(insn.operands) <= 1:
        regs |= {"rax", "rdx"}
    if _is_string_op(insn) or insn.rep:
        regs |= {"rax", "rcx", "rsi", "rdi"}
    if m.startswith("cmpxchg"):
        regs |= {"rax", "rdx", "rcx"}
    if m.startswith("loop"):
        regs.add("rcx")
    if _is_call(insn):
        regs |= _ARGUMENTS  # which of them the callee takes is not in the text
    return regs


_VECTOR_ARGUMENTS = [f"xmm{i}" for i in range(8)]
_AL_CONSTANT = re.compile(r"^(\d+)$")


def _vector_count(insns: list[_Insn], call: int) -> int | None:
    """How many vector registers a call passes, when the code says: a variadic call takes
    their number in %al, and a compiler sets %eax just before a call only for that (the call
    clobbers it otherwise). None when %eax is not set to a constant in the straight-line code
    before the call."""
    insn = _set_for_call(insns, call, "rax")
    if insn is None:
        return None
    if _ZEROING.match(insn.mnemonic):
        return 0
    source = insn.sources[0] if len(insn.sources) == 1 else ""
    m = _AL_CONSTANT.match(source.removeprefix("$") if not insn.intel else source)
    return int(m.group(1)) if m and insn.mnemonic in ("mov", "movl") else None


def _set_for_call(insns: list[_Insn], call: int, register: str) -> _Insn | None:
    """The instruction that sets ``register`` (whole) for the call at ``insns[call]``, in the
    straight-line code just before it; None when the register is read after being set, or
    control may reach the call from elsewhere (a label, a jump) before it is found."""
    if insns[call].labels:
        return None
    for k in range(call - 1, -1, -1):
        insn = insns[k]
        if _is_call(insn) or _is_jump(insn) or _is_branch(insn):
            return None
        if _writes_whole(insn) == register:
            return insn
        if register in _uses(insn) or insn.labels:
            return None
    return None


def _address_registers(operand: str, intel: bool) -> set[str]:
    inner = re.findall(r"\[([^\]]*)\]" if intel else r"\(([^)]*)\)", operand)
    return set().union(*(_registers(part, intel) for part in inner)) if inner else set()


def _kills(insn: _Insn, call_kills: dict[str, frozenset[str]]) -> set[str]:
    """Registers surely written whole, so not live before the instruction unless read."""
    if _is_call(insn):
        target = _target(insn)
        # A call out of the file may change every caller-saved register (the ABI); one to
        # a function of the file changes what it surely writes.
        return set(call_kills.get(target, CALLER_SAVED))
    whole = _writes_whole(insn)
    kills = {whole} if whole else set()
    if insn.mnemonic in _PARTIAL_IMPLICIT_WRITES:
        return kills
    return kills | _IMPLICIT_WRITES.get(insn.mnemonic, set()) - _IMPLICIT_READS.get(
        insn.mnemonic, set()
    )


# ---------------------------------------------------------------------------------------------
# What a function may and surely changes.


def clobbers_at_most(
    text: str, intel: bool = False, tables: dict[str, frozenset[str]] | None = None
) -> frozenset[str]:
    """Caller-saved registers a function may change: the destination of every instruction
    that writes one, those written implicitly, every register an instruction that writes
    more than its destination names, and all of them when it calls anything (``tables``:
    the jump tables of its file, to tell a switch from a call; else those in ``text``)."""
    insns = _instructions(text, intel)
    local = {label for i in insns for label in i.labels}
    tables = jump_tables(text) if tables is None else tables
    if _calls(insns, local, tables) or any(i.mnemonic == ".opaque" for i in insns):
        return CALLER_SAVED
    code = [i for i in insns if i.mnemonic]
    last = code[-1].mnemonic if code else ""
    ends = {label for label in insns[-1].labels} if insns and not insns[-1].mnemonic else set()
    jumped = {_target(i) for i in insns if _is_jump(i) or _is_branch(i)}
    if not (last.startswith(("ret", "jmp")) or last in ("ud2", "hlt")) or ends & jumped:
        return CALLER_SAVED  # control runs on into code that is not this function's
    regs: set[str] = set()
    for insn in insns:
        m = insn.mnemonic
        if _WRITES_SEVERAL.match(m):
            regs |= set().union(*(_registers(o, insn.intel) for o in insn.operands))
        elif insn.operands and not _reads_dest_only(insn):
            regs |= _registers(insn.dest, insn.intel) - _address_registers(insn.dest, insn.intel)
        regs |= _IMPLICIT_WRITES.get(m, set())
        if (_MUL_DIV.match(m) and len(insn.operands) <= 1) or m.startswith("cmpxchg"):
            regs |= {"rax", "rdx"}
        if _is_string_op(insn) or insn.rep:
            regs |= {"rcx", "rsi", "rdi", "rax"}
        if m.startswith("loop"):
            regs.add("rcx")
        if m.startswith(("vzeroupper", "vzeroall")):
            regs |= {f"xmm{i}" for i in range(16)}
    return frozenset(regs & CALLER_SAVED)


def clobbers_at_least(text: str, defined: set[str], intel: bool = False) -> frozenset[str]:
    """Caller-saved registers a function surely changes, as a caller built with IPA-RA may
    assume: all of them when it calls something outside ``defined`` or through a pointer
    (gcc then assumes every one is changed), else the registers it names as the destination
    of an instruction that writes one. An indirect jump (a switch, or a tail call) counts
    as neither: what is sure is what the function itself writes."""
    insns = _instructions(text, intel)
    local = {label for i in insns for label in i.labels}
    for insn in insns:
        target = _target(insn) if _is_call(insn) or _is_jump(insn) else ""
        if _is_call(insn) and (target == "*" or target not in defined):
            return CALLER_SAVED
        if _is_jump(insn) and target not in ("*", *defined) and not _local_target(target, local):
            return CALLER_SAVED
    regs: set[str] = set()
    for insn in insns:
        if _reads_dest_only(insn) or not insn.operands:
            continue
        names = (_INTEL_REG if insn.intel else _ATT_REG).findall(insn.dest.lower())
        if len(names) == 1 and names[0] in _NAMES and not _address_registers(insn.dest, insn.intel):
            regs.add(_NAMES[names[0]][0])
    return frozenset(regs & CALLER_SAVED)


# ---------------------------------------------------------------------------------------------
# Liveness.


def live_after_calls(
    text: str | Sequence[tuple[str, bool, frozenset[str]]],
    callee: str,
    *,
    intel: bool = False,
    at_exit: frozenset[str] = CALLER_SAVED,
    call_kills: dict[str, frozenset[str]] | None = None,
    call_uses: dict[str, frozenset[str]] | None = None,
    strings: dict[str, str] | None = None,
) -> frozenset[str]:
    """Caller-saved registers that may be live right after a call to ``callee`` in
    ``text``: read on some path before being written. ``text`` is a function, or parts that
    jump to each other's labels (a function and the parts gcc split from it), each as
    (text, Intel syntax, what is live when it returns). ``at_exit`` is what is live when a
    lone function returns (what its own callers may rely on, and its results);
    ``call_kills`` maps a function of the file to the registers a call to it surely writes,
    ``call_uses`` to those it may read (else every argument register); ``strings`` maps the
    labels of the file's string constants to their text (the formats of printf-like calls).
    A tail call to ``callee`` (``jmp``) counts as a call whose return is the function's."""
    parts = [(text, intel, at_exit)] if isinstance(text, str) else list(text)
    insns: list[_Insn] = []
    exits: list[frozenset[str]] = []
    for part, part_intel, part_exit in parts:
        code = _instructions(part, part_intel)
        insns += code
        exits += [part_exit] * len(code)
    live_in = _live_in(insns, exits, call_kills or {}, call_uses or {}, strings or {})
    live: set[str] = set()
    for k, insn in enumerate(insns):
        if (_is_call(insn) or _is_jump(insn)) and _target(insn) == callee:
            if _is_jump(insn):
                live |= exits[k]
            elif k + 1 < len(insns):
                live |= live_in[k + 1]
            else:
                live |= exits[k] | _ARGUMENTS | _RESULTS
    return frozenset(live & CALLER_SAVED)


def arguments_read(
    functions: dict[str, tuple[str, bool]], constants: dict[str, str] | None = None
) -> dict[str, frozenset[str]]:
    """For each function of a file (name -> (text, Intel syntax)), the caller-saved
    registers it may read before writing them: its arguments, and those of its callees in
    the file that it passes on untouched. Calls between the file's functions see each
    other's reads and surely-written registers (a least fixed point, from nothing read)."""
    code = {name: _instructions(text, intel) for name, (text, intel) in functions.items()}
    surely = {
        name: clobbers_at_least(text, set(functions), intel)
        for name, (text, intel) in functions.items()
    }
    reads = {name: frozenset[str]() for name in functions}
    changed = True
    while changed:
        changed = False
        for name, insns in code.items():
            if not insns:
                continue
            live = _live_in(insns, frozenset(), surely, reads, constants or {})[0] & CALLER_SAVED
            if live != reads[name]:
                reads[name], changed = live, True
    return reads


# Functions of the C library that take integer and pointer arguments only, and how many: a
# call to one reads no vector register and no further argument register.
_LIBC_ARGUMENTS = {
    **dict.fromkeys("abort rand getchar".split(), 0),
    **dict.fromkeys(
        "free malloc exit _exit strlen puts putchar atoi atol srand abs labs llabs toupper "
        "tolower isdigit isalpha isspace isalnum isupper islower fclose fflush strdup time "
        "__stack_chk_fail".split(),
        1,
    ),
    **dict.fromkeys(
        "calloc realloc strcmp strchr strrchr strcpy strcat strstr fputs fputc putc fopen "
        "aligned_alloc".split(),
        2,
    ),
    **dict.fromkeys(
        "memcpy memmove memset memcmp memchr strncmp strncpy fgets read write __strcpy_chk "
        "strtol strtoul strtoll strtoull posix_memalign".split(),
        3,
    ),
    **dict.fromkeys("qsort fread fwrite __memmove_chk __memcpy_chk __memset_chk".split(), 4),
    "bsearch": 5,
}
_INTEGER_ARGUMENTS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")


# Formatted I/O: the argument that is the format, counted from 0, and whether it is scanf's
# (every conversion a pointer, ``%*d`` none) or printf's.
_FORMATTED = {
    "printf": (0, False),
    **{name: (1, False) for name in ("fprintf", "sprintf", "dprintf", "__printf_chk")},
    **{name: (2, False) for name in ("snprintf", "__fprintf_chk")},
    "__sprintf_chk": (3, False),
    "__snprintf_chk": (4, False),
    **{name: (0, True) for name in ("scanf", "__isoc99_scanf", "__isoc23_scanf")},
    **dict.fromkeys(
        ("sscanf", "fscanf", "__isoc99_sscanf", "__isoc99_fscanf", "__isoc23_sscanf"),
        (1, True),
    ),
    "__isoc23_fscanf": (1, True),
}
_CONVERSION = (
    r"%(?P<suppress>\*)?(?:\d+\$)?[-+ #0']*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?"
    r"{alloc}(?P<length>hh|h|ll|l|L|q|j|z|Z|t)?(?P<kind>.)"
)
_PRINTF_CONVERSION = re.compile(_CONVERSION.format(alloc=""), re.S)
# scanf's ``m`` (allocate the string) is a modifier: ``%ms`` takes one pointer.
_SCANF_CONVERSION = re.compile(_CONVERSION.format(alloc="m?"), re.S)


def _format_counts(fmt: str, scanf: bool) -> tuple[int, int] | None:
    """How many integer (or pointer) and floating-point arguments a format takes, or None
    when it has a conversion this does not know."""
    integers = floats = 0
    for m in (_SCANF_CONVERSION if scanf else _PRINTF_CONVERSION).finditer(fmt):
        kind = m.group("kind")
        if kind == "%" or kind == "m":
            continue
        if scanf:
            if kind == "[" or kind in "diouxXcspnfFeEgGaA":
                integers += 0 if m.group("suppress") else 1
                continue
            return None
        if m.group("suppress"):
            return None
        integers += (m.group("width") == "*") + (m.group("precision") == "*")
        if kind in "diouxXcspn":
            integers += 1
        elif kind in "fFeEgGaA":
            if m.group("length") == "L":
                continue  # a long double goes on the stack
            floats += 1
        else:
            return None
    return integers, floats


def _format_reads(insns: list[_Insn], k: int, strings: dict[str, str]) -> set[str] | None:
    """What a printf- or scanf-like call reads, from its format when the code loads one the
    file defines, in the straight-line code before the call; else None."""
    name = _target(insns[k])
    if name not in _FORMATTED:
        return None
    index, scanf = _FORMATTED[name]
    if index >= len(_INTEGER_ARGUMENTS):
        return None
    insn = _set_for_call(insns, k, _INTEGER_ARGUMENTS[index])
    if insn is None:
        return None
    source = insn.sources[0] if len(insn.sources) == 1 else ""
    m = re.fullmatch(r"\s*(?:offset\s+)?([\w.$]+)(?:\(%rip\)|\[rip\])?\s*", source)
    label = m.group(1) if m and insn.mnemonic.startswith("lea") else None
    if label is None and m and insn.intel:
        inner = re.fullmatch(r".*\[\s*rip\s*\+\s*([\w.$]+)\s*\]\s*", source)
        label = inner.group(1) if inner else None
    fmt = strings.get(label or "")
    counts = _format_counts(fmt, scanf) if fmt is not None else None
    if counts is None:
        return None
    integers, floats = counts
    reads = set(_INTEGER_ARGUMENTS[: index + 1 + integers]) | {"rax"}
    return reads | set(_VECTOR_ARGUMENTS[:floats])


def _call_reads(
    insns: list[_Insn], k: int, call_uses: dict[str, frozenset[str]], strings: dict[str, str]
) -> set[str]:
    """What the call at ``insns[k]`` may read: what ``call_uses`` says for a function of the
    file, a known C library function's arguments (a formatted one's from its format), else
    every argument register (fewer vector registers when %al says how many a variadic call
    passes)."""
    insn = insns[k]
    target = _target(insn)
    named = _uses(insn) - _ARGUMENTS  # an indirect call's pointer and address registers
    if target in call_uses:
        return named | call_uses[target]
    if target in _LIBC_ARGUMENTS:
        return named | set(_INTEGER_ARGUMENTS[: _LIBC_ARGUMENTS[target]])
    formatted = _format_reads(insns, k, strings)
    if formatted is not None:
        return named | formatted
    reads = _uses(insn)
    if (count := _vector_count(insns, k)) is not None:
        reads -= set(_VECTOR_ARGUMENTS[count:])
    return reads


def _live_in(
    insns: list[_Insn],
    at_exit: frozenset[str] | Sequence[frozenset[str]],
    call_kills: dict[str, frozenset[str]],
    call_uses: dict[str, frozenset[str]],
    strings: dict[str, str],
) -> list[frozenset[str]]:
    """The registers live before each instruction (a backward data-flow to a fixed point).
    ``at_exit`` is what is live when the function returns, or that for each instruction
    (a function with the parts gcc split from it returns to different callers)."""
    exits = [at_exit] * len(insns) if isinstance(at_exit, frozenset) else list(at_exit)
    position: dict[str, int] = {}
    for k, insn in enumerate(insns):
        for label in insn.labels:
            position.setdefault(label, k)
    labelled = sorted(set(position.values()))
    n = len(insns)
    uses = [_call_reads(insns, k, call_uses, strings) if _is_call(i) else _uses(i)
            for k, i in enumerate(insns)]  # fmt: skip
    kills = [_kills(i, call_kills) for i in insns]

    def successors(k: int) -> tuple[list[int], frozenset[str]]:
        """The instructions control may go to next, and what is live when it leaves."""
        insn = insns[k]
        m = insn.mnemonic
        leaves = exits[k] | _ARGUMENTS | _RESULTS  # by a tail call
        if m.startswith("ret"):
            return [], exits[k]
        if m in ("ud2", "hlt", "int3"):
            return [], frozenset()
        after = [k + 1] if k + 1 < n else []
        out = frozenset() if after else leaves
        if _is_jump(insn) or _is_branch(insn):
            target = _target(insn)
            resolved = _resolve(target, k, insns, position)
            if target == "*":  # a jump table (any label) or an indirect tail call
                return labelled, leaves
            if resolved is None:  # to another function: a tail call
                return ([] if _is_jump(insn) else after), leaves
            return ([resolved] if _is_jump(insn) else [resolved, *after]), out
        return after, out

    flow = [successors(k) for k in range(n)]
    live_in = [frozenset[str]() for _ in range(n)]
    changed = True
    while changed:
        changed = False
        for k in range(n - 1, -1, -1):
            nexts, leaving = flow[k]
            out = set(leaving).union(*(live_in[s] for s in nexts)) if nexts else set(leaving)
            new = frozenset(uses[k] | (out - kills[k]))
            if new != live_in[k]:
                live_in[k], changed = new, True
    return live_in


def _resolve(target: str, at: int, insns: list[_Insn], position: dict[str, int]) -> int | None:
    """The index a local jump goes to; numeric labels (``1f``, ``1b``) resolve by direction."""
    if re.fullmatch(r"\d+[fb]", target):
        name, forward = target[:-1], target.endswith("f")
        spots = [k for k, i in enumerate(insns) if name in i.labels]
        if forward:
            return next((k for k in spots if k > at), None)
        return next((k for k in reversed(spots) if k <= at), None)
    return position.get(target)


# ---------------------------------------------------------------------------------------------
# The check.


@dataclass(frozen=True)
class _Function:
    text: str
    intel: bool


class _Source:
    """One source's assembly, with what the check asks of it more than once."""

    def __init__(self, asm: str) -> None:
        lines = asm.splitlines()
        self.functions = {
            fn.name: _Function("\n".join(lines[fn.label_line : fn.end_line]), fn.intel_syntax)
            for fn in parse_functions(asm)
        }
        self.strings = strings(asm)
        self.tables = jump_tables(asm)
        self.code = {n: _instructions(f.text, f.intel) for n, f in self.functions.items()}
        defined = set(self.functions)
        self.surely = {
            n: clobbers_at_least(f.text, defined, f.intel) for n, f in self.functions.items()
        }
        self.called = {t for code in self.code.values() for t in _calls(code, set(), self.tables)}
        self._reads: dict[str, frozenset[str]] | None = None
        self._asm = asm

    def comparable(self, name: str) -> str:
        """Function ``name``'s code as two builds compare it (``asmfile.comparable_code``)."""
        return comparable_code(self._asm, only=[name]).get(name, "")

    @property
    def reads(self) -> dict[str, frozenset[str]]:
        if self._reads is None:
            functions = {n: (f.text, f.intel) for n, f in self.functions.items()}
            self._reads = arguments_read(functions, self.strings)
        return self._reads

    def callees(self, name: str) -> set[str]:
        code = self.code[name]
        return set(_calls(code, {label for i in code for label in i.labels}, self.tables))

    def keeps(self, name: str) -> frozenset[str]:
        """What is live when ``name`` returns: its results (main's is an int) and, when a
        function of the file calls it, every register it surely leaves alone (a part that
        is only jumped to returns from the function it was split from)."""
        while name not in self.called and (parent := clone_parent(name)) in self.functions:
            name = parent
        results = frozenset({"rax"}) if name == "main" else _RESULTS
        if name not in self.called:
            return results
        return results | (CALLER_SAVED - self.surely[name])

    def live_after(self, caller: str, callee: str) -> frozenset[str]:
        """:func:`live_after_calls` in ``caller`` together with the parts gcc split from the
        same function (a ``.cold`` part is jumped to and back)."""
        family = [n for n in self.functions if _root(n) == _root(caller)]
        parts = [(self.functions[n].text, self.functions[n].intel, self.keeps(n)) for n in family]
        kills = {n: regs for n, regs in self.surely.items() if n != callee}
        return live_after_calls(
            parts, callee, call_kills=kills, call_uses=self.reads, strings=self.strings
        )


_STRING = re.compile(r'^\s*([\w.$]+):\s*\n\s*\.(?:string|asciz)\s+"((?:[^"\\]|\\.)*)"', re.M)
_ESCAPE = re.compile(r"\\([0-7]{1,3}|x[0-9a-fA-F]+|.)")


def strings(asm: str) -> dict[str, str]:
    """The string constants of an assembly file (``.string``/``.asciz`` under a label),
    escapes decoded: what a printf-like call's format says."""

    def unescape(m: re.Match[str]) -> str:
        code = m.group(1)
        if code[0] in "01234567":
            return chr(int(code, 8))
        if code[0] == "x":
            return chr(int(code[1:], 16) & 0xFF)
        return {"n": "\n", "t": "\t"}.get(code, code)

    return {m.group(1): _ESCAPE.sub(unescape, m.group(2)) for m in _STRING.finditer(asm)}


def _root(name: str) -> str:
    while (parent := clone_parent(name)) is not None:
        name = parent
    return name


def splice_is_safe(
    choice: dict[str, str], sources: dict[str, str], ipa_ra: dict[str, bool]
) -> tuple[bool, str]:
    """Whether taking function ``f`` from source ``choice[f]`` (the others from "baseline")
    keeps every call between functions of different sources correct.

    ``sources`` maps a source name to its whole assembly ("baseline" included); ``ipa_ra``
    says which sources' callers may rely on what their callees leave alone (gcc builds;
    a source not named is assumed to). For a call from ``g`` (source S, with IPA-RA) to
    ``f`` (source T != S), no register T's ``f`` may change, and S's ``f`` surely did not,
    may be live after the call in S's ``g``; and when ``f`` is a gcc clone (``f.constprop.0``,
    ``f.isra.0``: specialised, its arguments changed), both builds' copies must be the same
    code. Returns (ok, the reason when not).
    """
    parsed = {name: _Source(asm) for name, asm in sources.items()}
    funcs = {name: source.functions for name, source in parsed.items()}
    # A gcc part or clone (f.part.0, f.cold) comes with its function; a part the donor does
    # not define stays the baseline's.
    owner = {f: choice.get(_root(f), "baseline") for f in funcs["baseline"]}
    owner = {f: source if f in funcs[source] else "baseline" for f, source in owner.items()}
    for f in choice:
        owner.update({g: choice[f] for g in funcs[choice[f]] if _root(g) == f})
    for caller, source in owner.items():
        mine = parsed[source]
        if caller not in mine.functions:
            return False, f"`{caller}` is not in {source}"
        for callee in sorted(mine.callees(caller)):
            if callee == "*" or callee not in owner or owner[callee] == source:
                continue
            theirs = funcs[owner[callee]].get(callee)
            if theirs is None or callee not in mine.functions:
                return False, f"`{callee}` is missing from one of its sources"
            if clone_parent(callee) is not None and parsed[owner[callee]].comparable(
                callee
            ) != mine.comparable(callee):
                return False, (
                    f"`{caller}` ({source}) calls `{callee}`, a copy that gcc specialised for "
                    f"each build; {owner[callee]}'s may take other arguments"
                )
            if not ipa_ra.get(source, True):
                continue
            their_tables = parsed[owner[callee]].tables
            extra = clobbers_at_most(theirs.text, theirs.intel, their_tables) - mine.surely[callee]
            live = extra & mine.live_after(caller, callee) if extra else frozenset()
            if live:
                return False, (
                    f"`{caller}` ({source}) keeps values in {', '.join(sorted(live))} across "
                    f"its call to `{callee}`, which {owner[callee]}'s version changes"
                )
    return True, ""
