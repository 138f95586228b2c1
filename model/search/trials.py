"""What a search job learns about each candidate: a :class:`Trial` (the candidate, where it
came from, its verdict), :class:`SoFar` (a verified speed-up streamed as soon as it is known)
and the ranking of trials (:func:`rank_key`: passing first, then the CI lower bound, then
the median). Shared by :mod:`.portfolio`, :mod:`.verifier` and :mod:`.mixing`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from asmopt.executor.results import Verdict
from asmopt.executor.verify import VerificationResult
from asmopt.model.search.policy import Candidate
from asmopt.model.search.stages import Progress

__all__ = ["OnUpdate", "Progress", "SoFar", "Trial", "TrialKind", "rank", "rank_key"]

TrialKind = Literal["candidate", "function", "mix"]


@dataclass(frozen=True)
class Trial:
    """One verified candidate: what it is, where it came from, and its verdict.

    ``kind`` is ``candidate`` (a policy's proposal), ``function`` (one function of a
    whole-file candidate spliced into the baseline) or ``mix`` (every function from its
    fastest source). ``sources`` maps function -> label of the candidate it came from (for
    ``function`` and ``mix`` trials).
    """

    candidate: Candidate
    result: VerificationResult
    kind: TrialKind = "candidate"
    sources: dict[str, str] = field(default_factory=dict)
    screening: VerificationResult | None = None  # the first measurement, when re-measured
    same_code_as: str = ""  # label of the candidate whose machine code this one shares

    @property
    def confirmed(self) -> bool:
        """Re-measured with a larger budget after screening (see ``optimize(confirm=...)``)."""
        return self.screening is not None

    @property
    def passed(self) -> bool:
        return self.result.all_passed

    @property
    def faster(self) -> bool:
        return self.result.verdict is Verdict.FASTER

    @property
    def label(self) -> str:
        return self.candidate.label or self.candidate.policy


@dataclass(frozen=True)
class SoFar:
    """A verified speed-up as soon as it is known, for streaming to the user.

    ``final`` False: the candidate passed every test and the 95% CI of the rounds timed so far
    is above ``1 + min_gain`` (CPU) and its wall-time CI is not below 1, but timing goes on;
    True: its verdict is in. Either way every run behind it was checked.
    """

    label: str
    median: float
    ci_low: float
    ci_high: float
    rounds: int
    final: bool
    trial: Trial | None = None  # the finished trial, when final

    @property
    def text(self) -> str:
        """What an editor lens shows: "1.66x so far, still measuring" or "1.66x faster"."""
        if self.final:
            return f"{self.median:.2f}x faster [{self.ci_low:.2f}–{self.ci_high:.2f}]"
        return f"{self.median:.2f}x so far, still measuring"


OnUpdate = Callable[[SoFar], None]


def rank_key(result: VerificationResult) -> tuple[int, float, float]:
    """Sort key, larger is better: passing before failing, then the speed-up's CI lower
    bound, then its median. A failing candidate always ranks below every passing one."""
    if not result.all_passed or result.verdict in (Verdict.BUILD_FAILED, Verdict.TESTS_FAILED):
        return (0, 0.0, 0.0)
    if result.speedup is None:
        return (1, 0.0, 0.0)
    return (2, result.speedup.ci_low, result.speedup.median)


def rank(trials: Iterable[Trial]) -> list[Trial]:
    """``trials`` best first (a stable sort by :func:`rank_key`)."""
    return sorted(trials, key=lambda t: rank_key(t.result), reverse=True)
