"""One optimization job in a process of its own: ``python -m asmopt.server.worker``.

The language server starts one worker per job, so its event loop never waits on the optimizer
and a cancel can end with a hard kill. They speak the JSON lines of :mod:`asmopt.server.messages`:
a run request, then perhaps a cancel, one way; progress, then one result or error, the other.
The worker finds the file's workspace as the CLI does (``Workspace.of``: the nearest
``asmopt.toml``, read once) and keeps the job's run record in that workspace's store.

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


def load_function(override_env: str, default: str) -> Callable[..., Any]:
    """The function named ``default`` ("module:function"), or, for tests, the one that
    ``$override_env`` names ("module:function" or "/path/file.py:function")."""
    where, _, name = (os.environ.get(override_env) or default).rpartition(":")
    if where.endswith(".py"):
        module_spec = importlib.util.spec_from_file_location(f"_asmopt_override_{name}", where)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    return getattr(module, name)  # type: ignore[no-any-return]


def _load_optimize() -> Callable[..., Any]:
    return load_function(OPTIMIZE_OVERRIDE_ENV, "asmopt.model.search.optimizer:optimize")


def kill_children() -> None:
    """Kill every process this one started (the job's leftovers)."""
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
        kill_children()
        from asmopt.server.messages import ResultMessage, encode

        out.send(encode(ResultMessage(None, "cancelled", cancelled=True)))
        os._exit(3)

    timer = threading.Timer(CANCEL_GRACE, hard_stop)
    timer.daemon = True
    timer.start()


def run(request: dict[str, Any], out: _Output, cancel: threading.Event) -> None:
    """Run one job (a :class:`~asmopt.server.messages.RunJob`, as a dict) and send its result
    (or error)."""
    try:
        from asmopt.model.search.optimizer import OptimizeError, OptimizeRequest
        from asmopt.model.settings import Settings, SettingsError, Workspace
        from asmopt.server import messages as m
    except Exception as err:  # the model layer itself is broken: say so, don't crash
        out.send({"type": "error", "message": f"the optimizer cannot be loaded: {err}"})
        return

    def send(message: m.Message) -> None:
        out.send(m.encode(message))

    try:
        job = m.decode({**request, "type": "run"})
        assert isinstance(job, m.RunJob)
        settings = Settings.from_mapping(job.settings)
        # The same workspace as the CLI's: the nearest asmopt.toml (read once, here) and the
        # store beside it.
        source = Path(job.source)
        workspace = Workspace.of(source, Path(job.workspace) if job.workspace else None)
    except (m.MessageError, SettingsError) as err:
        send(m.ErrorMessage(str(err)))
        return
    # Best effort: a corrupt store is moved aside, an unusable one (read-only, a link) costs
    # a warning, never the result.
    store = workspace.open_store(warn=lambda text: print(text, file=sys.stderr))
    last = m.ProgressMessage(m.Stage.BASELINE)
    best_low = 0.0

    def progress(stage: m.Stage | None, message: str) -> None:
        # The stage stays a stage; once a speed-up is verified it travels beside it, and the
        # lens says "running… (verify · 1.65x so far, still measuring)".
        nonlocal last
        last = m.ProgressMessage(stage or last.stage, str(message), last.so_far)
        send(last)

    def on_update(update: Any) -> None:  # model.search.portfolio.SoFar
        nonlocal last, best_low
        if update.ci_low <= best_low:
            return  # the lens shows the best verified so far
        best_low = update.ci_low
        last = m.ProgressMessage(last.stage, "", f"{update.median:.2f}x so far, still measuring")
        progress(None, update.label)

    request_ = OptimizeRequest(
        source=source, function=job.function, settings=settings, workspace=workspace.root,
        config=workspace.config,
    )  # fmt: skip
    try:
        outcome = _load_optimize()(
            request_, store=store, progress=progress, cancel=cancel, on_update=on_update
        )
    except OptimizeError as err:
        send(m.ErrorMessage(str(err), err.stage, err.unavailable))
        return
    except Exception as err:
        print(traceback.format_exc(limit=3), file=sys.stderr)
        send(m.ErrorMessage(f"the optimizer failed: {type(err).__name__}: {err}"))
        return
    # The optimizer kept the record in the store (as it does for the CLI), if it could.
    record = outcome.record()
    cancelled = record.cancelled or cancel.is_set()
    problem = store.problem
    store.close()
    warning = f" (not saved: {problem})" if problem and not cancelled else ""
    send(m.ResultMessage(record, record.message + warning, cancelled))


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
            kill_children()  # nothing the job started outlives it
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # don't wait for the stdin reader thread
