"""The asmopt language server: a thin pygls server that owns the shared state, and one module
per feature under :mod:`asmopt.server.features` that hooks into it.

The event loop only routes messages and answers from memory: parsing assembly, checking it
with the assembler, reading the result store, building with ``-g`` and llvm-mca all run in
threads, and optimization jobs run in worker processes (:mod:`asmopt.server.jobs`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from asmopt import __version__
from asmopt.model.settings import CONFIG_FILE, Workspace, config_root
from asmopt.server.documents import Buffer, DocumentStore, FunctionInfo, Language
from asmopt.server.jobs import JobManager
from asmopt.server.options import ServerOptions
from asmopt.server.profiles import ProfileIndex
from asmopt.server.protocol import AsmoptProtocol, run_until_exit, serve_stdio
from asmopt.server.results import ResultIndex, source_key

logger = logging.getLogger(__name__)
T = TypeVar("T")

SCRATCH_PREFIX = "asmopt-server-"
PARSE_IN_PROCESS_CHARS = 300_000  # bigger assembly buffers are parsed in a process of their own

STATUS = "asmopt/status"
CANDIDATE = "asmopt/candidate"


class AsmoptLanguageServer(LanguageServer):
    """Shared state of the server; features live in :mod:`asmopt.server.features`."""

    def __init__(self) -> None:
        super().__init__(
            "asmopt",
            __version__,
            protocol_cls=AsmoptProtocol,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        )
        self.documents = DocumentStore()
        self.options = ServerOptions()
        self.results = ResultIndex()
        # Instruction profiles by source (features/profile.py makes them, lenses show them).
        self.profiles = ProfileIndex()
        self.profiler: Any = None
        self.jobs = JobManager(self._job_changed, self._job_done)
        # Features subscribe to job events (progress, lenses, diagnostics).
        self.job_listeners: list[Callable[[Any], None]] = []
        self.done_listeners: list[Callable[[Any, Any], None]] = []
        self._debounced: dict[tuple[str, str], asyncio.Task[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresh_pending = False
        self._workspaces: dict[Path, tuple[float, Workspace]] = {}
        self._warned: set[str] = set()
        # Set once the editor's settings have been pulled after `initialized`: a run asked
        # for before that must not start with the defaults.
        self.settings_ready = asyncio.Event()
        # Per-buffer caches of work done off the loop, by uri: (version, value).
        self.assembler_checks: dict[str, tuple[int | None, Any]] = {}
        self.debug_builds: dict[str, tuple[Any, ...]] = {}  # (version, future, text)
        self.estimates: dict[tuple[str, str], Any] = {}  # (asm hash, function) -> future
        self._parse_pool: Any = None
        self._scratch: Path | None = None
        # Called once when the server stops (shutdown, exit or end of input): each removes
        # what it left on disk or kills what it started.
        self.cleanups: list[Callable[[], None]] = []
        self._cleaned = False

    def scratch(self) -> Path:
        """This server's private temporary folder (``asmopt-server-<pid>-*``): hover builds
        and each job's TMPDIR live in it, and it is removed when the server stops. Folders
        of servers that were killed are removed when the next one starts."""
        if self._scratch is None:
            import tempfile

            _remove_orphaned_scratch()
            self._scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
            # Searchable by others (not listable), as /tmp is: the sandbox's user must reach
            # the folders the executor makes inside.
            self._scratch.chmod(0o711)
        return self._scratch

    def cleanup(self) -> None:
        """Stop jobs, remove temporary files, stop helper processes (idempotent)."""
        if self._cleaned:
            return
        self._cleaned = True
        self.jobs.kill_all()
        for cleanup in self.cleanups:
            try:
                cleanup()
            except Exception:
                logger.exception("cleanup failed")
        if self._parse_pool is not None:
            self._parse_pool.shutdown(wait=False, cancel_futures=True)
            self._parse_pool = None
        if self._scratch is not None:
            import shutil

            shutil.rmtree(self._scratch, ignore_errors=True)

    def start_io(self, stdin: Any = None, stdout: Any = None) -> None:  # type: ignore[override]
        """Serve on stdio with asmopt's framing (:mod:`asmopt.server.protocol`)."""
        from pygls.io_ import StdoutWriter

        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        try:
            assert isinstance(self.protocol, AsmoptProtocol)  # protocol_cls, given above
            run_until_exit(serve_stdio(self.protocol, stdin.fileno() if stdin else None))
        except BrokenPipeError:
            logger.error("the client went away")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.cleanup()
            self.shutdown()

    # ---------------------------------------------------------------- messages

    def show(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=f"asmopt: {message}"))

    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.show(message, types.MessageType.Warning)

    def log(self, message: str) -> None:
        self.window_log_message(types.LogMessageParams(type=types.MessageType.Log, message=message))

    # ---------------------------------------------------------------- tasks

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; an exception is logged, never raised."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task failed", exc_info=task.exception())
            self.log(f"asmopt background task failed: {task.exception()!r}")

    def debounce(
        self, uri: str, what: str, delay: float, job: Callable[[], Awaitable[Any]]
    ) -> None:
        """Run ``job`` after ``delay`` seconds unless the same (uri, what) is asked again."""
        key = (uri, what)
        old = self._debounced.pop(key, None)
        if old is not None:
            old.cancel()

        async def later() -> None:
            await asyncio.sleep(delay)
            if self._debounced.get(key) is task:
                del self._debounced[key]
            await job()

        task = self.spawn(later())
        self._debounced[key] = task

    def forget(self, uri: str) -> None:
        """Cancel the pending work of a closed buffer."""
        for key in [k for k in self._debounced if k[0] == uri]:
            self._debounced.pop(key).cancel()

    @staticmethod
    async def in_thread(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    # ---------------------------------------------------------------- documents

    @property
    def position_encoding(self) -> str:
        encoding = self.server_capabilities.position_encoding
        value = getattr(encoding, "value", encoding)
        return str(value or "utf-16")

    async def functions(self, buffer: Buffer, *, exact: bool = False) -> list[FunctionInfo]:
        """The buffer's functions. For display (``exact`` false) an assembly buffer answers
        at once with its last parse moved along with the edits since, once it has one;
        ``exact`` waits for a parse of the current text (off the event loop)."""
        ready = buffer.functions_if_ready()
        if ready is not None:
            return ready
        if not exact and buffer.asm_parsed_once:
            return buffer.stale_functions()
        return await self.parse_asm(buffer)

    async def parse_asm(self, buffer: Buffer) -> list[FunctionInfo]:
        """Parse an assembly buffer's current text exactly: in a thread, or for a big one in
        a process of its own (a parse of 100,000 lines takes over a second of CPU, which in
        a thread would slow every request through the GIL)."""
        from asmopt.server.documents import parse_asm

        generation, lines = buffer.asm_generation, list(buffer.lines)
        text = "".join(lines)
        if len(text) < PARSE_IN_PROCESS_CHARS:
            parsed = await self.in_thread(parse_asm, text)
        else:
            loop = asyncio.get_running_loop()
            parsed = await loop.run_in_executor(self.parse_pool(), parse_asm, text)
        return buffer.take_asm_parse(generation, lines, parsed)

    def parse_pool(self) -> Any:
        if self._parse_pool is None:
            import concurrent.futures
            import multiprocessing

            self._parse_pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        return self._parse_pool

    @staticmethod
    def path_of(uri: str) -> Path | None:
        """The file behind a ``file:`` URI; None for other schemes (untitled buffers)."""
        if not uri.startswith("file:"):
            return None
        path = to_fs_path(uri)
        return Path(path) if path else None

    def source_of(self, uri: str) -> str | None:
        path = self.path_of(uri)
        return source_key(path) if path is not None else None

    def workspace_root(self, path: Path) -> Path:
        """The editor's workspace folder holding ``path`` (the deepest), else the file's
        folder: the search for ``asmopt.toml`` stops there (see :meth:`workspace_for`)."""
        best: Path | None = None
        folders = [self.path_of(f.uri) for f in self.workspace.folders.values()]
        root_path = getattr(self.workspace, "root_path", None)
        if root_path:
            folders.append(Path(root_path))
        resolved = path.resolve()
        for folder in folders:
            if folder is None:
                continue
            folder = folder.resolve()
            if resolved.is_relative_to(folder) and (
                best is None or len(folder.parts) > len(best.parts)
            ):
                best = folder
        return best or resolved.parent

    def workspace_for(self, path: Path) -> Workspace:
        """The file's workspace as the CLI finds it (:class:`Workspace`: the nearest
        ``asmopt.toml`` upwards, within the editor's folder, and the store beside it), read
        leniently (a broken ``asmopt.toml`` is its ``problem``) and cached until the file
        changes; blocking."""
        top = self.workspace_root(path)
        root = config_root(path, top)
        try:
            mtime = (root / CONFIG_FILE).stat().st_mtime
        except OSError:
            mtime = -1.0
        cached = self._workspaces.get(root)
        if cached is None or cached[0] != mtime:
            cached = (mtime, Workspace.of(path, top, strict=False))
            self._workspaces[root] = cached
        return cached[1]

    def target_for(self, path: Path) -> tuple[Any, Any, str | None]:
        """(config, target, config problem) for a file; blocking (see :meth:`workspace_for`).
        ``config.root`` is the workspace's root, where its result store lives."""
        workspace = self.workspace_for(path)
        return workspace.config, workspace.config.target_for(path), workspace.problem

    # ---------------------------------------------------------------- views

    def refresh_views(self) -> None:
        """Ask the client to re-request lenses and inlay hints (coalesced)."""
        if self._refresh_pending:
            return
        self._refresh_pending = True

        async def send() -> None:
            await asyncio.sleep(0.05)
            self._refresh_pending = False
            caps = self.client_capabilities.workspace
            if caps and caps.code_lens and caps.code_lens.refresh_support:
                await self._request_quietly(self.workspace_code_lens_refresh_async)
            if caps and caps.inlay_hint and caps.inlay_hint.refresh_support:
                await self._request_quietly(self.workspace_inlay_hint_refresh_async)

        self.spawn(send())

    @staticmethod
    async def _request_quietly(request: Callable[..., Awaitable[Any]]) -> None:
        try:
            await asyncio.wait_for(request(None), timeout=10)
        except Exception as err:  # a client that cannot refresh just keeps old lenses
            logger.debug("refresh failed: %s", err)

    def report_server_error(self, error: Exception, source: Any) -> None:
        """pygls' report of an error to the client, unless the client has gone."""
        assert isinstance(self.protocol, AsmoptProtocol)
        if self.protocol.client_gone:
            logger.error("%s", error)
            return
        super().report_server_error(error, source)

    def send_status(self, state: str | None = None) -> None:
        jobs = [
            {"uri": j.uri, "function": j.function, "stage": j.stage} for j in self.jobs.active()
        ]
        if state is None:
            state = "running" if jobs else "idle"
        self.protocol.notify(STATUS, {"state": state, "jobs": jobs})

    # ---------------------------------------------------------------- jobs

    def _job_changed(self, job: Any) -> None:
        for listener in self.job_listeners:
            try:
                listener(job)
            except Exception:
                logger.exception("job listener failed")

    def _job_done(self, job: Any, result: Any) -> None:
        for listener in self.done_listeners:
            try:
                listener(job, result)
            except Exception:
                logger.exception("job listener failed")

    def buffers_of_source(self, source: str) -> list[Buffer]:
        return [b for b in self.documents if self.source_of(b.uri) == source]


def _remove_orphaned_scratch() -> None:
    """Remove the scratch folders of asmopt servers that no longer run."""
    import shutil
    import tempfile

    root = Path(tempfile.gettempdir())
    try:
        entries = list(root.glob(f"{SCRATCH_PREFIX}*"))
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(entry, ignore_errors=True)


def create_server() -> AsmoptLanguageServer:
    """A server with every feature registered."""
    from asmopt.server import features

    server = AsmoptLanguageServer()
    features.register_all(server)
    return server


def main(tcp: tuple[str, int] | None = None, log_level: str = "warning") -> None:
    """Serve on stdio, or on TCP for debugging; logs go to stderr at ``log_level``."""
    logging.basicConfig(level=log_level.upper(), format="%(name)s: %(message)s")
    server = create_server()
    if tcp is not None:
        server.start_tcp(*tcp)
    else:
        server.start_io()


__all__ = ["CANDIDATE", "STATUS", "AsmoptLanguageServer", "Language", "create_server", "main"]
