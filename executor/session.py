"""Many runs in one sandbox: :class:`RunSession`, made by ``Sandbox.session``.

One bubblewrap whose runner (``runner.c``, serve mode) forks each run, applies its limits,
enforces its wall-clock limit and output cap, then kills and reaps every process the run
left and wipes ``/tmp``, new files in ``/dev`` and System V IPC objects. The host speaks to
it over two pipes (``runner.pack_request`` / ``runner.Response``). A session that a program
broke restarts by itself; a fresh-per-run session (the judge's) gives every run a bubblewrap
of its own, started ahead of time (the *spares*).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, NamedTuple

from asmopt.executor.bwrap import kill_tree
from asmopt.executor.cgroup import Cgroup
from asmopt.executor.limits import (
    PROGRAM_PLACEHOLDER,
    Cancelled,
    SandboxError,
    SandboxLimits,
    run_memory_bytes,
)
from asmopt.executor.results import RunResult
from asmopt.executor.runner import (
    KIND_EXITED,
    KIND_SIGNALED,
    RESP_ENDS,
    RESP_TIMED_OUT,
    RESP_TRUNCATED,
    RESPONSE,
    RESPONSE_MAGIC,
    Observed,
    Response,
    await_ready,
    pack_request,
    run_result,
)

if TYPE_CHECKING:
    from asmopt.executor.sandbox import Sandbox

log = logging.getLogger(__name__)

_SPARES = 2  # bubblewraps a fresh-per-run session keeps starting ahead of its runs
# How long past a run's wall limit the host waits for the runner's answer before it kills the
# session itself (a program can stop the runner with SIGSTOP; the runner also needs time to
# kill, reap and wipe).
SESSION_GRACE_SECONDS = 2.0


class RunSession:
    """One sandbox (one bubblewrap, same flags and seccomp filter as :meth:`Sandbox.run`)
    serving many runs of a fixed list of binaries; made by :meth:`Sandbox.session`.

    The runner inside forks each run, applies its limits, enforces its wall-clock limit and
    output cap, then kills and reaps every process the run left and wipes ``/tmp``, new files
    in ``/dev`` and System V IPC objects, so that nothing of one run is there for the next.
    When a program breaks the session (it killed the runner, e.g. ``kill(-1, SIGKILL)``) or
    the runner cannot restore the sandbox, that run is reported as killed and the next run
    starts a fresh bubblewrap. Runs are serialised; the object may be shared by threads, but
    a bubblewrap dies with the thread that started it (``--die-with-parent``), and with
    ``fresh_per_run`` each run starts the next runs' bubblewraps in its own thread: a spare
    whose thread has ended is never used (another is started), so a session run from
    short-lived threads is correct but starts its sandboxes at the run's expense.
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
            kill_tree(proc)

    def _start(self) -> None:
        slot = None
        while self._spares and slot is None:
            spare = self._spares.popleft()
            if spare.starter is not None and not spare.starter.is_alive():
                # bubblewrap dies with the thread that started it (--die-with-parent): a
                # spare whose thread has ended is dead, or about to be (the kernel's signal
                # may come just after it was seen ready, under the run). Take another.
                _retire(spare, self._sandbox)
                continue
            try:
                slot = self._ready(spare)
            except SandboxError:
                slot = None  # it died some other way: take another
        if slot is None:
            slot = self._ready(self._launch())
        self._proc, self._req_w, self._resp_r = slot.proc, slot.req_w, slot.resp_r
        self._errors, self._cgroup = slot.errors, slot.cgroup
        self._answered = 0

    def _ready(self, slot: _Slot) -> _Slot:
        """``slot`` once its runner is ready; raises ``SandboxError`` when it never gets so."""
        if await_ready(slot.resp_r, slot.proc):
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
            cmd: list[str] = sb._bwrap.command(
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
        return _Slot(proc, req_w, resp_r, errors, cgroup, threading.current_thread())

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

    @property
    def programs(self) -> tuple[Path, ...]:
        """The binaries it runs, as the host sees them."""
        return tuple(self._programs)

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
        when ``cancel`` is set during the run, or while its sandbox starts (a job that stops
        kills every sandbox it has, those still starting too).
        """
        if not 0 <= index < len(self._programs):
            raise IndexError(f"no binary {index} in this session")
        limits = limits or self.limits
        argv = self._argv(index, args)
        blob = b"".join(os.fsencode(a) + b"\0" for a in argv)
        with self._lock:
            try:
                self._ensure_started(limits)
            except SandboxError:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("run cancelled while its sandbox started") from None
                raise
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            request = pack_request(self._seq, index, len(argv), blob, stdin, limits)
            self.runs += 1
            start = time.perf_counter()
            deadline = time.monotonic() + limits.wall_seconds + SESSION_GRACE_SECONDS
            cgroup = self._cgroup
            used_before = cgroup.usage_us() if cgroup is not None else 0
            try:
                outcome, data = self._exchange(request, deadline, cancel, limits, used_before)
                used = cgroup.usage_us() - used_before if cgroup is not None else None
                out_of_memory = cgroup is not None and cgroup.out_of_memory()
            finally:
                if self.fresh_per_run:
                    self._renew()
            wall = time.perf_counter() - start
            if outcome == "ok":
                self._answered += 1
                return self._answer(data, limits, wall, used, out_of_memory)
            return self._no_answer(outcome, wall, used)

    def _argv(self, index: int, args: tuple[str, ...] | list[str]) -> list[str]:
        """What the runner executes for a run of binary ``index`` with ``args``."""
        argv0 = self.program_path(index)
        argv = [argv0, *args]
        if self.launcher is not None:
            if index != 0:
                raise IndexError("a session with a launcher runs it for its first binary only")
            argv = [self.launcher, *(a.replace(PROGRAM_PLACEHOLDER, argv0) for a in args)]
        if any("\0" in a for a in argv):
            raise ValueError("embedded null byte in an argument")
        return argv

    def _ensure_started(self, limits: SandboxLimits) -> None:
        """A live bubblewrap whose ``/tmp`` has the size ``limits`` asks for (under the lock)."""
        if self._closed or self._sandbox._closed:
            raise SandboxError("sandbox is closed")
        if limits.tmp_bytes != self._tmp_bytes:
            self._stop()  # /tmp's size is fixed when bubblewrap mounts it
            self._tmp_bytes = limits.tmp_bytes
        if self._proc is not None and self._proc.poll() is not None:
            self._stop()  # killed while idle (kill_all): no run of it was going
        if self._proc is None:
            self._start()

    def _answer(
        self,
        data: bytearray,
        limits: SandboxLimits,
        wall: float,
        used: int | None,
        out_of_memory: bool,
    ) -> RunResult:
        """The result of a run the runner answered; ``used``: the cgroup's CPU microseconds
        over the run (None without a cgroup)."""
        enabled = self._sandbox.enabled
        response = Response.parse(data)
        out, err = response.outputs(data)
        if response.flags & RESP_ENDS:  # the runner could not restore the sandbox: start afresh
            self._stop()
        if response.kind not in (KIND_EXITED, KIND_SIGNALED):
            # The runner could not start the run (no pipe, no fork): like a crash.
            return RunResult(
                None, signal.SIGKILL, out, err, 0.0, wall, sandboxed=enabled, lost=True
            )
        cpu = (response.utime_us + response.stime_us) / 1e6
        if used is not None:
            # The kernel's count for every process of the sandbox, less the runner's
            # own work: nothing the program started can stay out of it.
            cpu = max(cpu, (used - response.runner_cpu_us) / 1e6)
        result = run_result(
            response.value if response.kind == KIND_EXITED else None,
            response.value if response.kind == KIND_SIGNALED else None,
            cpu,
            response.maxrss_kib,
            Observed(
                out,
                err,
                response.wall_us / 1e6,
                timed_out=bool(response.flags & RESP_TIMED_OUT),
                truncated=bool(response.flags & RESP_TRUNCATED),
            ),
            limits,
            enabled,
        )
        if used is not None:
            result = dataclasses.replace(result, cpu_source="cgroup")
        if out_of_memory and result.exit_code != 0 and not result.timed_out:
            # The sandbox's memory limit was hit and the kernel killed for it.
            result = dataclasses.replace(result, out_of_memory=True)
        return result

    def _no_answer(self, outcome: str, wall: float, used: int | None) -> RunResult:
        """The result of a run the runner did not answer (``outcome``: see :meth:`_exchange`);
        the bubblewrap is gone after it."""
        enabled = self._sandbox.enabled
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
        return RunResult(None, sig, b"", b"", 0.0, wall, sandboxed=enabled, lost=True)

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
        need = RESPONSE.size
        have_header = False
        sel.register(self._req_w, selectors.EVENT_WRITE)
        sel.register(self._resp_r, selectors.EVENT_READ)
        try:
            while True:
                if not have_header and len(data) >= RESPONSE.size:
                    header = Response.parse(data)
                    n_out, n_err = header.stdout_len, header.stderr_len
                    if (
                        header.magic != RESPONSE_MAGIC
                        or header.seq != self._seq
                        or n_out + n_err > limits.output_bytes
                    ):
                        log.warning("session protocol error: %r", header)
                        return "dead", data
                    have_header = True
                    need = RESPONSE.size + n_out + n_err
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


class _Slot(NamedTuple):
    """One started bubblewrap of a session: its process, request and response pipes, its
    stderr file and its cgroup."""

    proc: subprocess.Popen[bytes]
    req_w: int
    resp_r: int
    errors: IO[bytes] | None
    cgroup: Cgroup | None
    # The thread that started it: bubblewrap dies with it (--die-with-parent).
    starter: threading.Thread | None = None


def _retire(slot: _Slot, sandbox: Sandbox) -> None:
    """Kill a session's bubblewrap with everything in it, and free what it held."""
    if slot.cgroup is not None:
        slot.cgroup.kill()  # everything in it at once, before bubblewrap's own teardown
    kill_tree(slot.proc)
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
