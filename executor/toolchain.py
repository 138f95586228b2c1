# Over 500 lines: compile, assemble, link and check share the tool lookup and sandboxed build.
"""Compile, assemble and link with the system toolchain, and turn its messages into diagnostics.

Every tool runs as a child process with a timeout. A failure of any kind (the tool is missing,
it timed out, it rejected the input) comes back as a :class:`BuildResult` with ``ok=False`` and
diagnostics that say what failed and what to do; nothing here raises for a bad input.

Tools run with ``LC_ALL=C`` so that their messages are English with ASCII quotes, which is what
:func:`~asmopt.executor.diagnostics.parse_diagnostics` reads.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from asmopt.executor.diagnostics import parse_diagnostics
from asmopt.executor.leftover import NotRegularFile, open_left
from asmopt.executor.results import BuildResult, Diagnostic, RunResult, Severity
from asmopt.executor.sandbox import (
    GiB,
    MiB,
    Sandbox,
    SandboxError,
    SandboxLimits,
)
from asmopt.executor.store import cap_text

__all__ = [
    "ToolNotFoundError",
    "build_binary",
    "check_assembly",
    "compile_to_asm",
    "find_tool",
    "install_hint",
    "parse_diagnostics",
    "require_tool",
    "toolchain_fingerprint",
    "which_compiler",
]


class ToolNotFoundError(FileNotFoundError):
    """A program the executor needs is not installed; the message says how to install it."""


# Debian package that provides each tool, for "X not found: apt-get install Y" messages.
_PACKAGES = {
    "gcc": "gcc",
    "cc": "gcc",
    "g++": "g++",
    "clang": "clang",
    "clang++": "clang",
    "as": "binutils",
    "ld": "binutils",
    "llvm-mca": "llvm",
    "llc": "llvm",
    "valgrind": "valgrind",
    "callgrind_annotate": "valgrind",
}

# Versioned names Debian installs (clang-14, llvm-mca-14, gcc-12); newest tried first.
_VERSIONS = range(25, 8, -1)


def _base_name(name: str) -> str:
    """``clang-14`` -> ``clang``; ``/usr/bin/gcc-12`` -> ``gcc``."""
    return re.sub(r"-\d+(\.\d+)*$", "", os.path.basename(name))


def install_hint(name: str) -> str:
    """The apt-get command that installs tool ``name`` (a best guess for unknown tools)."""
    base = _base_name(name)
    return f"apt-get install {_PACKAGES.get(base, base)}"


@functools.lru_cache(maxsize=64)
def find_tool(name: str) -> str | None:
    """Absolute path of tool ``name``, or of its newest versioned variant (``name-14``).

    A path (``/opt/x/bin/gcc``) is returned as is when it is executable.
    """
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    if re.search(r"-\d+$", name):  # already versioned: no other spelling to try
        return None
    for version in _VERSIONS:
        found = shutil.which(f"{name}-{version}")
        if found:
            return found
    return None


def which_compiler(name: str) -> str | None:
    """Path of C compiler ``name`` (``gcc``, ``clang``, ``clang-14``, a path), or None."""
    return find_tool(name)


def require_tool(name: str) -> str:
    """Path of tool ``name``; raises :class:`ToolNotFoundError` naming the package if missing."""
    path = find_tool(name)
    if path is None:
        raise ToolNotFoundError(f"{name} not found: {install_hint(name)}")
    return path


def _tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"  # English messages with ASCII quotes, which the parser expects
    env.pop("GCC_COLORS", None)
    return env


# What a build may use inside the sandbox. Candidate text is hostile: ``.rept 100000000``,
# ``.include "/dev/urandom"``, ``.skip 3500000000`` and a flood of ``.warning`` lines must
# each end as a failed build, not as a host out of memory, disk or patience.
BUILD_LIMITS = SandboxLimits(
    wall_seconds=60.0,
    cpu_seconds=60,
    memory_bytes=1 * GiB,
    max_processes=32,
    file_size_bytes=64 * MiB,  # a padded binary costs disk, and copies of it
    open_files=256,
    output_bytes=1 * MiB,
    tmp_bytes=512 * MiB,
)
# What a BuildResult keeps of a tool's diagnostics (it is shown, sent and stored); its stderr
# is kept as the store keeps any text (``store.cap_text``: start and end, a few KB).
MAX_DIAGNOSTICS = 50


def _kept(diagnostics: tuple[Diagnostic, ...]) -> tuple[Diagnostic, ...]:
    if len(diagnostics) <= MAX_DIAGNOSTICS:
        return diagnostics
    more = len(diagnostics) - MAX_DIAGNOSTICS
    note = Diagnostic(None, None, None, Severity.NOTE, f"{more} more messages not shown")
    return (*diagnostics[:MAX_DIAGNOSTICS], note)


def _failure(command: Sequence[str], message: str, seconds: float = 0.0) -> BuildResult:
    return BuildResult(
        ok=False,
        output=None,
        command=tuple(command),
        diagnostics=(Diagnostic(None, None, None, Severity.ERROR, message),),
        stderr=message,
        seconds=seconds,
    )


def _run_group(command: Sequence[str], timeout: float, cwd: Path | None) -> tuple[int, bytes]:
    """Run ``command`` in a process group of its own; its exit status and stderr.

    On a timeout or a cancellation the whole group is killed: gcc's cc1 and as would
    otherwise outlive the driver.
    """
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_tool_env(),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except BaseException:  # TimeoutExpired, KeyboardInterrupt, a cancelled task
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, stderr


def _run_build(
    tool: str,
    args: Sequence[str],
    out: Path,
    timeout: float,
    what: str,
    cwd: Path | None = None,
) -> BuildResult:
    """Run ``tool args`` that should produce ``out``; every failure becomes a BuildResult."""
    path = find_tool(tool)
    command = [path or tool, *args]
    if path is None:
        return _failure(command, f"{tool} not found: {install_hint(tool)}")
    # A stale file from an earlier build must never pass for this build's output.
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        returncode, stderr_bytes = _run_group(command, timeout, cwd)
    except subprocess.TimeoutExpired:
        seconds = time.perf_counter() - start
        return _failure(
            command,
            f"{tool} timed out after {timeout:g} s {what}: simplify the input or raise the timeout",
            seconds,
        )
    except OSError as exc:
        return _failure(command, f"{tool} could not be started ({exc}): {install_hint(tool)}")
    seconds = time.perf_counter() - start
    stderr = stderr_bytes.decode("utf-8", errors="replace")
    return _build_result(tool, command, returncode, stderr, out, seconds, what)


def _build_result(
    tool: str,
    command: Sequence[str],
    returncode: int,
    stderr: str,
    out: Path,
    seconds: float,
    what: str,
    problem: str = "",
) -> BuildResult:
    """A BuildResult from a finished tool; ``problem`` names a limit the tool ran into."""
    diagnostics = parse_diagnostics(stderr)
    ok = returncode == 0 and out.exists() and not problem
    if problem:
        diagnostics = (Diagnostic(None, None, None, Severity.ERROR, problem), *diagnostics)
    if not ok and not any(d.severity is Severity.ERROR for d in diagnostics):
        # The tool failed without a message we recognise: still say that it failed.
        if returncode == 0:
            reason = f"it exited 0 but wrote no {out}"
        elif returncode > 0:
            reason = f"exit status {returncode}"
        else:
            reason = f"killed by signal {-returncode}"
        diagnostics = (
            *diagnostics,
            Diagnostic(None, None, None, Severity.ERROR, f"{tool} failed {what}: {reason}"),
        )
    return BuildResult(
        ok=ok,
        output=str(out) if ok else None,
        command=tuple(command),
        diagnostics=_kept(diagnostics),
        stderr=cap_text(stderr),
        seconds=seconds,
    )


def _sandboxed_build(
    sandbox: Sandbox,
    tool: str,
    inputs: Sequence[Path],
    make_args: Callable[[list[str], str], list[str]],
    out: Path,
    timeout: float,
    what: str,
    cancel: threading.Event | None = None,
) -> BuildResult:
    """Run ``tool`` in ``sandbox`` on copies of ``inputs`` and copy its product to ``out``.

    ``make_args(input_names, output_name)`` gives the tool's arguments in terms of the names
    the files have in the sandbox's working directory, which holds those copies and nothing
    else. Messages then name the inputs by their file names, never by a host path.
    """
    path = find_tool(tool)
    if path is None:
        return _failure([tool], f"{tool} not found: {install_hint(tool)}")
    out.unlink(missing_ok=True)
    names: list[str] = []
    for source in inputs:
        name = Path(source).name or "input"
        while name in names or name == out.name:
            name = f"_{name}"
        names.append(name)
    command = [path, *make_args(names, out.name)]
    limits = replace(BUILD_LIMITS, wall_seconds=timeout, cpu_seconds=max(1, int(timeout)))
    start = time.perf_counter()
    work = sandbox.make_output_dir()
    try:
        for source, name in zip(inputs, names, strict=True):
            try:
                shutil.copyfile(source, work / name)
            except OSError as err:
                return _failure(command, f"cannot read {source}: {err.strerror}")
            os.chmod(work / name, 0o644)
        try:
            run = sandbox.run_tool(command, work, limits=limits, cancel=cancel)
        except SandboxError as err:
            return _failure(command, f"the build sandbox failed: {err}")
        seconds = time.perf_counter() - start
        stderr = run.stderr.decode("utf-8", errors="replace")
        problem = _limit_problem(tool, run, limits, what)
        produced = work / out.name
        if not problem and run.exit_code == 0:
            problem = _take_product(produced, out, limits)
        returncode = run.exit_code if run.exit_code is not None else 128 + (run.signal or 9)
        return _build_result(tool, command, returncode, stderr, out, seconds, what, problem)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _limit_problem(tool: str, run: RunResult, limits: SandboxLimits, what: str) -> str:
    """Why a sandboxed tool was stopped, in words naming the limit; "" when it was not."""
    if run.sandbox_violation:
        return f"{tool} was stopped by the sandbox (a forbidden system call) {what}"
    if run.timed_out:
        return (
            f"{tool} ran past the build's {limits.wall_seconds:g} s limit {what}: the input "
            "makes it loop or grow (.rept, .include of a device?)"
        )
    if run.output_truncated:
        return (
            f"{tool} wrote more than {limits.output_bytes // MiB} MiB of messages {what}; "
            "the first ones are kept"
        )
    if run.signal == signal.SIGXFSZ:
        return (
            f"{tool} tried to write a file over {limits.file_size_bytes // MiB} MiB {what} "
            "(.skip, .space or .incbin of something huge?)"
        )
    if run.out_of_memory or (
        run.exit_code not in (0, None) and run.max_rss_kib * 1024 >= (0.8 * limits.memory_bytes)
    ):
        return f"{tool} ran out of its {limits.memory_bytes // MiB} MiB of memory {what}"
    if run.signal is not None:
        return f"{tool} was killed by signal {run.signal} {what}"
    return ""


def _take_product(produced: Path, out: Path, limits: SandboxLimits) -> str:
    """Copy what the tool made to ``out``; a reason when it is not a plain file."""
    try:
        src = open_left(produced)
    except NotRegularFile as err:
        return str(err)
    except OSError:
        return ""  # not there: _build_result says the tool wrote nothing
    with src:
        if os.fstat(src.fileno()).st_size > limits.file_size_bytes:
            return f"{produced.name} is over {limits.file_size_bytes // MiB} MiB"
        with open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    os.chmod(out, 0o755)
    return ""


def compile_to_asm(
    source: Path,
    out: Path,
    compiler: str = "gcc",
    flags: Sequence[str] = ("-O3",),
    timeout: float = 60,
    *,
    sandbox: Sandbox | None = None,
) -> BuildResult:
    """Compile C ``source`` to assembly ``out``: ``<compiler> -S <flags> source -o out``.

    ``compiler`` is ``gcc``, ``clang`` (found as ``clang-14`` too) or a path. With
    ``sandbox`` the compiler runs in it on a copy of ``source`` alone (C that is not the
    user's own, such as a data set's rows: it cannot include anything beside it).
    """
    if sandbox is not None:
        return _sandboxed_build(
            sandbox,
            compiler,
            [source],
            lambda names, output: ["-S", *flags, *names, "-o", output],
            Path(out),
            timeout,
            f"compiling {Path(source).name}",
        )
    return _run_build(
        compiler,
        ["-S", *flags, str(source), "-o", str(out)],
        Path(out),
        timeout,
        f"compiling {source}",
    )


def build_binary(
    inputs: Sequence[Path],
    out: Path,
    linker: str = "gcc",
    flags: Sequence[str] = (),
    ldflags: Sequence[str] = ("-lm",),
    timeout: float = 60,
    *,
    sandbox: Sandbox | None = None,
    cancel: threading.Event | None = None,
) -> BuildResult:
    """Assemble/compile and link ``inputs`` (.s, .S, .c, .o) into executable ``out``.

    The command is the paper's ``gcc x.s [other sources] -o out -lm``: ``<linker> <flags>
    inputs -o out <ldflags>``. Libraries go last so that the linker sees them after the
    objects that need them.

    With ``sandbox`` (always, for candidate text) the tools run inside it on copies of
    ``inputs`` alone, within :data:`BUILD_LIMITS`; see :func:`_sandboxed_build`.
    """
    if not inputs:
        return _failure((linker,), "build_binary got no inputs: pass at least one .s/.c/.o file")
    if sandbox is not None:
        return _sandboxed_build(
            sandbox,
            linker,
            inputs,
            lambda names, output: [*flags, *names, "-o", output, *ldflags],
            Path(out),
            timeout,
            f"building {Path(out).name}",
            cancel,
        )
    return _run_build(
        linker,
        [*flags, *(str(p) for p in inputs), "-o", str(out), *ldflags],
        Path(out),
        timeout,
        f"building {out}",
    )


def check_assembly(
    text: str,
    filename: str = "input.s",
    assembler: str = "gcc",
    timeout: float = 30,
    *,
    sandboxed: bool = True,
) -> tuple[Diagnostic, ...]:
    """Assemble an editor buffer and return its diagnostics, located in the buffer.

    The text is assembled unchanged as ``filename`` (so line numbers are the buffer's) with
    ``<assembler> -c``; a ``.S`` name is preprocessed first. ``assembler="clang"`` uses
    clang's integrated assembler, which also reports columns. Diagnostics about the buffer
    carry ``filename`` as their file.

    The buffer may be generated (a candidate the user opened), so it is assembled in a
    sandbox of its own like any candidate; ``sandboxed=False`` (the user turned the sandbox
    off) assembles it on the host. Without bubblewrap the result is one note saying why
    there are no assembler diagnostics.
    """
    name = os.path.basename(filename) or "input.s"
    if not name.endswith((".s", ".S")):
        name += ".s"  # the driver picks the language from the suffix
    with tempfile.TemporaryDirectory(prefix="asmopt-check-") as tmp:
        tmpdir = Path(tmp)
        (tmpdir / name).write_text(text)
        if sandboxed:
            try:
                sandbox = Sandbox()
            except SandboxError as err:
                return (Diagnostic(None, None, None, Severity.NOTE, f"no assembler check: {err}"),)
            with sandbox:
                result = _sandboxed_build(
                    sandbox,
                    assembler,
                    [tmpdir / name],
                    lambda names, output: ["-c", *names, "-o", output],
                    tmpdir / "out.o",
                    timeout,
                    f"assembling {filename}",
                )
        else:
            result = _run_build(
                assembler,
                ["-c", name, "-o", "out.o"],
                tmpdir / "out.o",
                timeout,
                f"assembling {filename}",
                cwd=tmpdir,
            )
    located = []
    for diag in result.diagnostics:
        if diag.file in (name, f"./{name}", str(tmpdir / name)):
            diag = Diagnostic(filename, diag.line, diag.column, diag.severity, diag.message)
        located.append(diag)
    return tuple(located)


# --- identity of the toolchain -----------------------------------------------------------------


def _first_line(command: Sequence[str]) -> str:
    try:
        proc = subprocess.run(
            command, capture_output=True, timeout=30, env=_tool_env(), stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{command[0]}: unusable ({exc.__class__.__name__})"
    text = (proc.stdout or proc.stderr).decode("utf-8", errors="replace").strip()
    return text.splitlines()[0].strip() if text else f"{command[0]}: no version"


@functools.lru_cache(maxsize=16)
def toolchain_fingerprint(compiler: str = "gcc") -> str:
    """A stable string naming the compiler and assembler versions (for result-store keys).

    It is the first line of ``<compiler> --version`` and of ``as --version``, joined by
    `` | ``; a missing tool appears as ``<name>: not installed``. Cached for the process.
    """
    parts = []
    for tool in (compiler, "as"):
        path = find_tool(tool)
        parts.append(_first_line([path, "--version"]) if path else f"{tool}: not installed")
    return " | ".join(parts)
