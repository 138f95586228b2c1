"""Run untrusted binaries: bubblewrap + seccomp + resource limits, with CPU time measured.

Every generated program is hostile until proven otherwise. A run happens inside bubblewrap
with every namespace unshared (no network, own PID namespace), as uid ``nobody``, on a
read-only root made of ``/usr`` and the library links only, with a small private ``/tmp``,
no capabilities, an empty environment, ``--die-with-parent`` and ``--new-session``. A seccomp
filter kills the process on socket, ptrace, mount, kexec, bpf and similar calls, and the
in-sandbox runner (``runner.c``) applies resource limits to the program alone, kills and reaps
whatever the program left running (it is a child subreaper), and reports the CPU time of every
process of the run it reaped (``RUSAGE_CHILDREN``), so the sandbox's own start-up is never
timed and work handed to a child is charged in full.

:meth:`Sandbox.run` starts a fresh bubblewrap per run (~10 ms). :meth:`Sandbox.session` starts
one bubblewrap whose runner serves many runs of a few binaries over pipes (benchmarking); after
each run it kills every leftover process and wipes what a program could leave for the next one
(``/tmp``, ``/dev``, System V IPC), and a session that a program broke restarts by itself.

When this process is root, bubblewrap itself is started as ``nobody`` so that the sandbox
works the same way for ordinary users and for root (unprivileged user namespaces).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import functools
import hashlib
import logging
import os
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any, NamedTuple

from asmopt.executor.cgroup import Cgroup, cgroup_root
from asmopt.executor.results import RunResult

log = logging.getLogger(__name__)

NOBODY = 65534
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
# Where a program sees the one writable directory a caller may lend it (``output_dir``).
SANDBOX_OUTPUT_DIR = "/sandbox/out"
# Where a tool run by ``run_tool`` (assembler, linker) sees its working directory.
SANDBOX_WORK_DIR = "/sandbox/work"
# Where the runs of a session made with ``files=`` see that folder, read-only (command tests
# see the target's files there; it is their working directory).
SANDBOX_FILES_DIR = "/sandbox/files"
# In the arguments of a session with a launcher, the path of the session's binary.
PROGRAM_PLACEHOLDER = "{bin}"

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
    personality io_uring_setup io_uring_enter io_uring_register vmsplice readahead cachestat
    """.split()
)
# io_uring runs system calls (a socket, say) where seccomp never sees them; vmsplice moves the
# copy of a program's output into the runner, whose CPU time is not the program's; readahead
# and cachestat set and read the host's page cache, a memory shared by every sandbox.


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
    # stdout and stderr together: room for a FASTA-like generator's output
    output_bytes: int = 64 * MiB
    tmp_bytes: int = 32 * MiB  # size of the private /tmp


def run_memory_bytes(limits: SandboxLimits) -> int:
    """What one run may hold in all, where a cgroup can bound it: the program's memory, its
    ``/tmp`` and ``/dev/shm``, and the runner's buffer of its output (``memory_bytes`` alone
    is a per-process limit, which N processes would multiply)."""
    return limits.memory_bytes + 2 * limits.tmp_bytes + limits.output_bytes + 32 * MiB


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


@functools.lru_cache(maxsize=2)
def seccomp_program(*, refuse_sigchld: bool = True) -> bytes:
    """The BPF program of the sandbox's seccomp filter (built with libseccomp via pyseccomp).

    ``refuse_sigchld=False`` leaves SIGCHLD's disposition alone (tests use it to show that
    cgroup accounting alone charges auto-reaped children)."""
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
    # SIGCHLD set to SIG_IGN (or SA_NOCLDWAIT) makes the kernel reap children unseen, and
    # their CPU time never reaches any rusage. Refuse to change SIGCHLD's disposition at all
    # (the action lives in memory seccomp cannot read); reading it stays allowed.
    # The kernel reads the signal number as an int: compare the low 32 bits only, or high
    # bits in the register slip past the rule.
    if refuse_sigchld:
        flt.add_rule(
            pyseccomp.ERRNO(errno.EPERM),
            "rt_sigaction",
            pyseccomp.Arg(0, pyseccomp.MASKED_EQ, 0xFFFFFFFF, signal.SIGCHLD),
            pyseccomp.Arg(1, pyseccomp.NE, 0),
        )
    for name, rules in _REFUSED_ARGUMENTS.items():
        for args in rules:
            refused = [_arg(pyseccomp, a) for a in args]
            flt.add_rule(pyseccomp.ERRNO(errno.EPERM), name, *refused)
    with tempfile.TemporaryFile() as fh:
        flt.export_bpf(fh)
        fh.seek(0)
        return fh.read()


# Calls refused (EPERM) when their arguments say so: each rule is (argument, test, value...),
# all tests of a rule must hold. A program may change itself but nothing else (the runner's
# limits, nice value, CPUs or I/O priority would otherwise carry over to the runs after it),
# and may not probe or evict the host's page cache (RWF_NOWAIT reads, POSIX_FADV_DONTNEED).
# "gt0": anything but exactly 0 (the comparison is unsigned and 64-bit, so high bits and
# negative numbers are refused too).
_REFUSED_ARGUMENTS: dict[str, tuple[tuple[tuple[Any, ...], ...], ...]] = {
    "prlimit64": (((0, "gt0"),),),
    "setpriority": (((0, "gt0"),), ((1, "gt0"),)),  # only PRIO_PROCESS of itself
    "sched_setaffinity": (((0, "gt0"),),),
    "sched_setscheduler": (((0, "gt0"),),),
    "sched_setparam": (((0, "gt0"),),),
    "sched_setattr": (((0, "gt0"),),),
    "ioprio_set": (((0, "ne", 1),), ((1, "gt0"),)),  # only IOPRIO_WHO_PROCESS of itself
    "preadv2": (((5, "bits", 0x8),),),  # RWF_NOWAIT
    "pwritev2": (((5, "bits", 0x8),),),
    "fadvise64": (((3, "low32", 4),),),  # POSIX_FADV_DONTNEED
}


def _arg(pyseccomp: Any, spec: tuple[Any, ...]) -> Any:
    index, test, *values = spec
    if test == "gt0":
        return pyseccomp.Arg(index, pyseccomp.GT, 0)
    if test == "ne":
        return pyseccomp.Arg(index, pyseccomp.NE, values[0])
    if test == "bits":
        return pyseccomp.Arg(index, pyseccomp.MASKED_EQ, values[0], values[0])
    if test == "low32":
        return pyseccomp.Arg(index, pyseccomp.MASKED_EQ, 0xFFFFFFFF, values[0])
    raise ValueError(f"unknown argument test {test}")


def bubblewrap_path() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable(
            "bubblewrap not found: apt-get install bubblewrap, or pass --no-sandbox to run "
            "unsandboxed (generated code then runs with your permissions)"
        )
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_sessions() -> None:
    """Remove the session folders of asmopt processes that died without cleaning up (killed
    with SIGKILL): they hold staged binaries and whatever the last build left."""
    for path in Path(tempfile.gettempdir()).glob("asmopt-sandbox-*-*"):
        pid = path.name.split("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


class Sandbox:
    """Runs binaries under test. Thread-safe; one instance can serve many concurrent runs.

    ``enabled=False`` runs programs directly (limits and CPU timing still apply) and logs a
    warning on creation; only an explicit user flag should ever choose it.
    """

    def __init__(self, limits: SandboxLimits | None = None, *, enabled: bool = True) -> None:
        self.limits = limits or SandboxLimits()
        self.enabled = enabled
        self._runner_src = build_runner()
        _remove_stale_sessions()
        self._session = Path(tempfile.mkdtemp(prefix=f"asmopt-sandbox-{os.getpid()}-"))
        os.chmod(self._session, 0o755)  # bubblewrap may run as nobody and must read it
        self._runner = self._session / "runner"
        self._empty_dir = self._session / "empty"  # covers what a session's files hide
        self._empty_dir.mkdir(mode=0o555)
        shutil.copy2(self._runner_src, self._runner)
        os.chmod(self._runner, 0o755)
        self._staged: dict[tuple[str, int, int], Path] = {}
        self._lock = threading.Lock()
        self._active: set[subprocess.Popen[bytes]] = set()
        self._sessions: weakref.WeakSet[RunSession] = weakref.WeakSet()
        self._closed = False
        # Charge CPU time by cgroup where this machine lets us make one (see cgroup.py).
        self.cgroups = cgroup_root() is not None
        if enabled:
            self._bwrap = bubblewrap_path()
            self._bpf = seccomp_program()
            # For runs whose CPU time is no measurement (valgrind, the toolchain): valgrind
            # must set a SIGCHLD handler of its own.
            self._bpf_untimed = seccomp_program(refuse_sigchld=False)
            self._drop_to_nobody = os.geteuid() == 0
        else:
            print(
                "asmopt: WARNING: running generated code WITHOUT a sandbox (--no-sandbox); "
                "it can read and write your files and reach the network",
                file=sys.stderr,
            )

    # -- life cycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Kill every run still going, close every session and remove the staged files."""
        self._closed = True
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.close()
        self.kill_all()
        shutil.rmtree(self._session, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def kill_all(self) -> None:
        """Kill every program running in this sandbox now (used by cancellation).

        Sessions lose their bubblewrap too; the run they were serving reports the kill, and
        their next run starts a fresh one.
        """
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

    def _bwrap_command(
        self,
        tmp_bytes: int,
        programs: Sequence[tuple[Path, str]],
        bpf_fd: int | None,
        runner_argv: Sequence[str],
        output_dir: Path | None = None,
        *,
        work_dir: Path | None = None,
        files: tuple[Path, Sequence[tuple[str, bool]]] | None = None,
    ) -> list[str]:
        """bubblewrap with every isolation flag, ``programs`` (host path, sandbox path) bound
        read-only, running ``/sandbox/runner runner_argv``."""
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
            # bubblewrap's /dev is a tmpfs without a size: /dev/shm gets /tmp's, and /dev
            # itself is made read-only below.
            "--size",
            str(tmp_bytes),
            "--tmpfs",
            "/dev/shm",
            "--size",
            str(tmp_bytes),
            "--tmpfs",
            "/tmp",
        ]
        # The runner and the programs are copied in from open files rather than bound from
        # the session folder: /proc/self/mountinfo would show a bound file's host path.
        cmd = _Command(cmd)
        cmd.add_data(self._runner, "/sandbox/runner")
        for host_path, inside in programs:
            cmd.add_data(host_path, inside)
        if work_dir is not None:
            # A tool's run (see run_tool): its files, writable, as its working directory.
            cmd += ["--bind", str(work_dir), SANDBOX_WORK_DIR, "--chdir", SANDBOX_WORK_DIR]
            cmd += ["--setenv", "LC_ALL", "C"]  # English messages, which toolchain.py parses
        elif files is not None:
            # A session's files (see session(files=...)), read-only; what must stay unseen is
            # covered by an empty folder or file.
            folder, hidden = files
            cmd += ["--ro-bind", str(folder), SANDBOX_FILES_DIR]
            for rel, is_dir in hidden:
                cover = self._empty_dir if is_dir else Path("/dev/null")
                cmd += ["--ro-bind", str(cover), f"{SANDBOX_FILES_DIR}/{rel}"]
            cmd += ["--chdir", SANDBOX_FILES_DIR]
        else:
            cmd += ["--chdir", "/tmp"]
        cmd += ["--setenv", "PATH", "/usr/bin:/bin"]
        if output_dir is not None:
            # The only host path a program can write: a directory made for this purpose.
            cmd += ["--bind", str(output_dir), SANDBOX_OUTPUT_DIR]
        # The root (a tmpfs bubblewrap made, owned by the sandbox user) read-only: only /tmp,
        # /dev and output_dir stay writable, which a session can wipe between runs.
        cmd += ["--remount-ro", "/", "--remount-ro", "/dev"]
        if bpf_fd is not None:
            cmd += ["--seccomp", str(bpf_fd)]
        cmd += ["/sandbox/runner", *runner_argv]
        return cmd

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
        return self._bwrap_command(
            limits.tmp_bytes,
            [(program, "/sandbox/prog")],
            bpf_fd,
            ["--sandboxed", *runner_args, "/sandbox/prog", *args],
            output_dir,
        )

    def _spawn(
        self,
        cmd: list[str],
        pass_fds: list[int],
        cgroup: Cgroup | None = None,
        cwd: Path | None = None,
        **streams: object,
    ) -> subprocess.Popen[bytes]:
        """Start bubblewrap (as nobody when we are root) or the bare runner, inside ``cgroup``
        when given (the runner's ``--launch`` joins it, then drops to nobody)."""
        drop = self.enabled and self._drop_to_nobody
        data_fds = cmd.fds if isinstance(cmd, _Command) else []
        if cgroup is not None:
            ids = [str(NOBODY), str(NOBODY)] if drop else ["-", "-"]
            procs = [str(p) for p in cgroup.procs_files]
            cmd = [str(self._runner), "--launch", *procs, "--", *ids, *cmd]
            drop = False
        try:
            return self._popen(cmd, [*pass_fds, *data_fds], drop, cwd, streams)
        finally:
            for fd in data_fds:
                os.close(fd)

    def _popen(
        self,
        cmd: list[str],
        pass_fds: list[int],
        drop: bool,
        cwd: Path | None,
        streams: dict[str, object],
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # type: ignore[call-overload]
            cmd,
            pass_fds=pass_fds,
            start_new_session=True,
            close_fds=True,
            env={} if not self.enabled else None,
            cwd=cwd or self._session,
            user=NOBODY if drop else None,
            group=NOBODY if drop else None,
            extra_groups=[] if drop else None,
            **streams,
        )

    def _bpf_pipe(self, timed: bool = True) -> int | None:
        """A pipe's read end holding the seccomp program (for ``--seccomp FD``)."""
        if not self.enabled:
            return None
        bpf_r, bpf_w = os.pipe()
        program = self._bpf if timed else self._bpf_untimed
        os.write(bpf_w, program)  # a few hundred bytes: fits in the pipe buffer
        os.close(bpf_w)
        return bpf_r

    def session(
        self,
        binaries: Sequence[Path],
        *,
        limits: SandboxLimits | None = None,
        launcher: str | None = None,
        files: Path | None = None,
        hide: Sequence[str] = (),
        fresh_per_run: bool = False,
    ) -> RunSession:
        """One sandbox serving many runs of ``binaries`` (see :class:`RunSession`).

        ``fresh_per_run`` gives every run a bubblewrap of its own, started while the run
        before it executes: nothing of one run (files, extended attributes, the PID and inode
        counters, changes made to the runner) can reach the next. The judge uses it.

        ``limits`` only sets the session's default limits (``tmp_bytes`` included); each run
        may pass its own. Use it as a context manager; :meth:`close` and :meth:`kill_all`
        stop it too.

        ``launcher`` (an absolute path under ``/usr`` or ``/bin``, such as ``/bin/sh``) is
        what every run executes instead of the binary: the binary is still where it always
        is, and ``{bin}`` in a run's arguments stands for that path (command tests:
        ``/bin/sh -c "{bin} --check"``). ``files`` is a folder every run sees read-only at
        ``SANDBOX_FILES_DIR`` (its working directory), less the paths in ``hide``
        (relative; each shows as an empty folder, or an empty file when it is a file).
        """
        if self._closed:
            raise SandboxError("sandbox is closed")
        staged = [self.stage(Path(b)) for b in binaries]
        if not staged:
            raise ValueError("a session needs at least one binary")
        hidden = []
        if files is not None:
            files = Path(files).resolve()
            if not files.is_dir():
                raise SandboxError(f"{files} is not a folder: a session's files must be one")
            if self.enabled and self._drop_to_nobody:
                _check_reachable_by_nobody(files)
            for rel in hide:
                path = files / rel
                if path.exists() and not path.is_symlink():
                    hidden.append((rel.strip("/"), path.is_dir()))
        if launcher is not None and not os.path.isabs(launcher):
            raise SandboxError(f"a session's launcher needs an absolute path, got {launcher}")
        session = RunSession(self, staged, limits or self.limits, fresh_per_run=fresh_per_run)
        session.launcher, session.files, session.hidden = launcher, files, tuple(hidden)
        with self._lock:
            self._sessions.add(session)
        return session

    def run(
        self,
        binary: Path,
        stdin: bytes = b"",
        args: tuple[str, ...] | list[str] = (),
        *,
        limits: SandboxLimits | None = None,
        cancel: threading.Event | None = None,
        output_dir: Path | None = None,
        timed: bool = True,
    ) -> RunResult:
        """Run ``binary`` once with ``stdin`` and ``args`` and report what happened.

        ``timed=False`` is for runs whose CPU time measures nothing (valgrind counting
        instructions): the program may then change SIGCHLD's disposition, which a timed run
        may not (it would hide its children's CPU time from rusage).

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
        return self._run_once(
            lambda status_w, bpf_r: self.command(
                program, tuple(args), status_w, bpf_r, limits, output_dir
            ),
            stdin,
            limits,
            cancel,
            timed=timed,
        )

    def run_tool(
        self,
        argv: Sequence[str],
        work_dir: Path,
        *,
        limits: SandboxLimits,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        """Run a tool of the host's toolchain (``argv[0]``: an absolute path under ``/usr``)
        on the files of ``work_dir`` (made by :meth:`make_output_dir`), with the same
        isolation, seccomp filter and limits as a program under test.

        The tool sees ``/usr`` read-only, ``work_dir`` as its writable working directory and
        a private ``/tmp``; nothing of the workspace, the tests, the home directory or
        ``/etc``. This is how candidate text is assembled and linked: ``.incbin`` and
        ``.include`` reach nothing worth stealing, and a build that floods, loops or grows
        is cut off by the limits.
        """
        if self._closed:
            raise SandboxError("sandbox is closed")
        tool = str(argv[0])
        if not os.path.isabs(tool):
            raise SandboxError(f"run_tool needs an absolute tool path, got {tool}")
        if self.enabled and not tool.startswith("/usr/"):
            raise SandboxUnavailable(
                f"{tool} is outside /usr, which is all the build sandbox shows: install the "
                "tool under /usr, or pass --no-sandbox"
            )
        runner_args = [
            str(limits.cpu_seconds),
            str(limits.memory_bytes),
            str(limits.max_processes),
            str(limits.file_size_bytes),
            str(limits.open_files),
        ]

        def command(status_w: int, bpf_r: int | None) -> list[str]:
            if not self.enabled:
                return [str(self._runner), str(status_w), *runner_args, *argv]
            return self._bwrap_command(
                limits.tmp_bytes,
                [],
                bpf_r,
                ["--sandboxed", str(status_w), *runner_args, *argv],
                work_dir=work_dir,
            )

        cwd = None if self.enabled else work_dir
        return self._run_once(command, b"", limits, cancel, cwd=cwd, timed=False)

    def _run_once(
        self,
        make_command: Callable[[int, int | None], list[str]],
        stdin: bytes,
        limits: SandboxLimits,
        cancel: threading.Event | None,
        cwd: Path | None = None,
        timed: bool = True,
    ) -> RunResult:
        """Start one sandbox for one run (the runner's one-shot mode) and report it."""
        status_r, status_w = os.pipe()
        bpf_r = self._bpf_pipe(timed)
        pass_fds = [status_w] if bpf_r is None else [status_w, bpf_r]
        cmd = make_command(status_w, bpf_r)
        start = time.perf_counter()
        try:
            proc = self._spawn(
                cmd,
                pass_fds,
                cwd=cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
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


# The session protocol (runner.c's struct request / struct response, native byte order).
_REQUEST = struct.Struct("=4I9Q")  # magic seq program argc; wall_us cpu as nproc fsize nofile
#                                    output_bytes args_len stdin_len
_RESPONSE = struct.Struct("=2I2i5Q2I2Q")  # magic seq kind value; utime_us stime_us maxrss_kib
#                                      wall_us runner_cpu_us; flags reserved; stdout_len stderr_len
_REQUEST_MAGIC = 0x71526D41
_RESPONSE_MAGIC = 0x73526D41
_READY_MAGIC = 0x79526D41
# How long a new session's bubblewrap may take to become ready (a loaded machine is slow).
_READY_TIMEOUT_SECONDS = 30.0
_SPARES = 2  # bubblewraps a fresh-per-run session keeps starting ahead of its runs
_KIND_EXITED, _KIND_SIGNALED = 0, 1
_RESP_TIMED_OUT, _RESP_TRUNCATED, _RESP_ENDS = 1, 2, 4
# How long past a run's wall limit the host waits for the runner's answer before it kills the
# session itself (a program can stop the runner with SIGSTOP; the runner also needs time to
# kill, reap and wipe).
_SESSION_GRACE_SECONDS = 2.0


class RunSession:
    """One sandbox (one bubblewrap, same flags and seccomp filter as :meth:`Sandbox.run`)
    serving many runs of a fixed list of binaries; made by :meth:`Sandbox.session`.

    The runner inside forks each run, applies its limits, enforces its wall-clock limit and
    output cap, then kills and reaps every process the run left and wipes ``/tmp``, new files
    in ``/dev`` and System V IPC objects, so that nothing of one run is there for the next.
    When a program breaks the session (it killed the runner, e.g. ``kill(-1, SIGKILL)``) or
    the runner cannot restore the sandbox, that run is reported as killed and the next run
    starts a fresh bubblewrap. Runs are serialised; the object may be shared by threads.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        programs: list[Path],
        limits: SandboxLimits,
        *,
        fresh_per_run: bool = False,
    ) -> None:
        self._sandbox = sandbox
        self.fresh_per_run = fresh_per_run
        # The next runs' bubblewraps, starting (fresh_per_run): a start is mostly waiting on
        # the kernel (namespaces, mounts), so two at a time hide it behind the runs.
        self._spares: collections.deque[_Slot] = collections.deque()
        self._programs = programs
        self.limits = limits
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._req_w = self._resp_r = -1
        self._errors: IO[bytes] | None = None  # bubblewrap's stderr
        self._cgroup: Cgroup | None = None  # the current bubblewrap's, when cgroups work
        self._tmp_bytes = limits.tmp_bytes
        self._seq = 0
        self._answered = 0  # runs answered by the current bubblewrap
        self._closed = False
        self.starts = 0  # bubblewraps started (1 + restarts)
        self.runs = 0
        self.launcher: str | None = None  # see Sandbox.session
        self.files: Path | None = None
        self.hidden: tuple[tuple[str, bool], ...] = ()  # (relative path, is a folder)

    # -- life cycle -------------------------------------------------------------------------
    def __enter__(self) -> RunSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the session's sandbox (within a second; a run in progress reports a kill)."""
        self._closed = True
        while self._spares:
            _retire(self._spares.popleft(), self._sandbox)
        if self._lock.acquire(blocking=False):
            try:
                self._stop()
            finally:
                self._lock.release()
        elif (proc := self._proc) is not None:
            # A run is in flight: kill the sandbox; that run sees it die and cleans up.
            _kill_tree(proc)

    def _start(self) -> None:
        slot = None
        while self._spares and slot is None:
            try:
                slot = self._ready(self._spares.popleft())
            except SandboxError:
                # bubblewrap dies with the thread that started it (--die-with-parent): a
                # spare started by a thread that has ended since is gone. Take another.
                slot = None
        if slot is None:
            slot = self._ready(self._launch())
        self._proc, self._req_w, self._resp_r, self._errors, self._cgroup = slot
        self._answered = 0

    def _ready(self, slot: _Slot) -> _Slot:
        """``slot`` once its runner is ready; raises ``SandboxError`` when it never gets so."""
        if _await_ready(slot.resp_r, slot.proc):
            return slot
        text = ""
        if slot.errors is not None:
            with contextlib.suppress(OSError):
                slot.errors.seek(0)
                text = slot.errors.read(4096).decode(errors="replace").strip()
        _retire(slot, self._sandbox)
        raise SandboxError(
            f"the sandbox session failed to start (exit {slot.proc.returncode}): {text[:500]}"
        )

    def _launch(self) -> _Slot:
        """Start a bubblewrap for this session (its runner gets ready in the background)."""
        sb = self._sandbox
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        bpf_r = sb._bpf_pipe()
        served = [self.launcher] if self.launcher else None  # what the runner executes
        if sb.enabled:
            inside = self._inside_paths()
            files = (self.files, self.hidden) if self.files is not None else None
            cmd = sb._bwrap_command(
                self._tmp_bytes,
                list(zip(self._programs, inside, strict=True)),
                bpf_r,
                ["--serve", str(req_r), str(resp_w), "sandboxed", *(served or inside)],
                files=files,
            )
        else:
            paths = served or [str(p) for p in self._programs]
            cmd = [str(sb._runner), "--serve", str(req_r), str(resp_w), "plain", *paths]
        # bubblewrap's own messages; read only when the session dies. Open as long as it runs.
        errors = tempfile.TemporaryFile()  # noqa: SIM115
        pass_fds = [req_r, resp_w] if bpf_r is None else [req_r, resp_w, bpf_r]
        cgroup = Cgroup.create(run_memory_bytes(self.limits)) if sb.cgroups else None
        try:
            proc = sb._spawn(
                cmd,
                pass_fds,
                cgroup,
                cwd=self.files if not sb.enabled else None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        except BaseException:
            for fd in (req_w, resp_r):
                os.close(fd)
            errors.close()
            if cgroup is not None:
                cgroup.remove()
            raise
        finally:
            for fd in (req_r, resp_w, *([] if bpf_r is None else [bpf_r])):
                os.close(fd)
        os.set_blocking(req_w, False)
        os.set_blocking(resp_r, False)
        with sb._lock:
            sb._active.add(proc)
        self.starts += 1
        return _Slot(proc, req_w, resp_r, errors, cgroup)

    def _stop(self, keep_errors: bool = False) -> int | None:
        """Kill the current bubblewrap (if any) and forget it; its exit status. Its stderr is
        kept for :meth:`_stderr_text` when ``keep_errors``."""
        if not keep_errors and self._errors is not None:
            self._errors.close()
            self._errors = None
        proc = self._proc
        if proc is None:
            return None
        _retire(_Slot(proc, self._req_w, self._resp_r, None, self._cgroup), self._sandbox)
        self._proc, self._req_w, self._resp_r, self._cgroup = None, -1, -1, None
        return proc.returncode

    def _renew(self) -> None:
        """Fresh-per-run: retire this run's bubblewrap (its state goes with it) and start the
        next run's, which gets ready while the caller goes on (the other side's run), so it
        is there when the next run comes."""
        if self._proc is not None and self._proc.poll() is None:
            # Answered (or given up on): the next run gets another sandbox. The errors file
            # stays for the caller to read when the session died during the run.
            slot = _Slot(self._proc, self._req_w, self._resp_r, self._errors, self._cgroup)
            self._proc, self._req_w, self._resp_r = None, -1, -1
            self._errors, self._cgroup = None, None
            _retire(slot, self._sandbox)
        while not self._closed and not self._sandbox._closed and len(self._spares) < _SPARES:
            self._spares.append(self._launch())

    def program_path(self, index: int = 0) -> str:
        """The path under which the runs see the session's ``index``-th binary."""
        return self._inside_paths()[index] if self._sandbox.enabled else str(self._programs[index])

    def _inside_paths(self) -> list[str]:
        # A session of one binary shows it where a one-shot run does, /sandbox/prog, so a
        # program cannot tell which kind of run it is in from its own path.
        if len(self._programs) == 1:
            return ["/sandbox/prog"]
        return [f"/sandbox/prog-{i}" for i in range(len(self._programs))]

    def _stderr_text(self) -> str:
        errors = self._errors
        self._errors = None
        if errors is None:
            return ""
        try:
            errors.seek(0)
            return errors.read(4096).decode(errors="replace").strip()
        finally:
            errors.close()

    # -- running ----------------------------------------------------------------------------
    def run(
        self,
        index: int,
        stdin: bytes = b"",
        args: tuple[str, ...] | list[str] = (),
        limits: SandboxLimits | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        """Run the session's ``index``-th binary once; the same result :meth:`Sandbox.run`
        gives (``wall_seconds`` is the round trip, without a sandbox start-up).

        Raises ``SandboxError`` when the sandbox cannot start (or is closed) and ``Cancelled``
        when ``cancel`` is set during the run.
        """
        if not 0 <= index < len(self._programs):
            raise IndexError(f"no binary {index} in this session")
        limits = limits or self.limits
        argv0 = self._inside_paths()[index] if self._sandbox.enabled else str(self._programs[index])
        argv = [argv0, *args]
        if self.launcher is not None:
            if index != 0:
                raise IndexError("a session with a launcher runs it for its first binary only")
            argv = [self.launcher, *(a.replace(PROGRAM_PLACEHOLDER, argv0) for a in args)]
        if any("\0" in a for a in argv):
            raise ValueError("embedded null byte in an argument")
        blob = b"".join(os.fsencode(a) + b"\0" for a in argv)
        with self._lock:
            if self._closed or self._sandbox._closed:
                raise SandboxError("sandbox is closed")
            if limits.tmp_bytes != self._tmp_bytes:
                self._stop()  # /tmp's size is fixed when bubblewrap mounts it
                self._tmp_bytes = limits.tmp_bytes
            if self._proc is not None and self._proc.poll() is not None:
                self._stop()  # killed while idle (kill_all): no run of it was going
            if self._proc is None:
                self._start()
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            header = _REQUEST.pack(
                _REQUEST_MAGIC,
                self._seq,
                index,
                len(argv),
                max(1, int(limits.wall_seconds * 1e6)),
                limits.cpu_seconds,
                limits.memory_bytes,
                limits.max_processes,
                limits.file_size_bytes,
                limits.open_files,
                limits.output_bytes,
                len(blob),
                len(stdin),
            )
            self.runs += 1
            start = time.perf_counter()
            deadline = time.monotonic() + limits.wall_seconds + _SESSION_GRACE_SECONDS
            cgroup = self._cgroup
            used_before = cgroup.usage_us() if cgroup is not None else 0
            try:
                outcome, data = self._exchange(
                    header + blob + bytes(stdin), deadline, cancel, limits, used_before
                )
                used = cgroup.usage_us() - used_before if cgroup is not None else None
                out_of_memory = cgroup is not None and cgroup.out_of_memory()
            finally:
                if self.fresh_per_run:
                    self._renew()
            wall = time.perf_counter() - start
            enabled = self._sandbox.enabled
            if outcome == "ok":
                self._answered += 1
                fields = _RESPONSE.unpack_from(data)
                kind, value, utime, stime, maxrss, wall_us, runner_us, flags = fields[2:10]
                n_out, n_err = fields[11], fields[12]
                out = bytes(data[_RESPONSE.size : _RESPONSE.size + n_out])
                err = bytes(data[_RESPONSE.size + n_out : _RESPONSE.size + n_out + n_err])
                if flags & _RESP_ENDS:  # the runner could not restore the sandbox: start afresh
                    self._stop()
                if kind not in (_KIND_EXITED, _KIND_SIGNALED):
                    # The runner could not start the run (no pipe, no fork): like a crash.
                    return RunResult(None, signal.SIGKILL, out, err, 0.0, wall, sandboxed=enabled)
                cpu = (utime + stime) / 1e6
                if used is not None:
                    # The kernel's count for every process of the sandbox, less the runner's
                    # own work: nothing the program started can stay out of it.
                    cpu = max(cpu, (used - runner_us) / 1e6)
                result = _interpret(
                    value if kind == _KIND_EXITED else None,
                    value if kind == _KIND_SIGNALED else None,
                    cpu,
                    maxrss,
                    out,
                    err,
                    wall_us / 1e6,
                    bool(flags & _RESP_TIMED_OUT),
                    bool(flags & _RESP_TRUNCATED),
                    limits,
                    enabled,
                )
                if used is not None:
                    result = dataclasses.replace(result, cpu_source="cgroup")
                if out_of_memory and result.exit_code != 0 and not result.timed_out:
                    # The sandbox's memory limit was hit and the kernel killed for it.
                    result = dataclasses.replace(result, out_of_memory=True)
                return result
            fresh = self._answered == 0
            returncode = self._stop(keep_errors=True)
            text = self._stderr_text()
            if outcome == "cancelled":
                raise Cancelled("run cancelled")
            if outcome in ("timeout", "cpu"):
                cpu_used = (used or 0) / 1e6
                return RunResult(
                    None,
                    signal.SIGKILL,
                    b"",
                    b"",
                    cpu_used,
                    wall,
                    timed_out=True,
                    sandboxed=enabled,
                    stalled=outcome == "timeout",
                )
            # The session died. A program can only kill the runner (exit status 128 + signal,
            # or our own SIGKILL); anything else before a first answer is the sandbox failing.
            if fresh and returncode is not None and 0 <= returncode <= 128 and not self._closed:
                raise SandboxError(
                    f"the sandbox session failed to start (exit {returncode}): {text[:500]}"
                )
            if returncode is not None and returncode > 128:
                sig = returncode - 128
            elif returncode is not None and returncode < 0:
                sig = -returncode
            else:
                sig = signal.SIGKILL
            return RunResult(None, sig, b"", b"", 0.0, wall, sandboxed=enabled)

    def _exchange(
        self,
        request: bytes,
        deadline: float,
        cancel: threading.Event | None,
        limits: SandboxLimits,
        used_before: int = 0,
    ) -> tuple[str, bytearray]:
        """Send one request and read its response: ("ok", bytes) or ("dead" | "timeout" |
        "cpu" | "cancelled", partial bytes). "cpu": the sandbox's cgroup spent more than the
        run's CPU limit (RLIMIT_CPU holds one process; this holds all of them)."""
        cgroup = self._cgroup
        cpu_limit_us = limits.cpu_seconds * 1_000_000 + 100_000
        sel = selectors.DefaultSelector()
        view = memoryview(request)
        sent = 0
        data = bytearray()
        need = _RESPONSE.size
        have_header = False
        sel.register(self._req_w, selectors.EVENT_WRITE)
        sel.register(self._resp_r, selectors.EVENT_READ)
        try:
            while True:
                if not have_header and len(data) >= _RESPONSE.size:
                    fields = _RESPONSE.unpack_from(data)
                    magic, seq, n_out, n_err = fields[0], fields[1], fields[11], fields[12]
                    if (
                        magic != _RESPONSE_MAGIC
                        or seq != self._seq
                        or n_out + n_err > limits.output_bytes
                    ):
                        log.warning("session protocol error: %r", fields)
                        return "dead", data
                    have_header = True
                    need = _RESPONSE.size + n_out + n_err
                if have_header and len(data) >= need:
                    return "ok", data
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "timeout", data
                if cancel is not None and cancel.is_set():
                    return "cancelled", data
                if cgroup is not None and cgroup.usage_us() - used_before > cpu_limit_us:
                    return "cpu", data
                for key, _ in sel.select(timeout=min(remaining, 0.05)):
                    if key.fd == self._req_w:
                        try:
                            sent += os.write(self._req_w, view[sent : sent + (1 << 20)])
                        except BlockingIOError:
                            continue
                        except OSError:  # the runner is gone
                            return "dead", data
                        if sent >= len(view):
                            sel.unregister(self._req_w)
                        continue
                    try:
                        chunk = os.read(self._resp_r, max(65536, need - len(data)))
                    except BlockingIOError:
                        continue
                    if not chunk:
                        return "dead", data
                    data += chunk
        finally:
            sel.close()


def _check_reachable_by_nobody(folder: Path) -> None:
    """Run as root, bubblewrap runs as nobody: it can bind only a folder nobody can reach."""
    for part in (*reversed(folder.parents), folder):
        mode = part.stat().st_mode
        if not mode & 0o001 or (part == folder and not mode & 0o004):
            raise SandboxError(
                f"the sandbox runs as nobody (asmopt runs as root here) and cannot read {folder}: "
                f"{part} is not open to other users; chmod o+rx {part}, or run asmopt as an "
                "ordinary user"
            )


class _Command(list[str]):
    """A bubblewrap command line and the descriptors of the files it copies in
    (``--ro-bind-data``), which the spawn passes and then closes."""

    def __init__(self, args: Sequence[str] = ()) -> None:
        super().__init__(args)
        self.fds: list[int] = []

    def add_data(self, host_path: Path, inside: str) -> None:
        fd = os.open(host_path, os.O_RDONLY | os.O_CLOEXEC)
        self.fds.append(fd)
        self += ["--perms", "0555", "--ro-bind-data", str(fd), inside]


class _Slot(NamedTuple):
    """One started bubblewrap of a session: its process, request and response pipes, its
    stderr file and its cgroup."""

    proc: subprocess.Popen[bytes]
    req_w: int
    resp_r: int
    errors: IO[bytes] | None
    cgroup: Cgroup | None


def _await_ready(resp_r: int, proc: subprocess.Popen[bytes]) -> bool:
    """Wait for the runner's ready word; False when the sandbox died or never got ready."""
    deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
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
    return struct.unpack("=I", got)[0] == _READY_MAGIC


def _retire(slot: _Slot, sandbox: Sandbox) -> None:
    """Kill a session's bubblewrap with everything in it, and free what it held."""
    if slot.cgroup is not None:
        slot.cgroup.kill()  # everything in it at once, before bubblewrap's own teardown
    _kill_tree(slot.proc)
    try:
        slot.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log.warning("session sandbox %d did not exit after SIGKILL", slot.proc.pid)
    if slot.cgroup is not None:
        slot.cgroup.remove()
    with sandbox._lock:
        sandbox._active.discard(slot.proc)
    for fd in (slot.req_w, slot.resp_r):
        with contextlib.suppress(OSError):
            os.close(fd)
    if slot.errors is not None:
        slot.errors.close()


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
    return _interpret(
        int(value) if kind == "exited" else None,
        int(value) if kind == "signaled" else None,
        (int(utime) + int(stime)) / 1e6,
        int(maxrss),
        stdout,
        stderr,
        wall,
        timed_out,
        truncated,
        limits,
        sandboxed,
    )


def _interpret(
    code: int | None,
    sig: int | None,
    cpu: float,
    rss: int,
    stdout: bytes,
    stderr: bytes,
    wall: float,
    timed_out: bool,
    truncated: bool,
    limits: SandboxLimits,
    sandboxed: bool,
) -> RunResult:
    """A RunResult from what the runner reported (one-shot and session runs alike)."""
    if sig in (signal.SIGXCPU,):
        timed_out = True
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
