"""Where an optimization job is: :class:`Stage`, and :data:`Progress`, the ``(stage,
message)`` events the optimizer, the portfolio and refinement report. A stage is always said,
never read back out of a message."""

from __future__ import annotations

import enum
from collections.abc import Callable


class Stage(enum.StrEnum):
    """The values are the wire's (docs/protocol.md) and what the editor's lens shows. A job
    passes through ``baseline``, ``generate``, ``verify`` and ``benchmark`` in that order
    (generating and verifying overlap: candidates are verified as they come); the editor adds
    ``queued`` before and ``cancelling`` after a cancel."""

    QUEUED = "queued"
    BASELINE = "baseline"
    GENERATE = "generate"
    VERIFY = "verify"
    BENCHMARK = "benchmark"
    CANCELLING = "cancelling"


# One progress event: the stage and a line for the user.
Progress = Callable[[Stage, str], None]


def quiet(_stage: Stage, _message: str) -> None:
    """A :data:`Progress` that says nothing."""
