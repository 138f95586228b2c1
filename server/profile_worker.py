"""One profile in a process of its own: ``python -m asmopt.server.profile_worker``.

The language server starts one per profile (:mod:`asmopt.server.features.profile`), so its
event loop never waits on gcc or valgrind, and a profile it no longer needs ends with a kill
of the whole process tree. The program is built and run under valgrind in the sandbox, as
every generated or compiled program is (``profile_program``). The worker runs at a lower CPU
priority: instruction counts do not depend on it, and an optimization's timings running
beside it are disturbed less.

server -> worker (stdin)
    ``{"type": "run", "source", "settings", "workspace", "key"}``; closing stdin (the server
    went away) stops the worker and everything it started.
worker -> server (stdout), ``{"type": "started"}`` when it begins to build and run the
program (the editor's lenses then say it measures), then exactly one line
    ``{"type": "result", "key", "target", "record", "stored"}`` (``record``: see
    :func:`asmopt.server.profiles.profile_record`; ``key``: the key of the files as they were
    when profiling began, which is the one stored, and only when no file changed meanwhile)
    or ``{"type": "error", "message", "unavailable"}`` (``unavailable``: the target cannot be
    profiled at all, e.g. it has no tests).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asmopt.server.worker import kill_children, load_function

# For tests: "module:function" or "/path/file.py:function" replacing
# asmopt.model.search.optimizer.profile_program (same signature).
PROFILE_OVERRIDE_ENV = "ASMOPT_WORKER_PROFILE"
NICENESS = 5


def _load_profile_program() -> Callable[..., Any]:
    return load_function(PROFILE_OVERRIDE_ENV, "asmopt.model.search.optimizer:profile_program")


def _watch_stdin() -> None:
    """The server closed our stdin: it is gone or wants us gone."""
    for _line in sys.stdin:
        pass
    kill_children()
    os._exit(3)


def _key(source: Path, top: Path | None, settings: Any) -> tuple[str, str]:
    """(key, target name) of ``source``'s target as the files are now."""
    from asmopt.model.settings import Workspace
    from asmopt.server.profiles import profile_key

    config = Workspace.of(source, top).config
    target = config.target_for(source)
    key = profile_key(source, target, settings, config.root)
    return key, target.name if target else source.stem


def run(request: dict[str, Any], started: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Profile one target; the message to send back. ``started`` is called once the target
    is known and its profile about to be made."""
    from asmopt.model.settings import Settings, SettingsError
    from asmopt.server.profiles import BUDGET, ProfileUnavailable, profile_record

    try:
        from asmopt.model.search.optimizer import OptimizeError, OptimizeRequest
    except Exception as err:  # the model layer itself is broken: say so, don't crash
        return {"type": "error", "message": f"the profiler cannot be loaded: {err}"}
    try:
        settings = Settings.from_mapping(request.get("settings") or {})
    except SettingsError as err:
        return {"type": "error", "message": str(err)}
    source = Path(request["source"]).resolve()
    workspace = Path(request["workspace"]) if request.get("workspace") else None
    try:
        key, _name = _key(source, workspace, settings)
        profile_program = _load_profile_program()
        started()
        name, profile = profile_program(
            OptimizeRequest(source=source, function=None, settings=settings, workspace=workspace),
            budget=BUDGET,
        )
        after, _ = _key(source, workspace, settings)
    except ProfileUnavailable as err:
        return {"type": "error", "message": str(err), "unavailable": True}
    except (OptimizeError, SettingsError, OSError) as err:
        return {"type": "error", "message": str(err)}
    except Exception as err:
        print(traceback.format_exc(limit=3), file=sys.stderr)
        return {"type": "error", "message": f"the profiler failed: {type(err).__name__}: {err}"}
    record = profile_record(key, name, str(source), profile)
    stored = False
    if after == key:  # no file changed while it ran: the profile is the key's
        with contextlib.suppress(Exception):
            from asmopt.model.settings import Workspace

            warn = lambda m: print(m, file=sys.stderr)  # noqa: E731
            with Workspace.of(source, workspace).open_store(warn) as store:
                store.put(key, record)
                stored = store.problem is None
    return {"type": "result", "key": key, "target": name, "record": record, "stored": stored}


def main() -> int:
    # The protocol gets a private copy of stdout; fd 1 then points at stderr, so a library
    # (or a child process) that prints cannot corrupt the answer.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    try:
        request = json.loads(sys.stdin.readline())
        if not isinstance(request, dict) or request.get("type") != "run":
            raise ValueError("the first message must be a run request")
    except ValueError as err:
        answer: dict[str, Any] = {"type": "error", "message": f"bad profile request: {err}"}
    else:
        threading.Thread(target=_watch_stdin, daemon=True).start()

        def started() -> None:
            with contextlib.suppress(BrokenPipeError, ValueError):
                out.write(json.dumps({"type": "started"}) + "\n")
                out.flush()

        try:
            answer = run(request, started)
        finally:
            with contextlib.suppress(Exception):
                kill_children()  # nothing the profile started outlives it
    with contextlib.suppress(BrokenPipeError, ValueError):
        out.write(json.dumps(answer, ensure_ascii=True) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # don't wait for the stdin reader thread
