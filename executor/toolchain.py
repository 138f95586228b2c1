"""Compile, assemble and link with the system toolchain, and turn its messages into diagnostics.

Every tool runs as a child process with a timeout. A failure of any kind (the tool is missing,
it timed out, it rejected the input) comes back as a :class:`BuildResult` with ``ok=False`` and
diagnostics that say what failed and what to do; nothing here raises for a bad input.

Tools run with ``LC_ALL=C`` so that their messages are English with ASCII quotes, which is what
:func:`parse_diagnostics` reads.
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
import time
from collections.abc import Sequence
from pathlib import Path

from asmopt.executor.results import BuildResult, Diagnostic, Severity

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
    diagnostics = parse_diagnostics(stderr)
    ok = returncode == 0 and out.exists()
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
        diagnostics=diagnostics,
        stderr=stderr,
        seconds=seconds,
    )


def compile_to_asm(
    source: Path,
    out: Path,
    compiler: str = "gcc",
    flags: Sequence[str] = ("-O3",),
    timeout: float = 60,
) -> BuildResult:
    """Compile C ``source`` to assembly ``out``: ``<compiler> -S <flags> source -o out``.

    ``compiler`` is ``gcc``, ``clang`` (found as ``clang-14`` too) or a path.
    """
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
) -> BuildResult:
    """Assemble/compile and link ``inputs`` (.s, .S, .c, .o) into executable ``out``.

    The command is the paper's ``gcc x.s [other sources] -o out -lm``: ``<linker> <flags>
    inputs -o out <ldflags>``. Libraries go last so that the linker sees them after the
    objects that need them.
    """
    if not inputs:
        return _failure((linker,), "build_binary got no inputs: pass at least one .s/.c/.o file")
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
) -> tuple[Diagnostic, ...]:
    """Assemble an editor buffer and return its diagnostics, located in the buffer.

    The text is written unchanged to a temporary ``filename`` (so line numbers are the
    buffer's) and assembled with ``<assembler> -c``; a ``.S`` name is preprocessed first.
    ``assembler="clang"`` uses clang's integrated assembler, which also reports columns.
    Diagnostics about the buffer carry ``filename`` as their file.
    """
    name = os.path.basename(filename) or "input.s"
    if not name.endswith((".s", ".S")):
        name += ".s"  # the driver picks the language from the suffix
    with tempfile.TemporaryDirectory(prefix="asmopt-check-") as tmp:
        tmpdir = Path(tmp)
        (tmpdir / name).write_text(text)
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


# --- diagnostics -------------------------------------------------------------------------------

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
