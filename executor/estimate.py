"""Static throughput estimates of assembly with llvm-mca: a model of a CPU, never a measurement.

llvm-mca treats its input as one straight-line block repeated ``iterations`` times, so it
suits loop bodies. :func:`estimate` takes a snippet (or a whole ``.s`` file), drops the
directives llvm-mca rejects (``.loc`` without ``.file``, ``.cfi_*`` outside a function, data),
keeps labels and instructions, and reads llvm-mca's JSON summary. :func:`estimate_loops`
finds the loops of a snippet by their backward branches and estimates each body.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Any

from asmopt.executor.diagnostics import parse_diagnostics
from asmopt.executor.results import Estimate, Severity
from asmopt.executor.toolchain import ToolNotFoundError, find_tool

__all__ = [
    "EstimateError",
    "estimate",
    "estimate_loops",
    "host_cpu",
    "mca_input",
]


class EstimateError(RuntimeError):
    """llvm-mca could not estimate the snippet; the message says why and what to do."""


def _llvm_mca() -> str:
    path = find_tool("llvm-mca")  # also finds Debian's llvm-mca-14
    if path is None:
        raise ToolNotFoundError("llvm-mca not found: apt-get install llvm")
    return path


# --- reading AT&T assembly ---------------------------------------------------------------------

_LABEL = re.compile(r"^\s*([A-Za-z_.$][\w.$@]*|\d+):")
# Directives llvm-mca must see to read the rest as the user wrote it.
_KEPT_DIRECTIVES = (".intel_syntax", ".att_syntax")


def _split_statements(line: str) -> list[str]:
    """Statements of one source line without comments: ``#`` starts a comment, ``;``
    separates statements, and neither counts inside a string."""
    statements, current, quote, i = [], [], "", 0
    while i < len(line):
        char = line[i]
        if quote:
            current.append(char)
            if char == "\\" and i + 1 < len(line):
                current.append(line[i + 1])
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
            current.append(char)
        elif char == "#":
            break
        elif line.startswith("/*", i):  # C comment on one line
            end = line.find("*/", i + 2)
            if end < 0:
                break
            i = end + 1
        elif char == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


@dataclass(frozen=True)
class _Statement:
    line: int  # 0-based index of the source line
    labels: tuple[str, ...]
    instruction: str  # "" for a label-only or directive statement


def _statements(asm: str) -> list[_Statement]:
    out = []
    for index, line in enumerate(asm.splitlines()):
        for statement in _split_statements(line):
            labels = []
            rest = statement
            while match := _LABEL.match(rest):
                labels.append(match.group(1))
                rest = rest[match.end() :].strip()
            if rest.startswith(".") and not rest.startswith(_KEPT_DIRECTIVES):
                rest = ""  # a directive
            out.append(_Statement(index, tuple(labels), rest))
    return out


def mca_input(asm: str) -> str:
    """``asm`` as llvm-mca should read it: labels and instructions only, comments and
    directives gone, each line on its original line number (so llvm-mca's errors point at
    the caller's text)."""
    lines = [""] * len(asm.splitlines())
    for statement in _statements(asm):
        parts = [f"{label}:" for label in statement.labels]
        if statement.instruction:
            parts.append(statement.instruction)
        if parts:
            previous = lines[statement.line]
            lines[statement.line] = (
                f"{previous}; {' '.join(parts)}" if previous else " ".join(parts)
            )
    return "\n".join(lines) + "\n"


# --- the host CPU ------------------------------------------------------------------------------


def _run(command: list[str], stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "LC_ALL": "C"},  # English messages, which the checks below read
    )


def _mca_knows(cpu: str) -> bool:
    try:
        proc = _run([_llvm_mca(), f"-mcpu={cpu}", "-json"], "nop\n")
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and "not a recognized processor" not in proc.stderr


@functools.lru_cache(maxsize=1)
def host_cpu() -> str:
    """The llvm-mca CPU model of this machine, e.g. ``znver3`` or ``skylake``.

    LLVM's own host detection (``llc --version``) comes first. It says "(unknown)" for CPUs
    newer than the LLVM release (LLVM 14 on Zen 5, where ``-mcpu=native`` silently means
    ``generic``), so then gcc's ``-march=native`` is asked, and used if llvm-mca knows the
    name. Falls back to ``generic``.
    """
    candidates = []
    llc = find_tool("llc")
    if llc:
        try:
            text = _run([llc, "--version"]).stdout
            match = re.search(r"Host CPU:\s*(\S+)", text)
            if match:
                candidates.append(match.group(1))
        except (OSError, subprocess.TimeoutExpired):
            pass
    gcc = find_tool("gcc")
    if gcc:
        try:
            text = _run([gcc, "-march=native", "-Q", "--help=target"]).stdout
            match = re.search(r"^\s*-march=\s+(\S+)", text, re.MULTILINE)
            if match:
                candidates.append(match.group(1))
        except (OSError, subprocess.TimeoutExpired):
            pass
    for cpu in candidates:
        if cpu not in ("(unknown)", "generic", "native", "x86-64") and _mca_knows(cpu):
            return cpu
    return "generic"


# --- llvm-mca ----------------------------------------------------------------------------------


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """The SummaryView of llvm-mca 14's JSON (``CodeRegions[i].SummaryView``), summed over
    regions if there are several."""
    regions = report.get("CodeRegions")
    if not isinstance(regions, list) or not regions:
        raise EstimateError(f"llvm-mca JSON has no CodeRegions (keys: {sorted(report)})")
    views: list[dict[str, Any]] = [
        r["SummaryView"]
        for r in regions
        if isinstance(r, dict) and isinstance(r.get("SummaryView"), dict)
    ]
    if not views:
        raise EstimateError("llvm-mca JSON has no SummaryView: was it run with -json?")
    if len(views) == 1:
        return views[0]
    total: dict[str, Any] = {key: sum(float(v.get(key, 0)) for v in views) for key in views[0]}
    total["Iterations"] = float(views[0].get("Iterations", 0))
    return total


def _number(summary: dict[str, Any], key: str, default: float | None = None) -> float:
    value = summary.get(key, default)
    if not isinstance(value, int | float):
        raise EstimateError(f"llvm-mca JSON SummaryView lacks {key!r}: {summary}")
    return float(value)


def estimate(asm: str, cpu: str | None = None, iterations: int = 100) -> Estimate:
    """Estimate ``asm`` (AT&T instructions; directives are dropped, labels kept) with llvm-mca.

    ``cpu`` is an llvm ``-mcpu`` name (``skylake``, ``znver3``); None means this machine's,
    see :func:`host_cpu`. ``Estimate.cpu`` is the model llvm-mca actually used.
    ``cycles_per_iteration`` is total cycles / iterations; ``instructions`` and ``uops``
    count one iteration of the block. Raises :class:`EstimateError` when llvm-mca rejects
    the input (with its messages, located in ``asm``) and ``ToolNotFoundError`` without it.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, not {iterations}")
    mca = _llvm_mca()
    model = cpu or host_cpu()
    text = mca_input(asm)
    if not any(s.instruction for s in _statements(text)):
        raise EstimateError("no instructions to estimate: the snippet has only labels/directives")
    command = [mca, "-json", f"-iterations={iterations}", f"-mcpu={model}", "-"]
    try:
        proc = _run(command, text)
    except subprocess.TimeoutExpired:
        raise EstimateError("llvm-mca timed out after 60 s: estimate a smaller snippet") from None
    if "not a recognized processor" in proc.stderr:
        raise EstimateError(
            f"llvm-mca does not know CPU {model!r}: see `llvm-mca -mcpu=help` for the names"
        )
    # llvm-mca 14 reports an instruction it cannot parse and then exits 0 having silently
    # left it out, so an error message fails the estimate whatever the exit status.
    problems = [d for d in parse_diagnostics(proc.stderr) if d.severity is Severity.ERROR]
    if proc.returncode != 0 or problems:
        where = (
            "; ".join(f"line {d.line}: {d.message}" if d.line else d.message for d in problems)
            or proc.stderr.strip()[-500:]
        )
        raise EstimateError(f"llvm-mca rejected the snippet: {where}")
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise EstimateError(
            f"llvm-mca wrote no valid JSON ({exc}): {proc.stdout[:200]!r}"
        ) from None
    summary = _summary(report)
    ran = _number(summary, "Iterations", iterations) or iterations
    cycles = _number(summary, "TotalCycles")
    instructions = _number(summary, "Instructions")
    used = report.get("SimulationParameters", {}).get("-mcpu") or model
    return Estimate(
        cycles_per_iteration=cycles / ran,
        instructions_per_cycle=_number(summary, "IPC", instructions / cycles if cycles else 0.0),
        cpu=str(used),
        instructions=round(instructions / ran),
        uops=round(_number(summary, "TotaluOps", 0.0) / ran),
        block_rthroughput=_number(summary, "BlockRThroughput", 0.0),
    )


# --- loops -------------------------------------------------------------------------------------

_BRANCH = re.compile(
    r"^(?:(?:bnd|notrack)\s+)?(?P<op>j[a-z]{1,4}|loop(?:n?[ez])?)\s+"
    r"(?P<target>[A-Za-z_.$][\w.$@]*|\d+[bf])\s*$"
)


def estimate_loops(asm: str, cpu: str | None = None) -> list[tuple[str, Estimate]]:
    """Estimate every loop in ``asm``: a label with a later branch back to it.

    The body is the text from the label to the last branch back to it. Loops appear in the
    order of their labels; an outer loop's body includes its inner loops once (llvm-mca
    knows no trip counts). Numeric local labels (``1:`` ... ``jne 1b``) are supported.
    """
    lines = asm.splitlines()
    defined: dict[str, int] = {}  # label -> line of its latest definition so far
    # (label, line of its definition) -> line of the last branch back to it; a numeric
    # label ("1:") may be defined many times, so its definition line is part of the key.
    loops: dict[tuple[str, int], int] = {}
    for statement in _statements(asm):
        for label in statement.labels:
            defined[label] = statement.line
        match = _BRANCH.match(statement.instruction)
        if not match:
            continue
        target = match["target"]
        if re.fullmatch(r"\d+f", target):
            continue  # a forward reference
        name = target[:-1] if re.fullmatch(r"\d+b", target) else target
        if name in defined:
            loops[(name, defined[name])] = statement.line
    out = []
    for (name, start), end in sorted(loops.items(), key=lambda item: (item[0][1], -item[1])):
        out.append((name, estimate("\n".join(lines[start : end + 1]), cpu)))
    return out
