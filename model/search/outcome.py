"""What one "Optimize" job says, in the shapes every entry point shares.

- Progress is typed: see :mod:`asmopt.model.search.stages`.
- :class:`OptimizeError` is a job that cannot run: its message is for the user, and its fields
  (``stage``, ``unavailable``) are for code.
- :class:`OptimizeOutcome` is everything the job learnt, in process (the CLI's table reads it).
- :class:`RunRecord` is *the* result of a job, derived from the outcome once
  (:meth:`OptimizeOutcome.record`): ``asmopt optimize --json`` prints it, the editor's worker
  sends it to the language server, the workspace store keeps it, and the lens, hover and
  diagnostics read it. The winner (or, without one, the candidate that came closest) is chosen
  here, and only here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asmopt.executor.verify import VerificationResult
from asmopt.model.search.refine import ModelAnswer
from asmopt.model.search.stages import Stage

if TYPE_CHECKING:
    from asmopt.executor.store import ResultStore
    from asmopt.model.search.portfolio import Trial

# The store's ``kind`` of a run record (per-candidate records carry the candidate's kind).
RECORD_KIND = "run-record"


class OptimizeError(RuntimeError):
    """The job cannot run; the message is for the user and says what to do.

    ``stage``: the stage it stopped in, when it got that far; ``unavailable``: the policies
    that could not run at all (model missing, endpoint down)."""

    def __init__(
        self, message: str, *, stage: Stage | None = None, unavailable: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.stage = stage
        self.unavailable = unavailable


@dataclass(frozen=True)
class FailedTest:
    name: str
    status: str
    detail: str = ""


@dataclass(frozen=True)
class TestCounts:
    """The tests of the chosen candidate: how many passed, and those that did not (at most
    :data:`MAX_FAILED`)."""

    __test__ = False  # not a pytest class

    passed: int = 0
    total: int = 0
    failed: tuple[FailedTest, ...] = ()


MAX_FAILED = 50


@dataclass(frozen=True)
class Speedup:
    """A measured speed-up over gcc -O3: the median CPU-time ratio and its 95% CI."""

    median: float
    ci_low: float
    ci_high: float
    runs: int = 0


@dataclass(frozen=True)
class CandidateSummary:
    """One verified candidate, as a line of the ranking."""

    policy: str
    label: str
    kind: str
    verdict: str
    tests_passed: int
    tests_total: int
    speedup: Speedup | None = None


@dataclass(frozen=True)
class RunRecord:
    """The result of one job (see the module docstring).

    ``verdict`` is ``faster`` when there is a winner (every test passed, measurably faster),
    else ``not-faster``; ``tests``, ``speedup``, ``policy``, ``label`` and ``candidate`` (its
    hash) are the winner's, or those of the candidate that came closest; ``asm`` is the
    winner's translation unit (None without one) and ``baseline_asm`` the gcc -O3 assembly it
    was measured against."""

    target: str
    function: str | None
    source: str
    verdict: str = "not-faster"
    message: str = ""
    tests: TestCounts = field(default_factory=TestCounts)
    speedup: Speedup | None = None
    policy: str = ""
    label: str = ""
    candidate: str = ""
    asm: str | None = None
    baseline_asm: str = ""
    cancelled: bool = False
    unusable: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    target_notes: tuple[str, ...] = ()
    startup_bound: str = ""
    profile: dict[str, Any] | None = None
    candidates: tuple[CandidateSummary, ...] = ()
    answers: tuple[ModelAnswer, ...] = ()
    created_at: float = 0.0
    kind: str = RECORD_KIND

    @property
    def faster(self) -> bool:
        return self.verdict == "faster" and self.asm is not None and self.speedup is not None

    @property
    def median(self) -> float:
        return self.speedup.median if self.speedup is not None else 1.0

    @property
    def tests_passed(self) -> int:
        return self.tests.passed

    @property
    def tests_total(self) -> int:
        return self.tests.total

    @property
    def failed(self) -> tuple[FailedTest, ...]:
        return self.tests.failed

    def lens_title(self) -> str:
        """The one-line summary the editor's CodeLens shows (docs/protocol.md)."""
        if self.faster:
            s = self.speedup
            assert s is not None
            return (
                f"✓ {self.tests.passed}/{self.tests.total} tests · {s.median:.2f}× "
                f"[{s.ci_low:.2f}–{s.ci_high:.2f}] vs gcc -O3"
            )
        if self.tests.total and self.tests.passed < self.tests.total:
            failed = self.tests.total - self.tests.passed
            return f"✗ best candidate failed {failed}/{self.tests.total} tests"
        return "no faster candidate"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``asmopt optimize --json``; the store and the worker's wire). Only a
        job stopped for its start-up has ``startup_bound`` and ``profile``."""
        data = dataclasses.asdict(self)
        if not self.startup_bound:
            del data["startup_bound"], data["profile"]
        return data

    def store_key(self) -> str:
        """Where the store keeps this record: one per (target, function, source) for runs
        without a winner, one per winning candidate otherwise (so the best one survives a
        later run that found nothing)."""
        return record_key(
            self.target, self.function, self.source, self.candidate if self.asm else ""
        )

    def save(self, store: ResultStore) -> str | None:
        """Keep this record in ``store`` (unless the job was cancelled); returns why it was
        not saved, or None."""
        if self.cancelled:
            return None
        try:
            store.put(self.store_key(), self.to_dict())
        except Exception as err:  # a read-only workspace still gets its result shown
            return str(err)
        return str(store.problem) if store.problem is not None else None


def record_key(target: str, function: str | None, source: str, candidate: str = "") -> str:
    """Store key of a run record (see :meth:`RunRecord.store_key`)."""
    digest = hashlib.sha256(b"asmopt-editor-run-v1\0")
    for part in (target, function or "", source, candidate):
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


@dataclass(frozen=True)
class OptimizeOutcome:
    """The ranked result of one job; ``winner`` is None unless a candidate passed every test
    and is measurably faster than the baseline. ``candidates`` are best first."""

    winner: Trial | None
    candidates: tuple[Trial, ...]
    baseline_asm: str
    function: str | None
    message: str
    target: str = ""
    unusable: tuple[str, ...] = ()  # why some proposals were not candidates
    notes: tuple[str, ...] = ()
    cancelled: bool = False
    # Set when the job stopped before optimizing because the program's run is start-up and
    # libc (one line saying so); ``profile`` is the instruction profile that showed it.
    startup_bound: str = ""
    profile: dict[str, Any] | None = None
    answers: tuple[ModelAnswer, ...] = ()  # every raw answer of the LLM policies, by round
    # How the target was chosen and built (which of several, sources without flags of their
    # own in compile_commands.json): shown with the result.
    target_notes: tuple[str, ...] = ()
    source: str = ""  # the optimized file (resolved)
    finished_at: float = field(default_factory=time.time)

    def closest(self) -> Trial | None:
        """The winner; else the best candidate that passed every test (in rank order); else
        the one that passed the most tests."""
        if self.winner is not None:
            return self.winner
        passing = [c for c in self.candidates if c.result.all_passed]
        if passing:
            return passing[0]
        return max(self.candidates, key=lambda c: c.result.tests_passed, default=None)

    def record(self) -> RunRecord:
        """The job's :class:`RunRecord`."""
        chosen = self.closest()
        picked: dict[str, Any] = {}
        if chosen is not None:
            r = chosen.result
            picked = {
                "tests": _tests(r),
                "speedup": _speedup(r),
                "policy": chosen.candidate.policy,
                "label": chosen.candidate.label,
                "candidate": r.candidate_hash,
                "asm": chosen.candidate.asm if self.winner is not None else None,
            }
        return RunRecord(
            target=self.target,
            function=self.function,
            source=self.source,
            verdict="faster" if self.winner is not None else "not-faster",
            message=self.message,
            baseline_asm=self.baseline_asm,
            cancelled=self.cancelled,
            unusable=self.unusable,
            notes=self.notes,
            target_notes=self.target_notes,
            startup_bound=self.startup_bound,
            profile=self.profile,
            candidates=tuple(
                CandidateSummary(
                    policy=c.candidate.policy,
                    label=c.candidate.label,
                    kind=c.kind,
                    verdict=c.result.verdict.value,
                    tests_passed=c.result.tests_passed,
                    tests_total=len(c.result.tests),
                    speedup=_speedup(c.result),
                )
                for c in self.candidates
            ),
            answers=self.answers,
            created_at=self.finished_at,
            **picked,
        )


def _tests(result: VerificationResult) -> TestCounts:
    failed = tuple(
        FailedTest(t.name, t.status.value, t.detail)
        for t in result.tests
        if t.status.value != "passed"
    )
    return TestCounts(result.tests_passed, len(result.tests), failed[:MAX_FAILED])


def _speedup(result: VerificationResult) -> Speedup | None:
    s = result.speedup
    return Speedup(s.median, s.ci_low, s.ci_high, s.runs) if s is not None else None
