"""Run untrusted binaries: bubblewrap + seccomp + resource limits, with CPU time measured.

Every generated program is hostile until proven otherwise. A run happens inside bubblewrap
with every namespace unshared (no network, own PID namespace), as uid ``nobody``, on a
read-only root made of ``/usr`` and the library links only, with a small private ``/tmp``,
no capabilities, an empty environment, ``--die-with-parent`` and ``--new-session``. A seccomp
filter kills the process on socket, ptrace, mount, kexec, bpf and similar calls, and the
in-sandbox runner (``runner.c``) applies resource limits to the program alone and reports its
CPU time from ``wait4``'s rusage, so the sandbox's own start-up is never timed.

When this process is root, bubblewrap itself is started as ``nobody`` so that the sandbox
works the same way for ordinary users and for root (unprivileged user namespaces).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from asmopt.executor.results import RunResult

log = logging.getLogger(__name__)

NOBODY = 65534
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
# Where a program sees the one writable directory a caller may lend it (``output_dir``).
SANDBOX_OUTPUT_DIR = "/sandbox/out"

# Calls a benchmark program never needs and an escape attempt often does. The process is
# killed (SIGSYS) so the verdict can say "blocked by the sandbox" instead of guessing from
# an error code.
BLOCKED_SYSCALLS = tuple(
    """
    socket socketpair connect bind listen accept accept4 ptrace process_vm_readv
    process_vm_writev mount umount2 pivot_root chroot move_mount open_tree fsopen fsmount
    fspick mount_setattr kexec_load kexec_file_load reboot init_module finit_module
    delete_module bpf perf_event_open userfaultfd keyctl add_key request_key unshare setns
    swapon swapoff acct syslog settimeofday clock_settime clock_adjtime adjtimex iopl ioperm
    open_by_handle_at name_to_handle_at quotactl fanotify_init lookup_dcookie mknod mknodat
    personality
    """.split()
)


class SandboxError(RuntimeError):
    """The sandbox itself could not run (not the program under test)."""


class SandboxUnavailable(SandboxError):
    """bubblewrap is missing or unusable here; the message says how to fix it."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one run of a program under test."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_bytes: int = 1 * GiB  # address space (RLIMIT_AS)
    max_processes: int = 64  # RLIMIT_NPROC for the sandbox user
    file_size_bytes: int = 16 * MiB  # RLIMIT_FSIZE
    open_files: int = 64
    output_bytes: int = 8 * MiB  # stdout and stderr together
    tmp_bytes: int = 32 * MiB  # size of the private /tmp


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


def seccomp_program() -> bytes:
    """The BPF program of the sandbox's seccomp filter (built with libseccomp via pyseccomp)."""
    try:
        import pyseccomp
    except (ImportError, OSError) as err:  # OSError: libseccomp.so.2 missing
        raise SandboxUnavailable(
            f"seccomp is unavailable ({err}): apt-get install libseccomp2 and pip install pyseccomp"
        ) from err
    flt = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    for name in BLOCKED_SYSCALLS:
        with contextlib.suppress(Exception):  # a call this kernel/libseccomp doesn't know
            flt.add_rule(pyseccomp.KILL_PROCESS, name)
    # glibc falls back from clone3 to clone on ENOSYS; clone3's flags live in memory where
    # seccomp cannot see them, so refuse it outright (namespaces stay blocked by unshare).
    with contextlib.suppress(Exception):
        flt.add_rule(pyseccomp.ERRNO(38), "clone3")
    with tempfile.TemporaryFile() as fh:
        flt.export_bpf(fh)
        fh.seek(0)
        return fh.read()


def bubblewrap_path() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable(
            "bubblewrap not found: apt-get install bubblewrap, or pass --no-sandbox to run "
            "unsandboxed (generated code then runs with your permissions)"
        )
    return path


class Sandbox:
    """Runs binaries under test. Thread-safe; one instance can serve many concurrent runs.

    ``enabled=False`` runs programs directly (limits and CPU timing still apply) and logs a
    warning on creation; only an explicit user flag should ever choose it.
    """

    def __init__(self, limits: SandboxLimits | None = None, *, enabled: bool = True) -> None:
        self.limits = limits or SandboxLimits()
        self.enabled = enabled
        self._runner_src = build_runner()
        self._session = Path(tempfile.mkdtemp(prefix="asmopt-sandbox-"))
        os.chmod(self._session, 0o755)  # bubblewrap may run as nobody and must read it
        self._runner = self._session / "runner"
        shutil.copy2(self._runner_src, self._runner)
        os.chmod(self._runner, 0o755)
        self._staged: dict[tuple[str, int, int], Path] = {}
        self._lock = threading.Lock()
        self._active: set[subprocess.Popen[bytes]] = set()
        self._closed = False
        if enabled:
            self._bwrap = bubblewrap_path()
            self._bpf = seccomp_program()
            self._drop_to_nobody = os.geteuid() == 0
        else:
            print(
                "asmopt: WARNING: running generated code WITHOUT a sandbox (--no-sandbox); "
                "it can read and write your files and reach the network",
                file=sys.stderr,
            )

    # -- life cycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Kill every run still going and remove the session's files."""
        self.kill_all()
        self._closed = True
        shutil.rmtree(self._session, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def kill_all(self) -> None:
        """Kill every program running in this sandbox now (used by cancellation)."""
        with self._lock:
            active = list(self._active)
        for proc in active:
            _kill_tree(proc)

    # -- running ----------------------------------------------------------------------------
    def stage(self, binary: Path) -> Path:
        """Copy a binary into the session directory (readable by the sandbox user) once."""
        binary = Path(binary)
        st = binary.stat()
        key = (str(binary.resolve()), st.st_mtime_ns, st.st_size)
        with self._lock:
            staged = self._staged.get(key)
            if staged is not None and staged.exists():
                return staged
            staged = self._session / f"prog-{len(self._staged)}"
            shutil.copyfile(binary, staged)
            os.chmod(staged, 0o755)
            self._staged[key] = staged
            return staged

    def make_output_dir(self) -> Path:
        """A fresh, empty directory that a run may write into (see ``run(output_dir=...)``).

        It lives in the session directory (removed by :meth:`close`), is owned by the user the
        program runs as, and is private to it (mode 0700).
        """
        with self._lock:
            path = Path(tempfile.mkdtemp(prefix="out-", dir=self._session))
        if self.enabled and self._drop_to_nobody:
            os.chown(path, NOBODY, NOBODY)
        os.chmod(path, 0o700)
        return path

    def output_path(self, output_dir: Path) -> str:
        """The path under which a program run with ``output_dir`` sees that directory."""
        return SANDBOX_OUTPUT_DIR if self.enabled else str(Path(output_dir).resolve())

    def command(
        self,
        program: Path,
        args: tuple[str, ...],
        status_fd: int,
        bpf_fd: int | None,
        limits: SandboxLimits,
        output_dir: Path | None = None,
    ) -> list[str]:
        """The full command line for one run (exposed for tests and for wrapping tools)."""
        runner_args = [
            str(status_fd),
            str(limits.cpu_seconds),
            str(limits.memory_bytes),
            str(limits.max_processes),
            str(limits.file_size_bytes),
            str(limits.open_files),
        ]
        if not self.enabled:
            return [str(self._runner), *runner_args, str(program), *args]
        cmd = [
            self._bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--uid",
            str(NOBODY),
            "--gid",
            str(NOBODY),
            "--hostname",
            "sandbox",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/sbin",
            "/sbin",
            "--ro-bind-try",
            "/etc/ld.so.cache",
            "/etc/ld.so.cache",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--size",
            str(limits.tmp_bytes),
            "--tmpfs",
            "/tmp",
            "--ro-bind",
            str(self._runner),
            "/sandbox/runner",
            "--ro-bind",
            str(program),
            "/sandbox/prog",
            "--chdir",
            "/tmp",
            "--setenv",
            "PATH",
            "/usr/bin:/bin",
        ]
        if output_dir is not None:
            # The only host path a program can write: a directory made for this purpose.
            cmd += ["--bind", str(output_dir), SANDBOX_OUTPUT_DIR]
        if bpf_fd is not None:
            cmd += ["--seccomp", str(bpf_fd)]
        cmd += ["/sandbox/runner", *runner_args, "/sandbox/prog", *args]
        return cmd

    def run(
        self,
        binary: Path,
        stdin: bytes = b"",
        args: tuple[str, ...] | list[str] = (),
        *,
        limits: SandboxLimits | None = None,
        cancel: threading.Event | None = None,
        output_dir: Path | None = None,
    ) -> RunResult:
        """Run ``binary`` once with ``stdin`` and ``args`` and report what happened.

        ``output_dir`` (made by :meth:`make_output_dir`) is bound writable where the program
        sees it as :meth:`output_path`; the program may leave files there (profile data of an
        instrumented build). Treat what it leaves as untrusted: it may be anything, links
        included. Every other path stays read-only or private.

        Never raises for anything the program does; raises ``SandboxError`` when the sandbox
        itself fails to start, and ``Cancelled`` when ``cancel`` is set during the run.
        """
        if self._closed:
            raise SandboxError("sandbox is closed")
        if output_dir is not None and not Path(output_dir).is_dir():
            raise SandboxError(
                f"output directory {output_dir} does not exist: make it with make_output_dir()"
            )
        limits = limits or self.limits
        program = self.stage(binary)
        status_r, status_w = os.pipe()
        bpf_r = None
        pass_fds = [status_w]
        if self.enabled:
            bpf_r, bpf_w = os.pipe()
            os.write(bpf_w, self._bpf)  # a few hundred bytes: fits in the pipe buffer
            os.close(bpf_w)
            pass_fds.append(bpf_r)
        cmd = self.command(program, tuple(args), status_w, bpf_r, limits, output_dir)
        drop = self.enabled and self._drop_to_nobody
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=pass_fds,
                start_new_session=True,
                close_fds=True,
                env={} if not self.enabled else None,
                cwd=self._session,
                user=NOBODY if drop else None,
                group=NOBODY if drop else None,
                extra_groups=[] if drop else None,
            )
        finally:
            os.close(status_w)
            if bpf_r is not None:
                os.close(bpf_r)
        with self._lock:
            self._active.add(proc)
        try:
            stdout, stderr, timed_out, truncated, cancelled = _communicate(
                proc, stdin, limits, cancel
            )
            proc.wait()
            wall = time.perf_counter() - start
            status = _read_all(status_r)
        finally:
            os.close(status_r)
            with self._lock:
                self._active.discard(proc)
        if cancelled:
            raise Cancelled("run cancelled")
        return _result(
            status,
            proc.returncode,
            stdout,
            stderr,
            wall,
            timed_out,
            truncated,
            limits,
            self.enabled,
        )


class Cancelled(Exception):
    """The caller cancelled the run; every process of it has been killed."""


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    # bubblewrap runs in its own process group; killing it takes down the PID namespace
    # (--die-with-parent), and with it every process the program started.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _communicate(
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
                _kill_tree(proc)
                break
            if cancel is not None and cancel.is_set():
                cancelled = True
                _kill_tree(proc)
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
                    _kill_tree(proc)
                    raise _Done
    except _Done:
        pass
    finally:
        sel.close()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()
    if timed_out or truncated or cancelled:
        _kill_tree(proc)
    else:
        # Output closed: the program is done or about to be. Give it the rest of the budget.
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_tree(proc)
    return b"".join(out), b"".join(err), timed_out, truncated, cancelled


class _Done(Exception):
    pass


def _read_all(fd: int) -> bytes:
    chunks = []
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    return b"".join(chunks)


def _result(
    status: bytes,
    returncode: int,
    stdout: bytes,
    stderr: bytes,
    wall: float,
    timed_out: bool,
    truncated: bool,
    limits: SandboxLimits,
    sandboxed: bool,
) -> RunResult:
    fields = status.decode(errors="replace").split()
    if len(fields) != 5 or fields[0] not in ("exited", "signaled"):
        if timed_out or truncated:
            return RunResult(
                None,
                signal.SIGKILL,
                stdout,
                stderr,
                0.0,
                wall,
                timed_out=timed_out,
                output_truncated=truncated,
                sandboxed=sandboxed,
            )
        text = stderr.decode(errors="replace").strip()
        if text.startswith("bwrap:"):
            raise SandboxError(f"the sandbox failed to start (exit {returncode}): {text[:500]}")
        # The runner itself was killed: the program killed every process it could see
        # (kill(-1, ...)), which includes the runner. Report the signal bubblewrap saw.
        sig = returncode - 128 if returncode > 128 else signal.SIGKILL
        return RunResult(None, sig, stdout, stderr, 0.0, wall, sandboxed=sandboxed)
    kind, value, utime, stime, maxrss = fields
    cpu = (int(utime) + int(stime)) / 1e6
    code: int | None = int(value) if kind == "exited" else None
    sig: int | None = int(value) if kind == "signaled" else None
    if sig in (signal.SIGXCPU,):
        timed_out = True
    rss = int(maxrss)
    oom_hint = b"bad_alloc" in stderr or b"annot allocate memory" in stderr
    oom = (code != 0) and (rss * KiB >= 0.8 * limits.memory_bytes or oom_hint)
    return RunResult(
        exit_code=code,
        signal=sig,
        stdout=stdout,
        stderr=stderr,
        cpu_seconds=cpu,
        wall_seconds=wall,
        max_rss_kib=rss,
        timed_out=timed_out,
        output_truncated=truncated,
        out_of_memory=oom and not timed_out,
        sandbox_violation=sig == signal.SIGSYS,
        sandboxed=sandboxed,
    )


def with_limits(limits: SandboxLimits, **changes: object) -> SandboxLimits:
    """A copy of ``limits`` with some fields changed."""
    return replace(limits, **changes)  # type: ignore[arg-type]
