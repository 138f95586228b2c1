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

The pieces: ``limits.py`` (limits, paths, errors), ``bwrap.py`` (the bubblewrap command
line), ``seccomp.py`` (the filter), ``runner.py`` (building the runner, reading its reports),
``session.py`` (:class:`RunSession`); this module is the :class:`Sandbox` that uses them,
and the one other layers import from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

from asmopt.executor.bwrap import (
    Bubblewrap,
    Command,
    bubblewrap_path,
    check_reachable_by_nobody,
    kill_tree,
)
from asmopt.executor.cgroup import Cgroup, cgroup_root
from asmopt.executor.limits import (
    NOBODY,
    PROGRAM_PLACEHOLDER,
    SANDBOX_FILES_DIR,
    SANDBOX_OUTPUT_DIR,
    SANDBOX_WORK_DIR,
    Cancelled,
    GiB,
    KiB,
    MiB,
    SandboxError,
    SandboxLimits,
    SandboxUnavailable,
    run_memory_bytes,
    runner_limit_args,
)
from asmopt.executor.results import RunResult
from asmopt.executor.runner import (
    Observed,
    build_runner,
    communicate,
    one_shot_result,
    read_all,
)
from asmopt.executor.seccomp import BLOCKED_SYSCALLS, seccomp_program
from asmopt.executor.session import RunSession

# What other layers import from here; the pieces live in the modules named above.
__all__ = [
    "BLOCKED_SYSCALLS",
    "NOBODY",
    "PROGRAM_PLACEHOLDER",
    "SANDBOX_FILES_DIR",
    "SANDBOX_OUTPUT_DIR",
    "SANDBOX_WORK_DIR",
    "Cancelled",
    "GiB",
    "KiB",
    "MiB",
    "RunSession",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "SandboxUnavailable",
    "bubblewrap_path",
    "build_runner",
    "run_memory_bytes",
    "seccomp_program",
]


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
            self._bwrap = Bubblewrap(bubblewrap_path(), self._runner, self._empty_dir)
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
            kill_tree(proc)

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
        runner_args = [str(status_fd), *runner_limit_args(limits)]
        if not self.enabled:
            return [str(self._runner), *runner_args, str(program), *args]
        return self._bwrap.command(
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
        data_fds = cmd.fds if isinstance(cmd, Command) else []
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
                check_reachable_by_nobody(files)
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
        runner_args = runner_limit_args(limits)

        def command(status_w: int, bpf_r: int | None) -> list[str]:
            if not self.enabled:
                return [str(self._runner), str(status_w), *runner_args, *argv]
            return self._bwrap.command(
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
            stdout, stderr, timed_out, truncated, cancelled = communicate(
                proc, stdin, limits, cancel
            )
            proc.wait()
            wall = time.perf_counter() - start
            status = read_all(status_r)
        finally:
            os.close(status_r)
            with self._lock:
                self._active.discard(proc)
        if cancelled:
            raise Cancelled("run cancelled")
        seen = Observed(stdout, stderr, wall, timed_out, truncated)
        return one_shot_result(status, proc.returncode, seen, limits, self.enabled)
