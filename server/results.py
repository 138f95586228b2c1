"""What the editor shows about a function: the result of its last run, or its best verified
candidate, kept in memory and persisted in the workspace's result store.

The worker turns an ``OptimizeOutcome`` into one *run record* (:func:`run_record`) and stores
it in ``.asmopt/results.sqlite`` beside the optimizer's per-candidate records. A run record
carries everything the editor needs without re-running: target, function, source, verdict,
speed-up with CI, tests, policy, the winning assembly and the baseline it was measured
against. Records of winners are kept per candidate (so the best one survives a later run
that found nothing); the last run without a winner replaces the previous one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RECORD_KIND = "editor-run"


@dataclass(frozen=True)
class FailedTest:
    name: str
    status: str
    detail: str = ""


@dataclass(frozen=True)
class FunctionResult:
    """One run's (or the best stored) result for a function of a source file."""

    target: str
    function: str | None
    source: str
    verdict: str  # faster | not-faster | tests-failed | build-failed | none
    tests_passed: int = 0
    tests_total: int = 0
    speedup: dict[str, float] | None = None  # median, ci_low, ci_high, runs
    policy: str = ""
    label: str = ""
    candidate_hash: str = ""
    asm: str | None = None  # the winning translation unit
    baseline_asm: str = ""
    message: str = ""
    failed: tuple[FailedTest, ...] = ()
    created_at: float = 0.0

    @property
    def faster(self) -> bool:
        return self.verdict == "faster" and self.asm is not None and self.speedup is not None

    @property
    def median(self) -> float:
        return float((self.speedup or {}).get("median", 1.0))

    def lens_title(self) -> str:
        """The CodeLens text of docs/protocol.md for this result."""
        if self.faster:
            s = self.speedup or {}
            return (
                f"✓ {self.tests_passed}/{self.tests_total} tests · {s['median']:.2f}× "
                f"[{s['ci_low']:.2f}–{s['ci_high']:.2f}] vs gcc -O3"
            )
        if self.verdict == "tests-failed" and self.tests_total:
            failed = self.tests_total - self.tests_passed
            return f"✗ best candidate failed {failed}/{self.tests_total} tests"
        return "no faster candidate"

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> FunctionResult:
        tests = record.get("tests") or {}
        speedup = record.get("speedup")
        return cls(
            target=str(record.get("target") or ""),
            function=record.get("function"),
            source=str(record.get("source") or ""),
            verdict=str(record.get("verdict") or "none"),
            tests_passed=int(tests.get("passed", 0)),
            tests_total=int(tests.get("total", 0)),
            speedup=dict(speedup) if isinstance(speedup, dict) else None,
            policy=str(record.get("policy") or ""),
            label=str(record.get("label") or ""),
            candidate_hash=str(record.get("candidate") or ""),
            asm=record.get("asm"),
            baseline_asm=str(record.get("baseline_asm") or ""),
            message=str(record.get("message") or ""),
            failed=tuple(
                FailedTest(
                    str(t.get("name", "")), str(t.get("status", "")), str(t.get("detail", ""))
                )
                for t in tests.get("failed", ())
                if isinstance(t, dict)
            ),
            created_at=float(record.get("created_at") or 0.0),
        )


def _rank(result: FunctionResult) -> tuple[float, float, float]:
    s = result.speedup or {}
    return (float(s.get("ci_low", 0.0)), float(s.get("median", 0.0)), result.created_at)


def record_key(target: str, function: str | None, source: str, candidate: str = "") -> str:
    """Store key of a run record: one per (target, function, source) for runs without a
    winner, one per winning candidate otherwise."""
    digest = hashlib.sha256(b"asmopt-editor-run-v1\0")
    for part in (target, function or "", source, candidate):
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def run_record(
    outcome: dict[str, Any], *, target: str, function: str | None, source: str
) -> dict[str, Any]:
    """The run record of an ``OptimizeOutcome.to_dict()``: the winner if there is one, else
    the candidate that came closest (most tests passed)."""
    winner = outcome.get("winner")
    chosen = winner
    if chosen is None:
        candidates = outcome.get("candidates") or []

        def closeness(c: dict[str, Any]) -> tuple[int, float]:
            tests = c["result"].get("tests") or {}
            speed = (c["result"].get("speedup") or {}).get("median", 0.0)
            return (int(tests.get("passed", 0)), float(speed or 0.0))

        chosen = max(candidates, key=closeness, default=None)
    record: dict[str, Any] = {
        "kind": RECORD_KIND,
        "target": target,
        "function": function,
        "source": source,
        "message": str(outcome.get("message") or ""),
        "baseline_asm": str(outcome.get("baseline_asm") or ""),
        "created_at": time.time(),
        "verdict": "none",
        "tests": {"passed": 0, "total": 0, "failed": []},
        "speedup": None,
        "asm": None,
    }
    if chosen is not None:
        result = chosen.get("result") or {}
        candidate = chosen.get("candidate") or {}
        tests = result.get("tests") or {}
        verdicts = tests.get("verdicts") or []
        record.update(
            verdict=str(result.get("verdict") or "none") if winner else _loser(result),
            tests={
                "passed": int(tests.get("passed", 0)),
                "total": int(tests.get("total", 0)),
                "failed": [
                    {
                        "name": v.get("name"),
                        "status": v.get("status"),
                        "detail": v.get("detail", ""),
                    }
                    for v in verdicts
                    if v.get("status") != "passed"
                ][:50],
            },
            speedup=_speedup(result.get("speedup")),
            policy=str(candidate.get("policy") or ""),
            label=str(candidate.get("label") or ""),
            candidate=str(result.get("candidate") or ""),
            asm=candidate.get("asm") if winner else None,
        )
    return record


def _loser(result: dict[str, Any]) -> str:
    verdict = str(result.get("verdict") or "none")
    return "not-faster" if verdict == "faster" else verdict  # faster but not the winner: noise


def _speedup(data: Any) -> dict[str, float] | None:
    if not isinstance(data, dict) or not isinstance(data.get("median"), int | float):
        return None
    return {
        "median": float(data["median"]),
        "ci_low": float(data.get("ci_low") or data["median"]),
        "ci_high": float(data.get("ci_high") or data["median"]),
        "runs": int(data.get("runs", 0)),
    }


@dataclass
class ResultIndex:
    """Results by (source path, function); ``None`` as function means the whole file."""

    _by_source: dict[str, dict[str | None, FunctionResult]] = field(default_factory=dict)
    generation: int = 0  # bumped on every change, for caches of what is shown

    def get(self, source: str, function: str | None) -> FunctionResult | None:
        return self._by_source.get(source, {}).get(function)

    def for_source(self, source: str) -> dict[str | None, FunctionResult]:
        return dict(self._by_source.get(source, {}))

    def put(self, result: FunctionResult) -> None:
        """Remember ``result``; a new run without a winner does not hide an earlier winner
        for the same function (that candidate is still verified and can be applied)."""
        self.generation += 1
        slot = self._by_source.setdefault(result.source, {})
        old = slot.get(result.function)
        if old is not None and old.faster and not result.faster:
            old = FunctionResult(**{**old.__dict__, "message": result.message})
            slot[result.function] = old
            return
        slot[result.function] = result

    def merge(self, results: list[FunctionResult]) -> bool:
        """Add results loaded from the store (newer in-memory ones win); True if anything
        changed."""
        changed = False
        for result in results:
            slot = self._by_source.setdefault(result.source, {})
            old = slot.get(result.function)
            if old is None or (result.faster and (not old.faster or _rank(result) > _rank(old))):
                slot[result.function] = result
                changed = True
        if changed:
            self.generation += 1
        return changed


def load_results(workspace: Path, target: str, source: str) -> list[FunctionResult]:
    """Per function, the best stored winner, else the newest run record (blocking: call in a
    thread)."""
    from asmopt.executor.store import ResultStore, ResultStoreError

    try:
        with ResultStore(workspace, read_only=True) as store:
            records = store.records(target=target, limit=2000)
    except (ResultStoreError, OSError) as err:  # the editor works on without stored results
        logger.warning("stored results not loaded: %s", err)
        return []
    chosen: dict[str | None, FunctionResult] = {}
    for record in records:  # newest first
        if record.get("kind") != RECORD_KIND or record.get("source") != source:
            continue
        result = FunctionResult.from_record(record)
        old = chosen.get(result.function)
        if old is None or (result.faster and (not old.faster or _rank(result) > _rank(old))):
            chosen[result.function] = result
    return list(chosen.values())


def source_key(path: Path) -> str:
    """How results name their source file: the resolved absolute path."""
    try:
        return str(path.resolve())
    except OSError:
        return str(path.absolute())
