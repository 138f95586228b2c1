"""Count executed instructions with valgrind's callgrind: a deterministic second metric.
Profiles (``executor.profile``) use its cheaper sibling cachegrind, which counts the same
instructions per function without a call graph.

The count is reported as instructions, never as time: on these machines it ranks compiler
variants poorly against CPU time (rank correlation about 0.3). valgrind cannot execute
AVX-512 (EVEX) instructions; such a binary raises :class:`UnsupportedInstructionError`, and
the caller should fall back to timing alone.

This runs a generated binary. Callers must pass the sandbox's command wrapper as ``wrap``
(for example one that prefixes bubblewrap); the default runs the command unwrapped.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal as signals
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from asmopt.executor.leftover import NotRegularFile, open_left
from asmopt.executor.results import InstructionCount
from asmopt.executor.toolchain import require_tool

if TYPE_CHECKING:
    from asmopt.executor.sandbox import Sandbox

__all__ = [
    "CallgrindError",
    "UnsupportedInstructionError",
    "count_instructions",
    "count_instructions_sandboxed",
    "parse_cachegrind_output",
    "parse_callgrind_output",
]


class CallgrindError(RuntimeError):
    """valgrind could not count the run; the message says why and what to do."""


class UnsupportedInstructionError(CallgrindError):
    """The binary uses an instruction valgrind cannot execute (typically AVX-512)."""


def _identity(command: list[str]) -> list[str]:
    return command


# What each tool is asked for beyond its output file: per-line costs are enough (callgrind);
# instruction counts alone, no cache or branch simulation (cachegrind).
_TOOL_OPTIONS: dict[str, tuple[str, ...]] = {
    "callgrind": ("--dump-instr=no",),
    "cachegrind": ("--cache-sim=no", "--branch-sim=no"),
}

# valgrind's words for an instruction it cannot decode (VEX) or execute.
_UNHANDLED = re.compile(
    r"unhandled instruction bytes: (?P<bytes>[0-9A-Fa-fx ]+)|Unrecognised instruction"
)


def count_instructions(
    binary: Path,
    stdin: bytes,
    args: Sequence[str] = (),
    timeout: float = 120,
    wrap: Callable[[list[str]], list[str]] = _identity,
    workdir: Path | None = None,
) -> InstructionCount:
    """Run ``binary args < stdin`` under ``valgrind --tool=callgrind`` and count instructions.

    ``wrap`` turns the valgrind command line into the one actually run; pass the sandbox's
    wrapper so that the generated binary never runs unconfined. The profile is written to
    ``workdir`` (a fresh temporary directory if None), which the wrapped command must be
    able to write to: give a directory the sandbox binds writable. The program's exit status
    is reported, not judged: a crash still yields the instructions counted until it.

    Raises :class:`UnsupportedInstructionError` when valgrind meets an instruction it cannot
    run (AVX-512), :class:`CallgrindError` on a timeout or when valgrind wrote no profile,
    and ``ToolNotFoundError`` when valgrind is not installed.
    """
    valgrind = require_tool("valgrind")
    program = Path(binary)
    if not program.is_file():
        raise CallgrindError(f"{program} does not exist: build the binary before counting")
    with tempfile.TemporaryDirectory(prefix="asmopt-callgrind-") as tmp:
        directory = Path(workdir) if workdir is not None else Path(tmp)
        profile = directory / f"callgrind-{uuid.uuid4().hex}.out"
        command = wrap(
            [
                valgrind,
                "--tool=callgrind",
                f"--callgrind-out-file={profile}",
                "--dump-instr=no",  # per-line costs are enough; keeps the profile small
                str(program.resolve()),
                *args,
            ]
        )
        try:
            returncode, stderr = _run(command, stdin, timeout, directory, program.name)
            unhandled = _UNHANDLED.search(stderr)
            if unhandled:
                detail = f" (bytes {unhandled['bytes'].strip()})" if unhandled["bytes"] else ""
                raise UnsupportedInstructionError(
                    f"valgrind cannot run {program.name}: it executes an instruction valgrind "
                    f"does not support{detail}, most likely AVX-512; count instructions of a "
                    "build without -mavx512* / zmm registers, or rely on timing for it"
                )
            if not profile.exists():
                tail = "\n".join(stderr.strip().splitlines()[-8:]) or "(nothing)"
                raise CallgrindError(
                    f"valgrind wrote no callgrind profile for {program.name} (exit status "
                    f"{returncode}); if a sandbox wraps it, make {directory} writable inside "
                    f"it. valgrind said:\n{tail}"
                )
            text = profile.read_text(errors="replace")
        finally:
            profile.unlink(missing_ok=True)  # workdir may be the caller's: leave it clean
    total, by_object = parse_callgrind_output(text)
    return _count(total, by_object, text, program, returncode)


def _run(command: list[str], stdin: bytes, timeout: float, cwd: Path, name: str) -> tuple[int, str]:
    """Run the (wrapped) valgrind command; its exit status and stderr."""
    # A process group of its own, so that a timeout or a cancellation kills the program and
    # any wrapper around it, not only the first process.
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise CallgrindError(
            f"callgrind run of {name} timed out after {timeout:g} s (valgrind runs code "
            "20-100x slower): use a smaller input or raise the timeout"
        ) from None
    except BaseException:  # cancelled (KeyboardInterrupt, a cancelled task): leave nothing
        _kill_group(proc)
        raise
    return proc.returncode, stderr.decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have exited meanwhile
        os.killpg(proc.pid, signals.SIGKILL)
    proc.communicate()


def _count(
    total: int,
    by_object: dict[tuple[str, str], int],
    text: str,
    program: Path,
    returncode: int,
) -> InstructionCount:
    # The program's own object is the one valgrind was asked to run ("cmd:" line); a
    # sandbox may have staged it under another path, so its file name also counts.
    cmd = re.search(r"^cmd:\s*(\S+)", text, re.MULTILINE)
    ran = cmd.group(1) if cmd else str(program.resolve())
    own = {ran, str(program.resolve())}
    names = {os.path.basename(p) for p in own}
    in_program = sum(
        cost for (obj, _), cost in by_object.items() if obj in own or os.path.basename(obj) in names
    )
    per_function: dict[str, int] = {}
    for (_, function), cost in by_object.items():
        per_function[function] = per_function.get(function, 0) + cost
    return _result(total, in_program, per_function, returncode)


def _result(
    total: int, program: int, per_function: dict[str, int], returncode: int
) -> InstructionCount:
    """The count, its functions largest first. valgrind re-raises the program's fatal signal
    on itself (a negative ``returncode``); a wrapper may instead report it as 128 + signal,
    which is then indistinguishable from an exit status."""
    exit_code, signal = (returncode, None) if returncode >= 0 else (None, -returncode)
    return InstructionCount(
        total=total,
        program=program,
        per_function=dict(sorted(per_function.items(), key=lambda item: (-item[1], item[0]))),
        exit_code=exit_code,
        signal=signal,
    )


def parse_callgrind_output(text: str) -> tuple[int, dict[tuple[str, str], int]]:
    """Total Ir and self Ir per (object, function) from a callgrind profile's text.

    Follows the callgrind format: ``events:`` names the cost columns, ``positions:`` how many
    position columns precede them; ``ob=``/``fn=`` (with ``(id) name`` compression) set the
    current object and function; the cost line after ``calls=`` is the callee's inclusive
    cost and is not the caller's own. The total is ``summary:``/``totals:`` when present.
    """
    events = ["Ir"]
    positions = 1
    names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}
    current = {"ob": "???", "fn": "???"}
    skip_next_cost = False
    costs: dict[tuple[str, str], int] = {}
    total: int | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        first = line[0]
        if first.isdigit() or first in "+-*":
            if skip_next_cost:
                skip_next_cost = False
                continue
            fields = line.split()
            values = fields[positions:]
            index = events.index("Ir") if "Ir" in events else 0
            if index < len(values):
                where = (current["ob"], current["fn"])
                costs[where] = costs.get(where, 0) + int(values[index])
            continue
        key, _, value = line.partition("=")
        if key in ("ob", "cob", "fn", "cfn"):
            kind = key.lstrip("c")
            name = _compressed_name(names[kind], value)
            if key in ("ob", "fn"):  # cob/cfn only name a callee
                current[kind] = name
            continue
        if key == "calls":
            skip_next_cost = True
            continue
        header, _, rest = line.partition(":")
        if header == "events":
            events = rest.split()
        elif header == "positions":
            positions = len(rest.split())
        elif header in ("summary", "totals") and rest.strip():
            index = events.index("Ir") if "Ir" in events else 0
            total = int(rest.split()[index])
    if total is None:
        total = sum(costs.values())
    return total, costs


def parse_cachegrind_output(text: str) -> tuple[int, dict[str, int]]:
    """Total Ir and Ir per function from a cachegrind profile's text.

    Follows the cachegrind format: ``events:`` names the cost columns; ``fn=`` sets the
    current function (``fl=`` its file, which does not matter here: a function's lines may
    come from several files, inlined headers among them); each cost line is a line number
    and its costs. The total is ``summary:`` when present."""
    events = ["Ir"]
    function = "???"
    costs: dict[str, int] = {}
    total: int | None = None
    for line in text.splitlines():
        if not line:
            continue
        if line[0].isdigit():
            fields = line.split()
            index = 1 + (events.index("Ir") if "Ir" in events else 0)
            if index < len(fields):
                costs[function] = costs.get(function, 0) + int(fields[index])
            continue
        if line.startswith("fn="):
            function = line[3:].strip() or "???"
            continue
        header, _, rest = line.partition(":")
        if header == "events":
            events = rest.split()
        elif header == "summary" and rest.strip():
            index = events.index("Ir") if "Ir" in events else 0
            total = int(rest.split()[index])
    if total is None:
        total = sum(costs.values())
    return total, costs


def _compressed_name(table: dict[str, str], value: str) -> str:
    """``(12) main`` defines id 12 as ``main``; ``(12)`` refers back to it."""
    match = re.match(r"^\((\d+)\)\s*(.*)$", value.strip())
    if not match:
        return value.strip()
    ident, name = match.groups()
    if name:
        table[ident] = name
        return name
    return table.get(ident, f"({ident})")


def count_instructions_sandboxed(
    sandbox: Sandbox,
    binary: Path,
    stdin: bytes,
    args: Sequence[str] = (),
    timeout: float = 120,
    *,
    tool: str = "callgrind",
) -> InstructionCount:
    """:func:`count_instructions` for a generated binary: valgrind and the program run inside
    ``sandbox`` (same isolation as any test run), writing the profile into a directory the
    sandbox lends for this run alone.

    ``tool="cachegrind"`` (its cache and branch simulation off) counts the same instructions
    per function about three times faster, since it keeps no call graph; but it does not say
    which object a function's code is in, so ``program`` is then the instructions of the
    functions the binary defines (by its symbol table; not its PLT stubs, which callgrind
    counts as their caller's)."""
    from dataclasses import replace

    if tool not in _TOOL_OPTIONS:
        raise ValueError(f"tool must be one of {sorted(_TOOL_OPTIONS)}, not {tool!r}")
    valgrind = Path(require_tool("valgrind")).resolve()
    # Debian's valgrind is a shell wrapper that execs "$0.bin"; the sandbox stages the program
    # under another name, so run the real launcher directly.
    if valgrind.with_name(valgrind.name + ".bin").exists():
        valgrind = valgrind.with_name(valgrind.name + ".bin")
    program = Path(binary)
    if not program.is_file():
        raise CallgrindError(f"{program} does not exist: build the binary before counting")
    out = sandbox.make_output_dir()
    inside = sandbox.output_path(out)
    copy = out / "prog"
    copy.write_bytes(program.read_bytes())
    copy.chmod(0o755)
    if out.stat().st_uid != os.geteuid():
        os.chown(copy, out.stat().st_uid, out.stat().st_gid)
    # valgrind reserves a large address space of its own; time limits follow ``timeout``.
    limits = replace(
        sandbox.limits,
        memory_bytes=max(sandbox.limits.memory_bytes, 64 << 30),
        wall_seconds=timeout,
        cpu_seconds=int(timeout) + 1,
    )
    run = sandbox.run(
        valgrind,
        stdin,
        [
            f"--tool={tool}",
            "--vgdb=no",  # its gdbserver FIFOs need mknod, which the sandbox refuses
            f"--{tool}-out-file={inside}/{tool}.out",
            *_TOOL_OPTIONS[tool],
            f"{inside}/prog",
            *args,
        ],
        limits=limits,
        output_dir=out,
        timed=False,  # valgrind installs a SIGCHLD handler; its CPU time is not measured
    )
    stderr = run.stderr.decode(errors="replace")
    unhandled = _UNHANDLED.search(stderr)
    if unhandled:
        raise UnsupportedInstructionError(
            f"valgrind cannot run {program.name}: it executes an instruction valgrind does not "
            "support, most likely AVX-512; rely on timing for it"
        )
    profile = out / f"{tool}.out"
    if run.timed_out:
        raise CallgrindError(f"valgrind timed out after {timeout:.0f} s on {program.name}")
    if not profile.exists() and not profile.is_symlink():
        tail = "\n".join(stderr.strip().splitlines()[-8:]) or "(nothing)"
        raise CallgrindError(f"valgrind wrote no profile for {program.name}; it said:\n{tail}")
    text = _read_left(profile, program.name)
    code = run.exit_code if run.exit_code is not None else -(run.signal or 0)
    try:
        if tool == "callgrind":
            total, by_object = parse_callgrind_output(text)
            return _count(total, by_object, text, copy, code)
        total, per_function = parse_cachegrind_output(text)
    except (ValueError, IndexError):  # the program may have written over it
        raise CallgrindError(f"the profile of {program.name} is malformed") from None
    from asmopt.executor.elf import ElfInspectionError, functions

    try:
        own = {f.name for f in functions(program)}
    except ElfInspectionError:
        own = set()
    program_count = sum(n for name, n in per_function.items() if name in own)
    return _result(total, program_count, per_function, code)


# The most of a profile read back from the sandbox's output directory: a real one of a
# program of thousands of functions is a few megabytes.
PROFILE_READ_LIMIT = 64 << 20


def _read_left(path: Path, name: str) -> str:
    """The text of the profile valgrind left at ``path``, in a directory the program under
    test could write too: it may have put a link there (to a host file, or to /dev/zero,
    which would never end), a FIFO or a huge file. Only a regular file is read, never
    through a link, and at most ``PROFILE_READ_LIMIT`` bytes; else ``CallgrindError``."""
    try:
        f = open_left(path)
    except NotRegularFile:
        raise CallgrindError(f"the profile of {name} is not a regular file") from None
    except OSError as err:
        raise CallgrindError(f"the profile of {name} cannot be read: {err.strerror}") from None
    with f:
        data = f.read(PROFILE_READ_LIMIT + 1)
    if len(data) > PROFILE_READ_LIMIT:
        raise CallgrindError(f"the profile of {name} is over {PROFILE_READ_LIMIT >> 20} MiB")
    return data.decode(errors="replace")
