"""One row of a bench run judged: its baseline built, its samples generated (or given) and
each verified. :func:`evaluate_row` is what the worker farms run; it must stay importable by
name, and the per-process state here (sandboxes, policies) is built once per worker.
"""

from __future__ import annotations

import atexit
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmopt.model.evaluation.dataset import Problem
from asmopt.model.evaluation.metrics import SampleOutcome, same_assembly
from asmopt.model.evaluation.records import BenchError, BenchOptions, RowResult, SampleRecord
from asmopt.model.search.policy import (
    Candidate,
    NoCandidate,
    Policy,
    PolicyError,
    Proposal,
    Request,
)

if TYPE_CHECKING:
    from asmopt.executor.judge import Judge

__all__ = ["PolicyFactory", "evaluate_row", "generate"]

#: Builds the policies of a run (called once per worker process).
PolicyFactory = Callable[[], Sequence[Policy]]


@dataclass
class _WorkerState:
    sandboxes: dict[tuple[bool, Any], Any] = field(default_factory=dict)
    policies: dict[Any, Sequence[Policy]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sandbox(self, enabled: bool, limits: Any) -> Any:
        from asmopt.executor.sandbox import Sandbox

        with self.lock:
            key = (enabled, limits)
            if key not in self.sandboxes:
                self.sandboxes[key] = Sandbox(limits, enabled=enabled)
            return self.sandboxes[key]

    def close(self) -> None:
        for sandbox in self.sandboxes.values():
            sandbox.close()
        self.sandboxes.clear()


# One per process (worker processes and Ray workers are long-lived): the sandbox and the
# policies are built once, not per row.
_STATE = _WorkerState()
atexit.register(_STATE.close)


def _policies_for(factory: PolicyFactory) -> Sequence[Policy]:
    # Keyed by the factory itself (a PolicySpec compares by value, a function by identity);
    # the dict keeps it alive, so an id is never reused for another factory.
    if not _hashable(factory):
        return list(factory())
    with _STATE.lock:
        cached = _STATE.policies.get(factory)
    if cached is None:
        cached = list(factory())
        with _STATE.lock:
            _STATE.policies[factory] = cached
    return cached


def _hashable(obj: Any) -> bool:
    try:
        hash(obj)
    except TypeError:
        return False
    return True


def _ask_all(policies: Sequence[Policy], request: Request, n: int) -> list[tuple[str, Proposal]]:
    out: list[tuple[str, Proposal]] = []
    for policy in policies:
        name = getattr(policy, "name", type(policy).__name__)
        proposals = list(policy.propose(request, n))  # PolicyError propagates: can't run
        out.extend((name, p) for p in proposals[:n])
        out.extend(
            (name, NoCandidate(name, "the policy returned fewer proposals than asked for"))
            for _ in range(max(0, n - len(proposals)))
        )
    return out


def generate(problem: Problem, policies: Sequence[Policy], n: int) -> list[tuple[str, Proposal]]:
    """Ask every policy for ``n`` proposals for ``problem`` (with its C file and tests
    written to a temporary directory for policies that rebuild or profile)."""
    with tempfile.TemporaryDirectory(prefix="asmopt-gen-") as tmp:
        work = Path(tmp)
        source = None
        if problem.c_source is not None:
            source = work / "source.c"
            source.write_text(problem.c_source)
        tests_dir = problem.write_tests(work / "tests")
        return _ask_all(policies, problem.request(source, tests_dir), n)


def _outcome(result: Any, candidate: Candidate, problem: Problem) -> SampleOutcome:
    from asmopt.executor.results import Verdict

    compiled = result.build is not None and result.build.ok
    total = len(problem.tests)
    passed = result.tests_passed if compiled else 0
    if result.verdict is Verdict.TESTS_FAILED and passed == total:
        passed = total - 1  # passed its tests, then failed while being timed: not correct
    per_test: tuple[float, ...] = ()
    speedup = low = high = None
    if result.speedup is not None:
        per_test = tuple(result.speedup.per_test.get(t.name, 1.0) for t in problem.tests)
        speedup, low, high = result.speedup.median, result.speedup.ci_low, result.speedup.ci_high
    return SampleOutcome(
        compiled=compiled,
        tests_passed=passed,
        tests_total=total,
        identical=same_assembly(candidate.asm, problem.baseline_asm),
        per_test=per_test,
        speedup=speedup,
        ci_low=low,
        ci_high=high,
    )


def evaluate_row(
    problem: Problem,
    proposals: Sequence[tuple[str, Proposal]] | None,
    factory: PolicyFactory | None,
    options: BenchOptions,
) -> RowResult:
    """Judge one row: build its baseline, get its samples (from ``proposals``, or from the
    policies ``factory`` builds), verify each. Never raises for a bad candidate or a bad
    baseline; a harness failure becomes ``status="error"``."""
    from asmopt.executor.judge import Judge
    from asmopt.executor.verify import BaselineError

    started = time.monotonic()
    try:
        sandbox = _STATE.sandbox(options.sandbox, options.verify.limits)
        with tempfile.TemporaryDirectory(prefix="asmopt-bench-") as tmp:
            work = Path(tmp)
            baseline_path = work / "baseline.s"
            baseline_path.write_text(problem.baseline_asm)
            try:
                judge = Judge.prepare(
                    baseline_path, list(problem.tests), work / "baseline", sandbox, options.verify
                )
            except BaselineError as err:
                message = f"the row's baseline can't be used: {err}"
                return _row_result(problem, "baseline-failed", started, message)
            if proposals is None:
                if factory is None:
                    raise BenchError("evaluate_row needs proposals or a policy factory")
                proposals = generate(problem, _policies_for(factory), options.samples)
            samples = _judge_samples(problem, proposals, judge, options)
    except PolicyError:
        raise
    except Exception as err:  # the harness, not the candidate: report, don't store
        return _row_result(problem, "error", started, f"{type(err).__name__}: {err}")
    return _row_result(problem, "done", started, "", samples)


def _judge_samples(
    problem: Problem,
    proposals: Sequence[tuple[str, Proposal]],
    judge: Judge,
    options: BenchOptions,
) -> tuple[SampleRecord, ...]:
    """One record per proposal: a missing candidate as such, the others judged."""
    samples: list[SampleRecord] = []
    for k, (policy_name, proposal) in enumerate(proposals):
        if isinstance(proposal, NoCandidate):
            samples.append(
                SampleRecord(
                    k,
                    proposal.policy or policy_name,
                    "",
                    "no-candidate",
                    proposal.reason,
                    SampleOutcome(compiled=False, tests_total=len(problem.tests)),
                )
            )
            continue
        result = judge.judge(proposal.asm)
        samples.append(
            SampleRecord(
                k,
                proposal.policy or policy_name,
                proposal.label,
                result.verdict.value,
                result.message,
                _outcome(result, proposal, problem),
                result.candidate_hash,
                proposal.asm if options.keep_asm else None,
            )
        )
    return tuple(samples)


def _row_result(
    problem: Problem,
    status: str,
    started: float,
    message: str,
    samples: tuple[SampleRecord, ...] = (),
) -> RowResult:
    return RowResult(
        problem.name, problem.row, status, message, samples, time.monotonic() - started
    )
