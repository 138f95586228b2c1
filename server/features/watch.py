"""Files changed on disk outside the editor: a ``git checkout``, a build script, a test
written by a generator. Once initialized, the server asks a client that can register it
dynamically (``workspace.didChangeWatchedFiles.dynamicRegistration``; VS Code can) to watch
sources, tests and ``asmopt.toml`` (``client/registerCapability``), and on
``workspace/didChangeWatchedFiles`` does what a save does for the profiles
(:meth:`asmopt.server.features.profile.Profiler.on_files_changed`): those whose files changed
are dropped, their lenses go, and open files are profiled again (per ``profileOnOpen``).

Events come in bursts (a checkout changes many files at once): they are gathered for
:data:`QUIET` seconds and handled once. Changes under ``.asmopt/`` (the store the server and
its workers write) and ``.git/`` are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from asmopt.server.server import AsmoptLanguageServer

logger = logging.getLogger(__name__)

REGISTRATION_ID = "asmopt-watched-files"
# What a profile depends on: sources (C and assembly), tests (NAME.in, NAME.out, NAME.args)
# and the workspace's asmopt.toml.
GLOBS = ("**/*.{c,s,S,asm}", "**/*.{in,out,args}", "**/asmopt.toml")
IGNORED_FOLDERS = frozenset({".asmopt", ".git"})
QUIET = 0.3  # seconds without a new event before a burst is handled


def supported(server: AsmoptLanguageServer) -> bool:
    caps = server.client_capabilities.workspace
    watched = caps.did_change_watched_files if caps is not None else None
    return bool(watched and watched.dynamic_registration)


async def register_watchers(server: AsmoptLanguageServer) -> None:
    """Ask the client to watch what the profiles depend on (only when it can)."""
    if not supported(server):
        return
    options = types.DidChangeWatchedFilesRegistrationOptions(
        watchers=[types.FileSystemWatcher(glob_pattern=glob) for glob in GLOBS]
    )
    registration = types.Registration(
        id=REGISTRATION_ID,
        method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
        register_options=options,
    )
    try:
        await server.client_register_capability_async(
            types.RegistrationParams(registrations=[registration])
        )
    except Exception as err:  # without it, changes outside the editor go unnoticed
        server.log(f"asmopt: cannot watch files for changes: {err}")


def changed_paths(server: AsmoptLanguageServer, changes: Sequence[types.FileEvent]) -> list[Path]:
    """The files of ``changes`` that matter (not in ``.asmopt/`` or ``.git/``)."""
    found = []
    for change in changes:
        path = server.path_of(change.uri)
        if path is not None and not IGNORED_FOLDERS.intersection(path.parts):
            found.append(path)
    return found


def register(server: AsmoptLanguageServer) -> None:
    pending: list[Path] = []

    async def handle() -> None:
        from asmopt.server.features.profile import profiler

        paths = list(dict.fromkeys(pending))
        pending.clear()
        found = profiler(server)
        if paths and found is not None:
            await found.on_files_changed(paths)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def watched_files_changed(
        ls: AsmoptLanguageServer, params: types.DidChangeWatchedFilesParams
    ) -> None:
        paths = changed_paths(ls, params.changes)
        if paths:
            pending.extend(paths)
            ls.debounce("", "watched-files", QUIET, handle)
