"""One optimization job in a process of its own: ``python -m asmopt.server.worker``.

The language server starts one worker per job, so its event loop never waits on the optimizer
and a cancel can end with a hard kill. They speak JSON lines:

server -> worker (stdin)
    ``{"type": "run", "source", "function", "settings", "workspace", "target"}`` first, then
    optionally ``{"type": "cancel"}``. End of input (the server went away) also cancels.
worker -> server (stdout)
    ``{"type": "progress", "stage", "message"}`` any number of times, then exactly one of
    ``{"type": "result", "record", "message", "cancelled"}`` (``record``: a run record, see
    :mod:`asmopt.server.results`) or ``{"type": "error", "message"}``.

On a cancel the worker sets the optimizer's cancel event (the sandbox then kills its runs)
and, if the optimizer has not returned within :data:`CANCEL_GRACE` seconds, kills its own
descendants and exits; the server kills whatever is left of its tree shortly after.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

CANCEL_GRACE = 0.4  # seconds the optimizer gets to return after a cancel
# For tests and experiments: "module:function" or "/path/file.py:function" replacing
# asmopt.model.search.optimizer.optimize (same signature).
OPTIMIZE_OVERRIDE_ENV = "ASMOPT_WORKER_OPTIMIZE"


class _Output:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # The protocol gets a private copy of stdout; fd 1 then points at stderr, so a
        # library (or a child process) that prints cannot corrupt the JSON lines.
        self._stream = os.fdopen(os.dup(1), "w", encoding="utf-8")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self.done = False

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, ensure_ascii=True)
        with self._lock:
            if self.done:
                return
            if message.get("type") in ("result", "error"):
                self.done = True
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                pass


def _load_optimize() -> Callable[..., Any]:
    spec = os.environ.get(OPTIMIZE_OVERRIDE_ENV)
    if not spec:
        from asmopt.model.search.optimizer import optimize

        return optimize
    where, _, name = spec.rpartition(":")
    if where.endswith(".py"):
        module_spec = importlib.util.spec_from_file_location("_asmopt_worker_optimize", where)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    return getattr(module, name)


def _kill_children() -> None:
    from asmopt.server.proctree import kill_tree

    kill_tree(os.getpid(), include_root=False)


def _watch_stdin(cancel: threading.Event, out: _Output) -> None:
    """Read control messages; a cancel (or the server closing the pipe) sets ``cancel`` and
    arms the hard stop."""
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("type") == "cancel":
            break
    cancel.set()

    def hard_stop() -> None:
        _kill_children()
        out.send({"type": "result", "record": None, "message": "cancelled", "cancelled": True})
        os._exit(3)

    timer = threading.Timer(CANCEL_GRACE, hard_stop)
    timer.daemon = True
    timer.start()


def run(request: dict[str, Any], out: _Output, cancel: threading.Event) -> None:
    """Run one job and send its result (or error)."""
    from asmopt.model.settings import Settings, SettingsError
    from asmopt.server.results import record_key, run_record

    try:
        from asmopt.model.search.optimizer import OptimizeError, OptimizeRequest
    except Exception as err:  # the model layer itself is broken: say so, don't crash
        out.send({"type": "error", "message": f"the optimizer cannot be loaded: {err}"})
        return
    try:
        settings = Settings.from_mapping(request.get("settings") or {})
    except SettingsError as err:
        out.send({"type": "error", "message": str(err)})
        return
    source = Path(request["source"])
    workspace = Path(request["workspace"]) if request.get("workspace") else None
    function = request.get("function")
    target = str(request.get("target") or source.stem)
    store = None
    store_root = workspace or source.parent
    try:
        from asmopt.executor.store import ResultStore

        # Best effort: a corrupt store is moved aside, an unusable one (read-only, a link)
        # costs a warning, never the result.
        store = ResultStore(store_root, best_effort=True, warn=lambda m: print(m, file=sys.stderr))
    except Exception:
        store = None

    so_far: dict[str, Any] = {"text": "", "low": 0.0, "stage": "baseline"}

    def progress(stage: str, message: str) -> None:
        # The stage stays a stage; once a speed-up is verified it travels beside it, and the
        # lens says "running… (verify · 1.65x so far, still measuring)".
        so_far["stage"] = stage or so_far["stage"]
        out.send(
            {
                "type": "progress",
                "stage": str(so_far["stage"]),
                "message": str(message),
                "so_far": so_far["text"],
            }
        )

    def on_update(update: Any) -> None:  # model.portfolio.SoFar
        if update.ci_low <= so_far["low"]:
            return  # the lens shows the best verified so far
        so_far["low"] = update.ci_low
        so_far["text"] = f"{update.median:.2f}x so far, still measuring"
        progress("", update.label)

    try:
        optimize = _load_optimize()
        outcome = optimize(
            OptimizeRequest(
                source=source, function=function, settings=settings, workspace=workspace
            ),
            store=store,
            progress=progress,
            cancel=cancel,
            on_update=on_update,
        )
    except OptimizeError as err:
        out.send({"type": "error", "message": str(err)})
        return
    except Exception as err:
        detail = traceback.format_exc(limit=3)
        print(detail, file=sys.stderr)
        out.send({"type": "error", "message": f"the optimizer failed: {type(err).__name__}: {err}"})
        return
    data = outcome.to_dict()
    cancelled = bool(data.get("cancelled")) or cancel.is_set()
    record = run_record(data, target=target, function=function, source=str(source.resolve()))
    warning = ""
    if store is not None and not cancelled:
        key = record_key(
            target, function, record["source"], record["candidate"] if record.get("asm") else ""
        )
        try:
            store.put(key, record)
            if store.problem is not None:
                warning = f" (not saved: {store.problem})"
        except Exception as err:  # a read-only workspace still gets its result shown
            warning = f" (not saved: {err})"
        finally:
            store.close()
    out.send(
        {
            "type": "result",
            "record": record,
            "message": str(data.get("message") or "") + warning,
            "cancelled": cancelled,
        }
    )


def main() -> int:
    out = _Output()
    first = sys.stdin.readline()
    try:
        request = json.loads(first)
        if not isinstance(request, dict) or request.get("type") != "run":
            raise ValueError("the first message must be a run request")
    except ValueError as err:
        out.send({"type": "error", "message": f"bad worker request: {err}"})
        return 2
    cancel = threading.Event()
    threading.Thread(target=_watch_stdin, args=(cancel, out), daemon=True).start()
    try:
        run(request, out, cancel)
    finally:
        with contextlib.suppress(Exception):
            _kill_children()  # nothing the job started outlives it
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # don't wait for the stdin reader thread
