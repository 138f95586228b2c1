"""Optimization jobs, each in a worker process (:mod:`asmopt.server.worker`).

Policy: one job runs at a time, because concurrent jobs would benchmark against each other
on a shared machine; more jobs wait in a FIFO queue (stage ``queued``). A second job for a
function that is already queued or running is refused with a message. A cancel removes a
queued job at once; a running one gets a cancel message and, after :data:`KILL_AFTER`
seconds, a hard kill of its whole process tree, so nothing it started lives on for more than
a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asmopt.model.search.stages import Stage
from asmopt.server import proctree
from asmopt.server.messages import (
    CancelJob,
    ErrorMessage,
    JobEnd,
    MessageError,
    ProgressMessage,
    ResultMessage,
    RunJob,
    decode,
    encode,
)

logger = logging.getLogger(__name__)

KILL_AFTER = 0.6  # seconds between the cancel message and the hard kill
MAX_RUNNING = 1
_LINE_LIMIT = 256 * 1024 * 1024  # a result line carries whole assembly files


@dataclass
class Job:
    """One requested run: optimize ``function`` (None: the whole file) of ``source``."""

    id: int
    uri: str
    source: Path
    function: str | None
    target: str
    workspace: Path
    settings: dict[str, Any]
    scratch: Path | None = None  # the server's scratch folder: the job's TMPDIR goes there
    tmpdir: Path | None = None
    state: str = "queued"  # queued | running | done
    stage: Stage = Stage.QUEUED
    message: str = ""
    so_far: str = ""  # "1.65x so far, still measuring", once a speed-up is verified
    cancelled: bool = False
    token: str | None = None
    pid: int | None = None
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def key(self) -> tuple[str, str | None]:
        return (str(self.source), self.function)

    @property
    def what(self) -> str:
        return f"`{self.function}`" if self.function else self.source.name


CANCELLED = ResultMessage(None, "cancelled", cancelled=True)

Listener = Callable[[Job], None]
DoneListener = Callable[[Job, JobEnd], None]


def worker_command() -> list[str]:
    return [sys.executable, "-m", "asmopt.server.worker"]


class JobManager:
    """Queue, run and cancel jobs; tells its listeners about every change."""

    def __init__(self, on_change: Listener, on_done: DoneListener) -> None:
        self._on_change = on_change
        self._on_done = on_done
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}
        self._queue: list[Job] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---------------------------------------------------------------- queries

    def active(self) -> list[Job]:
        """Running and queued jobs, oldest first."""
        return sorted(self._jobs.values(), key=lambda j: j.id)

    def find(self, source: str, function: str | None) -> Job | None:
        return next((j for j in self._jobs.values() if j.key == (source, function)), None)

    def for_source(self, source: str) -> list[Job]:
        return [j for j in self._jobs.values() if str(j.source) == source]

    def by_token(self, token: Any) -> Job | None:
        return next((j for j in self._jobs.values() if j.token == token), None)

    # ---------------------------------------------------------------- submitting

    def submit(self, **kwargs: Any) -> Job | str:
        """Queue a job; returns it, or a message saying why it was refused."""
        source, function = str(kwargs["source"]), kwargs.get("function")
        existing = self.find(source, function)
        if existing is not None:
            return (
                f"{existing.what} is already being optimized ({existing.stage}); "
                "cancel that run first (asmopt.cancel) to start again"
            )
        job = Job(id=next(self._ids), **kwargs)
        self._jobs[job.id] = job
        self._queue.append(job)
        self._spawn(self._pump())
        return job

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(self) -> None:
        running = sum(1 for j in self._jobs.values() if j.state == "running")
        while self._queue and running < MAX_RUNNING:
            job = self._queue.pop(0)
            job.state = "running"
            running += 1
            self._spawn(self._run(job))

    # ---------------------------------------------------------------- running

    async def _run(self, job: Job) -> None:
        result: JobEnd
        try:
            result = await self._run_worker(job)
        except Exception as err:  # never leave a job (and its progress) hanging
            logger.exception("job %s failed", job.id)
            result = ErrorMessage(f"asmopt could not run the job: {err}")
        finally:
            await self._kill_if_alive(job)
            await asyncio.to_thread(_remove_tmpdir, job)
        if job.cancelled and isinstance(result, ResultMessage):
            result = CANCELLED
        job.state = "done"
        self._jobs.pop(job.id, None)
        job.finished.set()
        try:
            self._on_done(job, result)
        finally:
            self._spawn(self._pump())

    async def _run_worker(self, job: Job) -> JobEnd:
        # Everything the optimizer writes to the temporary folder (candidates, binaries,
        # sandboxes) goes into one folder per job, removed when the job ends however it
        # ends: a killed worker cannot clean up after itself.
        job.tmpdir = Path(tempfile.mkdtemp(prefix=f"asmopt-job-{job.id}-", dir=job.scratch))
        job.tmpdir.chmod(0o711)  # as /tmp: the sandbox's user must reach what is made inside
        env = {**os.environ, "TMPDIR": str(job.tmpdir)}
        process = await asyncio.create_subprocess_exec(
            *worker_command(),
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own group: a kill reaches what it started
            limit=_LINE_LIMIT,
        )
        job.process = process
        job.pid = process.pid
        request = RunJob(
            source=str(job.source),
            function=job.function,
            settings=job.settings,
            workspace=str(job.workspace),
            target=job.target,
        )
        assert process.stdin is not None and process.stdout is not None
        stderr_tail: list[str] = []
        stderr_task = asyncio.ensure_future(_drain(process.stderr, stderr_tail))
        try:
            process.stdin.write((json.dumps(encode(request)) + "\n").encode())
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        if job.cancelled:  # cancelled while the process started
            await self._send_cancel(job)
        result: JobEnd | None = None
        while True:
            try:
                line = await process.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                result = ErrorMessage("the worker sent a malformed message")
                break
            if not line:
                break
            try:
                message = decode(json.loads(line))
            except (ValueError, MessageError) as err:
                logger.warning("job %s: %s", job.id, err)
                continue
            if isinstance(message, ProgressMessage):
                if not job.cancelled:
                    job.stage = message.stage
                    job.message = message.message
                    job.so_far = message.so_far or job.so_far
                    self._on_change(job)
            elif isinstance(message, ResultMessage | ErrorMessage):
                result = message
                break
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.wait(), timeout=KILL_AFTER + 1)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stderr_task, timeout=0.5)
        if result is None:
            if job.cancelled:
                return CANCELLED
            code = process.returncode
            tail = " ".join(stderr_tail[-3:]).strip()
            return ErrorMessage(f"the optimizer process ended unexpectedly (exit {code}) {tail}")
        return result

    # ---------------------------------------------------------------- cancelling

    async def cancel(self, job: Job) -> None:
        """Cancel ``job``: drop it from the queue, or stop its worker (message, then kill)."""
        if job.cancelled or job.state == "done":
            return
        job.cancelled = True
        job.stage = Stage.CANCELLING
        if job.state == "queued":
            with contextlib.suppress(ValueError):
                self._queue.remove(job)
            job.state = "done"
            self._jobs.pop(job.id, None)
            job.finished.set()
            self._on_done(job, CANCELLED)
            return
        self._on_change(job)
        if job.process is not None:
            await self._send_cancel(job)

    async def _send_cancel(self, job: Job) -> None:
        process = job.process
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(Exception):
                process.stdin.write((json.dumps(encode(CancelJob())) + "\n").encode())
                await process.stdin.drain()
        self._spawn(self._kill_later(job))

    async def _kill_later(self, job: Job) -> None:
        await asyncio.sleep(KILL_AFTER)
        await self._kill_if_alive(job)

    @staticmethod
    async def _kill_if_alive(job: Job) -> None:
        # Only while the worker is unreaped: its pid cannot have been reused yet.
        if job.pid is not None and job.process is not None and job.process.returncode is None:
            await asyncio.to_thread(proctree.kill_tree, job.pid)

    def kill_all(self) -> None:
        """Kill every worker tree now (server shutdown); blocking but quick."""
        self._queue.clear()
        for job in list(self._jobs.values()):
            job.cancelled = True
            if job.pid is not None and job.process is not None and job.process.returncode is None:
                proctree.kill_tree(job.pid)
            _remove_tmpdir(job)


def _remove_tmpdir(job: Job) -> None:
    if job.tmpdir is not None:
        shutil.rmtree(job.tmpdir, ignore_errors=True)


async def _drain(stream: asyncio.StreamReader | None, tail: list[str]) -> None:
    if stream is None:
        return
    while True:
        line = await stream.readline()
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip()
        tail.append(text)
        del tail[:-20]
        if os.environ.get("ASMOPT_SERVER_DEBUG"):
            print(f"[worker] {text}", file=sys.stderr)


def job_settings(settings: Any) -> dict[str, Any]:
    """Settings as the worker receives them (snake_case, JSON-safe)."""
    return settings.to_dict()
