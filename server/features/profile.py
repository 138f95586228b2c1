"""Where the time goes, before any optimizing: each function's share of the instructions its
program executes on its tests (callgrind, in the sandbox; instructions, not time), shown in
its lens and hover, and ``asmopt.hottestFunctions``, the file's functions hottest first.

When a C or assembly file whose target has tests is opened (setting ``profileOnOpen``,
default on), the server looks for the target's profile in the workspace store under the key
of its sources and tests (:func:`asmopt.server.profiles.profile_key`); only when there is
none does it profile, in a worker process (:mod:`asmopt.server.profile_worker`), one
profile at a time. When a file is saved, every profile whose key changed is dropped (its
lenses go) and, for open files, made again. A failure on open is logged, never shown: a file
without tests simply has no shares. ``asmopt.hottestFunctions`` profiles when needed, however
the setting is, and answers with an error message instead of a list when it cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from asmopt.server.profiles import (
    ProfileEntry,
    ProfileUnavailable,
    forget_profile,
    hottest_answer,
    lens_title,
    load_profile,
    profile_key,
    startup_lens_title,
)
from asmopt.server.results import source_key

# At run time, not only for type checkers: pygls reads command handlers' annotations.
from asmopt.server.server import AsmoptLanguageServer

if TYPE_CHECKING:
    from asmopt.server.documents import FunctionInfo

COMMAND = "asmopt.hottestFunctions"
SHOW_COMMAND = "asmopt.showHottestFunctions"  # the client's quick pick (the lens's command)
TIMEOUT = 120.0  # seconds a profile may take before its worker is killed
JOB_POLL = 0.5  # seconds between looks at whether the optimize jobs have ended
SUFFIXES = (".c", ".s", ".S", ".asm")


class Profiler:
    """Profiles of the server's files: made in worker processes, one at a time, each key at
    most once at a time."""

    def __init__(self, server: AsmoptLanguageServer) -> None:
        self.server = server
        self._running: dict[str, asyncio.Task[ProfileEntry | str]] = {}  # by key
        self._lane = asyncio.Lock()
        self._pids: set[int] = set()
        self._sources: dict[str, tuple[Path, Path]] = {}  # source -> (path, workspace)
        self._stopped = False
        self._asked: dict[str, int] = {}  # sources being looked for, with how many askers

    # ------------------------------------------------------------ asking

    async def ensure(self, path: Path) -> ProfileEntry | str:
        """The profile of ``path``'s target for its files as they are on disk: from memory,
        the store, or a new run; else why there is none."""
        source = source_key(path)
        self._asked[source] = self._asked.get(source, 0) + 1
        try:
            return await self._ensure(path, source)
        finally:
            self._asked[source] -= 1
            if not self._asked[source]:
                del self._asked[source]

    async def _ensure(self, path: Path, source: str) -> ProfileEntry | str:
        server = self.server
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.settings_ready.wait(), timeout=10)
        workspace = server.workspace_root(path)
        try:
            key, settings = await server.in_thread(self._key, path)
        except ProfileUnavailable as err:
            return str(err)
        except OSError as err:
            return f"cannot read the files of {path.name}'s target: {err}"
        self._sources[source] = (path, workspace)
        known = server.profiles.get(source)
        if known is not None and known.key == key:
            return known
        stored = await server.in_thread(load_profile, workspace, key)
        if stored is not None:
            self._show(source, stored)
            return stored
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(self._profile(path, workspace, key, settings))
            self._running[key] = task
            task.add_done_callback(lambda _t: self._running.pop(key, None))
        found = await asyncio.shield(task)
        if isinstance(found, ProfileEntry):
            self._show(source, found)
        return found

    def _key(self, path: Path) -> tuple[str, dict[str, Any]]:
        config, target, _problem = self.server.target_for(path)
        settings = self.server.options.for_workspace(config)
        return profile_key(path, target, settings, config.root), settings.to_dict()

    def _show(self, source: str, entry: ProfileEntry) -> None:
        before = self.server.profiles.generation
        self.server.profiles.put(source, entry)
        if self.server.profiles.generation != before:
            self.server.refresh_views()

    async def on_open(self, uri: str) -> None:
        path = self.server.path_of(uri)
        if path is None or path.suffix not in SUFFIXES:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.settings_ready.wait(), timeout=10)
        if not await self._on_open_wanted(path):
            # Still show a profile made earlier (the command's, or another session's).
            source = source_key(path)
            if self.server.profiles.get(source) is None:
                await self._from_store(path, source)
            return
        found = await self.ensure(path)
        if isinstance(found, str):
            self.server.log(f"asmopt: no profile for {path.name}: {found}")

    async def _on_open_wanted(self, path: Path) -> bool:
        """The setting ``profileOnOpen`` for ``path`` (the editor's, else its asmopt.toml's)."""
        config, _target, _problem = await self.server.in_thread(self.server.target_for, path)
        return self.server.options.for_workspace(config).profile_on_open

    async def _from_store(self, path: Path, source: str) -> None:
        try:
            key, _ = await self.server.in_thread(self._key, path)
        except (ProfileUnavailable, OSError):
            return
        stored = await self.server.in_thread(load_profile, self.server.workspace_root(path), key)
        if stored is not None:
            self._show(source, stored)

    async def on_save(self, uri: str) -> None:
        """A file was saved: drop the profiles whose files changed, and make them again for
        the files that are open (when profiling on open); a saved file without a profile
        gets one (its target may just have gained tests)."""
        server = self.server
        path = server.path_of(uri)
        if path is not None and path.suffix in SUFFIXES:
            source = source_key(path)
            if server.profiles.get(source) is None and not self._busy(source):
                server.spawn(self.on_open(uri))
        for source in server.profiles.sources():
            entry = server.profiles.get(source)
            where = self._sources.get(source)
            if entry is None or where is None:
                continue
            path, workspace = where
            try:
                key, _ = await server.in_thread(self._key, path)
            except (ProfileUnavailable, OSError):
                key = ""
            if key == entry.key:
                continue
            if server.profiles.get(source) is entry:
                server.profiles.drop(source)
                server.refresh_views()
                server.spawn(server.in_thread(forget_profile, workspace, entry.key))
            if key and server.buffers_of_source(source):
                server.spawn(self.on_open(path.as_uri()))

    def _busy(self, source: str) -> bool:
        """Is a profile of ``source``'s files being looked for or made?"""
        return source in self._asked

    # ------------------------------------------------------------ running

    async def _profile(
        self, path: Path, workspace: Path, key: str, settings: dict[str, Any]
    ) -> ProfileEntry | str:
        async with self._lane:
            # An optimize job's timed runs come first: a profile (valgrind, a whole core) does
            # not start beside them, it waits for the jobs to end.
            while self.server.jobs.active() and not self._stopped:
                await asyncio.sleep(JOB_POLL)
            if self._stopped:
                return "the server is stopping"
            return await self._run_worker(path, workspace, key, settings)

    async def _run_worker(
        self, path: Path, workspace: Path, key: str, settings: dict[str, Any]
    ) -> ProfileEntry | str:
        from asmopt.server import proctree

        tmpdir = Path(tempfile.mkdtemp(prefix="asmopt-profile-", dir=self.server.scratch()))
        tmpdir.chmod(0o711)  # as /tmp: the sandbox's user must reach what is made inside
        request = {
            "type": "run",
            "source": str(path.resolve()),
            "settings": settings,
            "workspace": str(workspace),
            "key": key,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "asmopt.server.profile_worker",
            env={**os.environ, "TMPDIR": str(tmpdir)},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=64 * 1024 * 1024,
        )
        self._pids.add(process.pid)
        assert process.stdin is not None
        try:
            process.stdin.write((json.dumps(request) + "\n").encode())
            await process.stdin.drain()
            out, err = await asyncio.wait_for(process.communicate(), timeout=TIMEOUT)
        except TimeoutError:
            await asyncio.to_thread(proctree.kill_tree, process.pid)
            return f"profiling {path.name} took more than {TIMEOUT:.0f} s"
        except (BrokenPipeError, ConnectionResetError):
            out, err = b"", b""
        finally:
            if process.returncode is None:
                await asyncio.to_thread(proctree.kill_tree, process.pid)
            self._pids.discard(process.pid)
            await asyncio.to_thread(shutil.rmtree, tmpdir, True)
        try:
            answer = json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
        except (ValueError, IndexError):
            tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
            return f"the profiler ended unexpectedly (exit {process.returncode}) {' '.join(tail)}"
        if answer.get("type") != "result":
            return str(answer.get("message") or "the profiler failed")
        return ProfileEntry.from_record(answer["record"])

    def kill_all(self) -> None:
        from asmopt.server import proctree

        self._stopped = True
        for pid in list(self._pids):
            proctree.kill_tree(pid)
        self._pids.clear()


def profile_lenses(
    server: AsmoptLanguageServer, uri: str, source: str | None, functions: list[FunctionInfo]
) -> list[types.CodeLens]:
    """The profile's lenses of a buffer: each function's share (unless negligible), and once,
    on its first function, that the run is mostly start-up and libc. They follow the
    functions' own lenses in the list; an editor shows them beside those, on the same line."""
    entry = server.profiles.get(source)
    if entry is None or not functions:
        return []
    show = types.Command(title="", command=SHOW_COMMAND, arguments=[uri])
    lenses = []
    startup = startup_lens_title(entry)
    if startup:
        first = min(functions, key=lambda f: (f.range.start.line, f.range.start.character))
        at = types.Range(first.range.start, first.range.start)
        lenses.append(types.CodeLens(range=at, command=_titled(show, startup)))
    figures = entry.figures()
    for fn in functions:
        figure = figures.get(fn.name)
        title = lens_title(figure) if figure is not None else None
        if title is not None:
            at = types.Range(fn.range.start, fn.range.start)
            lenses.append(types.CodeLens(range=at, command=_titled(show, title)))
    return lenses


def _titled(command: types.Command, title: str) -> types.Command:
    return types.Command(title=title, command=command.command, arguments=command.arguments)


def profiler(server: AsmoptLanguageServer) -> Profiler | None:
    found = server.profiler
    return found if isinstance(found, Profiler) else None


def on_open(server: AsmoptLanguageServer, uri: str) -> None:
    """A buffer was opened: show its target's profile (made if needed, per the setting)."""
    found = profiler(server)
    if found is not None:
        server.spawn(found.on_open(uri))


def on_save(server: AsmoptLanguageServer, uri: str) -> None:
    """A file was saved: profiles whose files changed are dropped and made again."""
    found = profiler(server)
    if found is not None:
        server.spawn(found.on_save(uri))


def register(server: AsmoptLanguageServer) -> None:
    runner = Profiler(server)
    server.profiler = runner
    server.cleanups.append(runner.kill_all)

    @server.command(COMMAND)
    async def hottest_functions(ls: AsmoptLanguageServer, *args: Any) -> Any:
        if not args or not isinstance(args[0], str):
            return {"error": "the command needs the document's URI as its first argument"}
        uri = args[0]
        path = ls.path_of(uri)
        name = uri.rsplit("/", 1)[-1]
        if path is None:
            return {"error": f"save {name} to a file first: asmopt profiles files on disk"}
        if path.suffix not in SUFFIXES:
            return {"error": f"{name}: asmopt profiles C (.c) and assembly (.s) files"}
        found = await runner.ensure(path)
        if isinstance(found, str):
            return {"error": found}
        where: dict[str, tuple[str, int]] = {}
        buffer = ls.documents.get(uri)
        if buffer is not None:
            for fn in await ls.functions(buffer):
                where.setdefault(fn.name, (uri, fn.range.start.line))
        return hottest_answer(found, where)
