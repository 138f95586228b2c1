"""Where the time goes, before any optimizing: each function's share of the instructions its
program executes on its tests (valgrind, in the sandbox; instructions, not time), shown in
its lens and hover, and ``asmopt.hottestFunctions``, the file's functions hottest first.

When a C or assembly file whose target has tests is opened (setting ``profileOnOpen``,
default on), the server looks for the target's profile in the workspace store under the key
of its sources and tests (:func:`asmopt.server.profiles.profile_key`); only when there is
none does it profile, in a worker process (:mod:`asmopt.server.profile_worker`), one
profile at a time. When a file is saved, every profile whose key changed is dropped (its
lenses go) and, for open files, made again; files changed on disk outside the editor do the
same (:mod:`asmopt.server.features.watch`). While a profile is being made, each function of
the files waiting for it has a lens saying so (``measuring instructions…``, or that it waits
for the optimize job), and the editor is asked to refresh its lenses when that starts and
ends. A failure on open is logged, never shown: a file without tests simply has no shares.
``asmopt.hottestFunctions`` profiles when needed, however the setting is, answers with an
error message instead of a list when it cannot, and says where each function is defined in
any source of the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from asmopt.server.features.definitions import SUFFIXES, definitions
from asmopt.server.profiles import (
    MEASURING,
    WAITING,
    ProfileEntry,
    ProfileUnavailable,
    forget_profile,
    hottest_answer,
    lens_title,
    load_profile,
    profile_key,
    startup_lens_title,
    state_lens_title,
)
from asmopt.server.results import source_key

# At run time, not only for type checkers: pygls reads command handlers' annotations.
from asmopt.server.server import AsmoptLanguageServer

if TYPE_CHECKING:
    from asmopt.server.documents import FunctionInfo

COMMAND = "asmopt.hottestFunctions"
SHOW_COMMAND = "asmopt.showHottestFunctions"  # the client's quick pick (the lens's command)
TIMEOUT = 120.0  # seconds a profile may take before its worker is killed
SHOW_AFTER = 0.3  # seconds a profile runs (after the worker started it) before its lens shows
JOB_POLL = 0.5  # seconds between looks at whether the optimize jobs have ended


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
        # While a profile is being made: its state as the lenses say it (by key; none while
        # it is queued or starting), and the sources waiting for it (a source's keys, one
        # per asker; the last one decides what its lenses say).
        self._phase: dict[str, str | None] = {}
        self._awaiting: dict[str, list[str]] = {}
        self.changes = 0  # files saved or changed on disk (see _ensure)

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

    async def _ensure(self, path: Path, source: str, tries: int = 3) -> ProfileEntry | str:
        server = self.server
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.settings_ready.wait(), timeout=10)
        changes = self.changes
        try:
            key, settings, workspace = await server.in_thread(self._key, path)
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
            task.add_done_callback(lambda _t: self._ended(key))
        self._awaiting.setdefault(source, []).append(key)
        self._update_states([source])
        try:
            found = await asyncio.shield(task)
            if isinstance(found, ProfileEntry) and self.changes != changes and tries > 1:
                # Files changed while it ran: show it only if it is still theirs.
                try:
                    now = (await server.in_thread(self._key, path))[0]
                except (ProfileUnavailable, OSError):
                    now = ""
                if now != found.key:
                    return await self._ensure(path, source, tries - 1)
            if isinstance(found, ProfileEntry):
                self._show(source, found)
            return found
        finally:
            keys = self._awaiting[source]
            keys.remove(key)
            if not keys:
                del self._awaiting[source]
            self._update_states([source])

    def _ended(self, key: str) -> None:
        self._running.pop(key, None)
        self._phase.pop(key, None)

    def _set_phase(self, key: str, phase: str | None) -> None:
        """The profile of ``key`` entered ``phase`` (None: one its lenses do not show)."""
        self._phase[key] = phase
        self._update_states([s for s, keys in self._awaiting.items() if key in keys])

    def _update_states(self, sources: list[str]) -> None:
        """Bring what the lenses of ``sources`` say about a profile being made up to date;
        the editor is asked to fetch the lenses again when that changed."""
        changed = False
        for source in sources:
            keys = self._awaiting.get(source)
            state = self._phase.get(keys[-1]) if keys else None
            changed |= self.server.profiles.set_state(source, state)
        if changed:
            self.server.refresh_views()

    def _key(self, path: Path) -> tuple[str, dict[str, Any], Path]:
        """(key, settings, workspace root): the root is the one the CLI finds (the nearest
        ``asmopt.toml``), where the store lives."""
        config, target, _problem = self.server.target_for(path)
        settings = self.server.options.for_workspace(config)
        return profile_key(path, target, settings, config.root), settings.to_dict(), config.root

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
            key, _, root = await self.server.in_thread(self._key, path)
        except (ProfileUnavailable, OSError):
            return
        stored = await self.server.in_thread(load_profile, root, key)
        if stored is not None:
            self._show(source, stored)

    async def on_save(self, uri: str) -> None:
        """A file was saved: drop the profiles whose files changed, and make them again for
        the files that are open (when profiling on open); a saved file without a profile
        gets one (its target may just have gained tests)."""
        server = self.server
        self.changes += 1
        path = server.path_of(uri)
        if path is not None and path.suffix in SUFFIXES:
            source = source_key(path)
            if server.profiles.get(source) is None and not self._busy(source):
                server.spawn(self.on_open(uri))
        await self.recheck()

    async def on_files_changed(self, paths: list[Path]) -> None:
        """Files changed on disk outside the editor (a checkout, a build script): as after
        a save, the profiles whose files changed are dropped and made again for the files
        that are open; an open file without a profile is looked at again when one of its
        target's files changed (it may just have gained tests, or lost a build error)."""
        server = self.server
        self.changes += 1
        for buffer in list(server.documents):
            path = server.path_of(buffer.uri)
            source = server.source_of(buffer.uri)
            if path is None or source is None or path.suffix not in SUFFIXES:
                continue
            if server.profiles.get(source) is not None or self._busy(source):
                continue
            if await server.in_thread(self._touches, path, paths):
                server.spawn(self.on_open(buffer.uri))
        await self.recheck()

    def _touches(self, path: Path, changed: list[Path]) -> bool:
        """Is a file of ``changed`` one that ``path``'s profile depends on: a source of its
        target, a test, an ``asmopt.toml`` above it, or, while it has no tests, any file
        beside it (its ``tests/`` may be being made)? Blocking."""
        from asmopt.model.settings import CONFIG_FILE

        try:
            _config, target, _problem = self.server.target_for(path)
        except OSError:
            return False
        here = Path(source_key(path))
        sources = {source_key(s) for s in (target.sources if target is not None else ())}
        tests = target.tests if target is not None else None
        tests_at = Path(source_key(tests)) if tests is not None else None
        for file in changed:
            at = Path(source_key(file))
            if str(at) in sources or str(at) == str(here):
                return True
            if at.name == CONFIG_FILE and here.is_relative_to(at.parent):
                return True
            if tests_at is not None and at.is_relative_to(tests_at):
                return True
            if tests_at is None and at.is_relative_to(here.parent):
                return True
        return False

    async def recheck(self) -> None:
        """Drop the profiles whose key changed (their lenses go, and their records), and
        make them again for the files that are open (when profiling on open)."""
        server = self.server
        for source in server.profiles.sources():
            entry = server.profiles.get(source)
            where = self._sources.get(source)
            if entry is None or where is None:
                continue
            path, workspace = where
            try:
                key, _, _root = await server.in_thread(self._key, path)
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
            if self.server.jobs.active() and not self._stopped:
                self._set_phase(key, WAITING)
                while self.server.jobs.active() and not self._stopped:
                    await asyncio.sleep(JOB_POLL)
                self._set_phase(key, None)
            if self._stopped:
                return "the server is stopping"
            task = asyncio.current_task()

            def started() -> None:
                # Shown once valgrind has run a moment: a profile that fails at once (a
                # build error, no profile to make) does not flash a lens.
                asyncio.get_running_loop().call_later(SHOW_AFTER, self._measuring, key, task)

            return await self._run_worker(path, workspace, key, settings, started)

    def _measuring(self, key: str, task: asyncio.Task[Any] | None) -> None:
        if task is not None and self._running.get(key) is task and not task.done():
            self._set_phase(key, MEASURING)

    async def _run_worker(
        self,
        path: Path,
        workspace: Path,
        key: str,
        settings: dict[str, Any],
        started: Callable[[], None] = lambda: None,
    ) -> ProfileEntry | str:
        """Profile in a worker process; ``started`` is called when the worker says that it
        has begun to build and run the program."""
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
            out, err = await asyncio.wait_for(_talk(process, started), timeout=TIMEOUT)
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


async def _talk(
    process: asyncio.subprocess.Process, started: Callable[[], None]
) -> tuple[bytes, bytes]:
    """(the last line of its stdout, all its stderr) once the worker ended; ``started`` is
    called on its ``started`` line. Both pipes are read at once: a worker that writes much
    to stderr must not block on it."""
    assert process.stdout is not None and process.stderr is not None
    stdout = process.stdout

    async def lines() -> bytes:
        last = b""
        async for line in stdout:
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if isinstance(message, dict) and message.get("type") == "started":
                started()
            else:
                last = line
        return last

    out, err = await asyncio.gather(lines(), process.stderr.read())
    await process.wait()
    return out, err


def profile_lenses(
    server: AsmoptLanguageServer, uri: str, source: str | None, functions: list[FunctionInfo]
) -> list[types.CodeLens]:
    """The profile's lenses of a buffer: each function's share (unless negligible), and once,
    on its first function, that the run is mostly start-up and libc; while the profile is
    being made, on each function, that it is (``measuring instructions…``). They follow the
    functions' own lenses in the list; an editor shows them beside those, on the same line."""
    if not functions:
        return []
    show = types.Command(title="", command=SHOW_COMMAND, arguments=[uri])
    state = server.profiles.state(source)
    if state == WAITING and not server.jobs.active():
        state = None  # the job just ended: the profile is about to start
    if state is not None:
        busy = state_lens_title(state)
        return [
            types.CodeLens(
                range=types.Range(fn.range.start, fn.range.start), command=_titled(show, busy)
            )
            for fn in functions
        ]
    entry = server.profiles.get(source)
    if entry is None:
        return []
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
        return hottest_answer(found, await definitions(ls, uri, path))
