"""The messages between the language server and a worker (:mod:`asmopt.server.worker`), one
JSON object a line, each a dataclass here; ``type`` names the kind on the wire.

server -> worker (stdin)
    :class:`RunJob` first, then optionally :class:`CancelJob`. End of input (the server went
    away) also cancels.
worker -> server (stdout)
    :class:`ProgressMessage` any number of times, then exactly one of :class:`ResultMessage`
    (its ``record`` is the job's :class:`~asmopt.model.search.outcome.RunRecord`, the same one
    ``asmopt optimize --json`` prints and the store keeps) or :class:`ErrorMessage` (the job
    could not run: ``stage`` and ``unavailable`` say where and which policies, for code; the
    message is for the user).

:func:`encode` and :func:`decode` convert with cattrs; :func:`structure_record` reads a stored
run record back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cattrs

from asmopt.model.search.outcome import RunRecord
from asmopt.model.search.stages import Stage


@dataclass(frozen=True)
class RunJob:
    """Optimize ``function`` (None: the whole file) of ``source`` with ``settings`` (the
    editor's over the workspace's, snake_case); ``workspace`` is the editor's folder, which
    bounds the search for ``asmopt.toml``; ``target`` the target's name as the editor chose
    it."""

    source: str
    function: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    workspace: str | None = None
    target: str = ""
    type: str = "run"


@dataclass(frozen=True)
class CancelJob:
    type: str = "cancel"


@dataclass(frozen=True)
class ProgressMessage:
    """Where the job is; ``so_far`` is the best speed-up verified so far ("1.65x so far,
    still measuring"), which travels beside the stage, never in its place."""

    stage: Stage
    message: str = ""
    so_far: str = ""
    type: str = "progress"


@dataclass(frozen=True)
class ResultMessage:
    """How a job ended when it ran (``record`` is None when it was cancelled before any)."""

    record: RunRecord | None
    message: str = ""
    cancelled: bool = False
    type: str = "result"


@dataclass(frozen=True)
class ErrorMessage:
    """A job that could not run: ``message`` says what to do; ``stage`` is where it stopped
    (None: before or outside the optimizer), ``unavailable`` the policies that could not run."""

    message: str
    stage: Stage | None = None
    unavailable: tuple[str, ...] = ()
    type: str = "error"


Message = RunJob | CancelJob | ProgressMessage | ResultMessage | ErrorMessage
# How a job ends, as the job manager tells its listeners.
JobEnd = ResultMessage | ErrorMessage

_KINDS: dict[str, type[Any]] = {
    "run": RunJob,
    "cancel": CancelJob,
    "progress": ProgressMessage,
    "result": ResultMessage,
    "error": ErrorMessage,
}

_converter = cattrs.Converter()


class MessageError(ValueError):
    """A line that is not a message of this protocol."""


def encode(message: Message) -> dict[str, Any]:
    """``message`` as a JSON-ready dict (with its ``type``)."""
    data = _converter.unstructure(message)
    assert isinstance(data, dict)
    return data


def decode(data: Any) -> Message:
    """The message a JSON object stands for; raises :class:`MessageError`."""
    if not isinstance(data, dict) or data.get("type") not in _KINDS:
        raise MessageError(f"not a worker message: {str(data)[:200]}")
    try:
        return _converter.structure(data, _KINDS[data["type"]])  # type: ignore[no-any-return]
    except Exception as err:  # cattrs' errors, and type errors of fields
        raise MessageError(f"malformed {data['type']} message: {err}") from err


def structure_record(data: dict[str, Any]) -> RunRecord:
    """A stored run record (its extra store fields such as ``key`` are ignored); raises
    :class:`MessageError` when it does not fit."""
    try:
        return _converter.structure(data, RunRecord)
    except Exception as err:
        raise MessageError(f"malformed run record: {err}") from err
