"""The in-sandbox runner (``runner.c``): building it, and what it says about a run.

The runner applies a run's resource limits to the program alone, kills and reaps whatever
the program left running (it is a child subreaper) and reports the CPU time of every process
of the run (``RUSAGE_CHILDREN``). One-shot mode (``Sandbox.run``) reports on a status pipe
as one line of text (:func:`one_shot_result`); serve mode (``RunSession``) answers binary
requests (:func:`pack_request`, :class:`Response`), after a ready word (:func:`await_ready`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import selectors
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from asmopt.executor.bwrap import kill_tree
from asmopt.executor.limits import KiB, SandboxError, SandboxLimits, SandboxUnavailable
from asmopt.executor.results import RunResult


def _runner_source() -> bytes:
    return resources.files("asmopt.executor").joinpath("runner.c").read_bytes()


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "asmopt"


_runner_lock = threading.Lock()


def build_runner() -> Path:
    """Compile the in-sandbox runner once per source version and return its path."""
    source = _runner_source()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = _cache_dir() / f"asmopt-runner-{digest}"
    with _runner_lock:
        if target.exists():
            return target
        cc = shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            raise SandboxUnavailable("gcc not found: apt-get install gcc")
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "runner.c"
            src.write_bytes(source)
            out = Path(tmp) / "runner"
            proc = subprocess.run(
                [cc, "-O2", "-static", "-o", str(out), str(src)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if proc.returncode != 0:
                # A static libc is not always installed; a dynamic runner works as well.
                proc = subprocess.run(
                    [cc, "-O2", "-o", str(out), str(src)], capture_output=True, text=True
                )
            if proc.returncode != 0:
                raise SandboxError(f"cannot build the sandbox runner:\n{proc.stderr}")
            tmp_target = target.with_suffix(f".{os.getpid()}.tmp")
            shutil.copy2(out, tmp_target)
            os.chmod(tmp_target, 0o755)
            os.replace(tmp_target, target)
    return target


# -- serve mode: runner.c's struct request / struct response, native byte order -------------
REQUEST = struct.Struct("=4I9Q")  # magic seq program argc; wall_us cpu as nproc fsize nofile
#                                   output_bytes args_len stdin_len
RESPONSE = struct.Struct("=2I2i5Q2I2Q")  # magic seq kind value; utime_us stime_us maxrss_kib
#                                     wall_us runner_cpu_us; flags reserved; stdout_len stderr_len
REQUEST_MAGIC = 0x71526D41
RESPONSE_MAGIC = 0x73526D41
READY_MAGIC = 0x79526D41
# How long a new session's bubblewrap may take to become ready (a loaded machine is slow).
READY_TIMEOUT_SECONDS = 30.0
KIND_EXITED, KIND_SIGNALED = 0, 1
RESP_TIMED_OUT, RESP_TRUNCATED, RESP_ENDS = 1, 2, 4


def pack_request(
    seq: int, index: int, argc: int, args: bytes, stdin: bytes, limits: SandboxLimits
) -> bytes:
    """One request: run program ``index`` with ``argc`` arguments (``args``, each ended by a
    null byte) and ``stdin``, under ``limits``."""
    header = REQUEST.pack(
        REQUEST_MAGIC,
        seq,
        index,
        argc,
        max(1, int(limits.wall_seconds * 1e6)),
        limits.cpu_seconds,
        limits.memory_bytes,
        limits.max_processes,
        limits.file_size_bytes,
        limits.open_files,
        limits.output_bytes,
        len(args),
        len(stdin),
    )
    return header + args + bytes(stdin)


@dataclass(frozen=True)
class Response:
    """The header of one answer of the runner, as it packed it."""

    magic: int
    seq: int
    kind: int  # KIND_EXITED, KIND_SIGNALED, or another: the run could not start
    value: int  # exit code or signal
    utime_us: int
    stime_us: int
    maxrss_kib: int
    wall_us: int
    runner_cpu_us: int  # the runner's own work for this run
    flags: int  # RESP_*
    stdout_len: int
    stderr_len: int

    @classmethod
    def parse(cls, data: bytes | bytearray) -> Response:
        """The header at the start of ``data`` (at least ``RESPONSE.size`` bytes)."""
        magic, seq, kind, value, utime, stime, rss, wall, runner, flags, _, n_out, n_err = (
            RESPONSE.unpack_from(data)
        )
        return cls(magic, seq, kind, value, utime, stime, rss, wall, runner, flags, n_out, n_err)

    def outputs(self, data: bytes | bytearray) -> tuple[bytes, bytes]:
        """The run's stdout and stderr, which follow the header in ``data``."""
        start = RESPONSE.size
        end = start + self.stdout_len
        return bytes(data[start:end]), bytes(data[end : end + self.stderr_len])


def await_ready(resp_r: int, proc: subprocess.Popen[bytes]) -> bool:
    """Wait for the runner's ready word; False when the sandbox died or never got ready."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    got = b""
    with selectors.DefaultSelector() as sel:
        sel.register(resp_r, selectors.EVENT_READ)
        while len(got) < 4:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (proc.poll() is not None and not sel.select(0)):
                return False
            if not sel.select(timeout=min(remaining, 0.05)):
                continue
            try:
                chunk = os.read(resp_r, 4 - len(got))
            except BlockingIOError:
                continue
            if not chunk:
                return False
            got += chunk
    return struct.unpack("=I", got)[0] == READY_MAGIC


# -- one-shot mode ----------------------------------------------------------------------------
def communicate(
    proc: subprocess.Popen[bytes],
    stdin: bytes,
    limits: SandboxLimits,
    cancel: threading.Event | None,
) -> tuple[bytes, bytes, bool, bool, bool]:
    """Feed stdin, collect capped output, enforce the wall-clock limit."""
    assert proc.stdin and proc.stdout and proc.stderr
    deadline = time.monotonic() + limits.wall_seconds
    out: list[bytes] = []
    err: list[bytes] = []
    total = 0
    timed_out = truncated = cancelled = False
    sel = selectors.DefaultSelector()
    view = memoryview(stdin)
    offset = 0
    if stdin:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    try:
        # Until the program has closed both stdout and stderr (it exited, or was killed).
        while any(key.fileobj is not proc.stdin for key in sel.get_map().values()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                kill_tree(proc)
                break
            if cancel is not None and cancel.is_set():
                cancelled = True
                kill_tree(proc)
                break
            for key, _ in sel.select(timeout=min(remaining, 0.05)):
                if key.fileobj is proc.stdin:
                    try:
                        offset += os.write(proc.stdin.fileno(), view[offset : offset + 65536])
                    except (BrokenPipeError, OSError):
                        offset = len(view)
                    if offset >= len(view):
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                key.data.append(chunk)
                total += len(chunk)
                if total > limits.output_bytes:
                    truncated = True
                    kill_tree(proc)
                    raise _Done
    except _Done:
        pass
    finally:
        sel.close()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()
    if timed_out or truncated or cancelled:
        kill_tree(proc)
    else:
        # Output closed: the program is done or about to be. Give it the rest of the budget.
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_tree(proc)
    return b"".join(out), b"".join(err), timed_out, truncated, cancelled


class _Done(Exception):
    pass


def read_all(fd: int) -> bytes:
    chunks = []
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class Observed:
    """What was seen of a run besides how it ended: by the host (one-shot mode) or by the
    runner (serve mode)."""

    stdout: bytes
    stderr: bytes
    wall: float
    timed_out: bool
    truncated: bool


def one_shot_result(
    status: bytes, returncode: int, seen: Observed, limits: SandboxLimits, sandboxed: bool
) -> RunResult:
    """A RunResult from the one-shot runner's status line (``status``) and what the host saw
    of the run; raises ``SandboxError`` when bubblewrap itself failed to start."""
    fields = status.decode(errors="replace").split()
    if len(fields) != 5 or fields[0] not in ("exited", "signaled"):
        if seen.timed_out or seen.truncated:
            return RunResult(
                None,
                signal.SIGKILL,
                seen.stdout,
                seen.stderr,
                0.0,
                seen.wall,
                timed_out=seen.timed_out,
                output_truncated=seen.truncated,
                sandboxed=sandboxed,
            )
        text = seen.stderr.decode(errors="replace").strip()
        if text.startswith("bwrap:"):
            raise SandboxError(f"the sandbox failed to start (exit {returncode}): {text[:500]}")
        # The runner itself was killed: the program killed every process it could see
        # (kill(-1, ...)), which includes the runner. Report the signal bubblewrap saw.
        sig = returncode - 128 if returncode > 128 else signal.SIGKILL
        return RunResult(None, sig, seen.stdout, seen.stderr, 0.0, seen.wall, sandboxed=sandboxed)
    kind, value, utime, stime, maxrss = fields
    return run_result(
        int(value) if kind == "exited" else None,
        int(value) if kind == "signaled" else None,
        (int(utime) + int(stime)) / 1e6,
        int(maxrss),
        seen,
        limits,
        sandboxed,
    )


def run_result(
    code: int | None,
    sig: int | None,
    cpu: float,
    rss: int,
    seen: Observed,
    limits: SandboxLimits,
    sandboxed: bool,
) -> RunResult:
    """A RunResult from what the runner reported (one-shot and session runs alike)."""
    timed_out = seen.timed_out or sig == signal.SIGXCPU
    oom_hint = b"bad_alloc" in seen.stderr or b"annot allocate memory" in seen.stderr
    oom = (code != 0) and (rss * KiB >= 0.8 * limits.memory_bytes or oom_hint)
    return RunResult(
        exit_code=code,
        signal=sig,
        stdout=seen.stdout,
        stderr=seen.stderr,
        cpu_seconds=cpu,
        wall_seconds=seen.wall,
        max_rss_kib=rss,
        timed_out=timed_out,
        output_truncated=seen.truncated,
        out_of_memory=oom and not timed_out,
        sandbox_violation=sig == signal.SIGSYS,
        sandboxed=sandboxed,
    )
