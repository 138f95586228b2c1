"""Interleaved A/B benchmarking with a confidence interval that tells the truth.

One *round* runs every timed test once with the baseline (A) and once with the candidate (B),
interleaved test by test, alternating which side goes first so that neither side always
inherits a warm cache from the other. A round's ratio is (sum of A's CPU time) / (sum of B's),
that is, the speed-up on the user's whole workload. Rounds continue until the bootstrap 95%
confidence interval of the median ratio is within ``target_rel_ci`` of the median, or the time
budget is spent. CPU time of every process of the sandbox (its cgroup where the machine
allows, else rusage; see ``cgroup.py``) is the figure, not wall time, so the sandbox's
start-up and other load on the wall clock stay out; the wall-time ratio is reported beside it.

Each side runs in a persistent sandbox of its own (``Sandbox.session``) rather than a
bubblewrap per run, which took most of the wall time of short programs. The judge
(``verify.py``) runs a candidate's tests in that same session and passes it here, and every
timed run's output is checked like a test's: a timed run looks exactly like a test run to the
program, and acting differently when timed is caught (:class:`InconsistentRun`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asmopt.executor.results import RunResult, SpeedupEstimate, TestVerdict
from asmopt.executor.sandbox import RunSession, Sandbox, SandboxLimits
from asmopt.executor.testcases import TestCase


class BenchmarkError(RuntimeError):
    """A program that passed its tests failed while being timed (flaky or hostile)."""


@dataclass(frozen=True)
class BenchmarkOptions:
    """How hard to try for a precise figure."""

    target_rel_ci: float = 0.02  # stop when the CI half-width is within 2% of the median
    budget_seconds: float = 60.0  # wall-clock budget for timing one candidate
    # Ten rounds before the first look: with fewer, stopping at the first narrow interval
    # misses the true ratio too often (bench/aa_precision.py replays the rule).
    min_rounds: int = 10
    max_rounds: int = 200
    warmup_rounds: int = 1
    # "order": the distribution-free interval of the median from order statistics (exact
    # coverage >= 95% for any distribution); "bootstrap": percentile bootstrap, which is too
    # narrow at the sample sizes a benchmark can afford (it missed 1.00 in ~9% of A/A runs).
    ci_method: str = "order"
    bootstrap_resamples: int = 2000
    seed: int = 0
    # One sandbox for all the rounds (Sandbox.session) instead of one per run; False times
    # with Sandbox.run (for comparisons).
    persistent_sandbox: bool = True


def bootstrap_median_ci(
    samples: Sequence[float], resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Median of ``samples`` and a percentile-bootstrap confidence interval for it."""
    data = np.asarray(samples, dtype=float)
    if data.size == 0:
        raise ValueError("no samples")
    median = float(np.median(data))
    if data.size == 1:
        return median, median, median
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.size, size=(resamples, data.size))
    medians = np.median(data[idx], axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(medians, [alpha, 1.0 - alpha])
    return median, float(low), float(high)


def _binomial_tail(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) < k)."""
    return sum(math.comb(n, i) for i in range(k)) / 2.0**n


def order_statistic_median_ci(
    samples: Sequence[float], level: float = 0.95
) -> tuple[float, float, float]:
    """Median of ``samples`` and the distribution-free confidence interval for it.

    The interval is [x(k), x(n+1-k)] of the sorted samples with the largest k whose coverage,
    1 - 2 P(Binomial(n, 1/2) < k), is still at least ``level``; it holds for any continuous
    distribution, unlike a bootstrap at small n. With fewer than 6 samples no k reaches 95%
    and the interval is the whole range.
    """
    data = np.sort(np.asarray(samples, dtype=float))
    if data.size == 0:
        raise ValueError("no samples")
    n = int(data.size)
    median = float(np.median(data))
    k = 1
    while k + 1 <= n // 2 and 1.0 - 2.0 * _binomial_tail(k + 1, n) >= level:
        k += 1
    return median, float(data[k - 1]), float(data[n - k])


def median_ci(samples: Sequence[float], options: BenchmarkOptions, salt: int = 0):
    """The median and its 95% CI by the method ``options`` names."""
    if options.ci_method == "bootstrap":
        return bootstrap_median_ci(samples, options.bootstrap_resamples, options.seed + salt)
    return order_statistic_median_ci(samples)


def outlier_count(samples: Sequence[float]) -> int:
    """Samples outside Tukey's fences (1.5 IQR beyond the quartiles)."""
    data = np.asarray(samples, dtype=float)
    if data.size < 4:
        return 0
    q1, q3 = np.quantile(data, [0.25, 0.75])
    fence = 1.5 * (q3 - q1)
    return int(np.sum((data < q1 - fence) | (data > q3 + fence)))


RunCheck = Callable[[TestCase, RunResult], TestVerdict]


class InconsistentRun(BenchmarkError):
    """A program passed its tests, then failed the same check in a timed run."""

    def __init__(self, side: str, test: TestCase, verdict: TestVerdict, run_no: int) -> None:
        self.side = side
        self.test = test
        self.verdict = verdict
        self.run_no = run_no
        detail = f": {verdict.detail}" if verdict.detail else ""
        super().__init__(
            f"the {side} passed test {test.name}, then in timed run {run_no} of it: "
            f"{verdict.status.value}{detail}"
        )


# A run killed for its wall time while it used less CPU than this share of the limit was
# slowed by the machine, not by itself (a loaded host, a stalled sandbox start): run it again
# with twice the time before calling it timed out.
_BUSY_MACHINE_CPU_SHARE = 0.5


def run_test(
    session: RunSession,
    test: TestCase,
    limits: SandboxLimits | None = None,
    cancel: threading.Event | None = None,
) -> RunResult:
    """Run ``test`` once in a one-binary ``session``: the one way the judge runs a program,
    for its tests and for its timing alike, so a program cannot tell one from the other."""
    limits = limits or session.limits
    run = session.run(0, test.stdin, test.args, limits, cancel=cancel)
    busy = run.timed_out and not run.stalled  # a stalled runner is the program's doing
    if busy and run.cpu_seconds < _BUSY_MACHINE_CPU_SHARE * limits.wall_seconds:
        retry = dataclasses.replace(limits, wall_seconds=2 * limits.wall_seconds)
        run = session.run(0, test.stdin, test.args, retry, cancel=cancel)
    return run


def _checked(run: RunResult, side: str, test: TestCase, check: RunCheck | None, k: int) -> float:
    if check is not None:
        verdict = check(test, run)
        if not verdict.passed:
            raise InconsistentRun(side, test, verdict, k)
    elif run.timed_out or run.signal is not None or run.exit_code != 0 or run.output_truncated:
        raise BenchmarkError(
            f"the {side} failed on test {test.name} while being timed "
            f"(exit {run.exit_code}, signal {run.signal}, timed out {run.timed_out}); "
            "its behaviour is not deterministic"
        )
    return run.cpu_seconds


class _Runs:
    """Runs baseline (0) and candidate (1), each in a sandbox session of its own (the
    caller's, when it passes them), or one-shot when ``use_session`` is False."""

    def __init__(
        self,
        sandbox: Sandbox,
        binaries: tuple[Path, Path],
        use_session: bool,
        sessions: tuple[RunSession, RunSession] | None,
    ) -> None:
        self._sandbox = sandbox
        self._binaries = binaries
        self._own: list[RunSession] = []
        self.sessions: tuple[RunSession, RunSession] | None = sessions
        if sessions is None and use_session:
            self._own = [sandbox.session([b], fresh_per_run=True) for b in binaries]
            self.sessions = (self._own[0], self._own[1])

    def run(
        self,
        index: int,
        test: TestCase,
        limits: SandboxLimits | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        if self.sessions is not None:
            return run_test(self.sessions[index], test, limits, cancel)
        return self._sandbox.run(
            self._binaries[index], test.stdin, test.args, limits=limits, cancel=cancel
        )

    def close(self) -> None:
        for session in self._own:
            session.close()


def benchmark(
    sandbox: Sandbox,
    baseline: Path,
    candidate: Path,
    tests: Sequence[TestCase],
    options: BenchmarkOptions | None = None,
    *,
    limits: SandboxLimits | None = None,
    cancel: threading.Event | None = None,
    check: RunCheck | None = None,
    sessions: tuple[RunSession, RunSession] | None = None,
) -> SpeedupEstimate:
    """Measure the speed-up of ``candidate`` over ``baseline`` on ``tests`` (> 1 is faster).

    ``check(test, run)`` judges every timed run like a test run; the first that does not
    pass raises :class:`InconsistentRun` (a program must not act one way when tested and
    another when timed). ``sessions`` are the sandbox sessions of baseline and candidate
    when the caller already ran their tests in them, so the timed runs happen in the very
    sandbox the tests ran in.
    """
    opts = options or BenchmarkOptions()
    if not tests:
        raise ValueError("benchmark needs at least one test to time")
    names = [t.name for t in tests]
    a_times: list[list[float]] = []
    b_times: list[list[float]] = []
    ratios: list[float] = []
    wall_ratios: list[float] = []
    sources: set[str] = set()
    started = time.monotonic()
    converged = False
    median = low = high = 1.0
    round_no = 0
    total_rounds = opts.warmup_rounds + opts.max_rounds
    runs = _Runs(sandbox, (baseline, candidate), opts.persistent_sandbox, sessions)
    try:
        while round_no < total_rounds:
            a_round: list[float] = []
            b_round: list[float] = []
            walls = [0.0, 0.0]
            for i, test in enumerate(tests):
                # Alternate the order by round and by test: A B, B A, ...
                a_first = (round_no + i) % 2 == 0
                order = (("baseline", 0), ("candidate", 1))
                if not a_first:
                    order = order[::-1]
                for side, index in order:
                    run = runs.run(index, test, limits, cancel)
                    seconds = _checked(run, side, test, check, round_no + 1)
                    sources.add(run.cpu_source)
                    walls[index] += run.wall_seconds
                    (a_round if side == "baseline" else b_round).append(seconds)
            round_no += 1
            if round_no <= opts.warmup_rounds:
                continue
            a_times.append(a_round)
            b_times.append(b_round)
            ratios.append(_ratio(sum(a_round), sum(b_round)))
            wall_ratios.append(_ratio(walls[0], walls[1]))
            if len(ratios) >= opts.min_rounds:
                median, low, high = median_ci(ratios, opts, len(ratios))
                if (high - low) / 2.0 <= opts.target_rel_ci * median:
                    converged = True
                    break
            if time.monotonic() - started > opts.budget_seconds and len(ratios) >= 2:
                break
    finally:
        runs.close()
    if len(ratios) < opts.min_rounds:
        median, low, high = median_ci(ratios, opts)
    wall_median, wall_low, wall_high = (
        order_statistic_median_ci(wall_ratios) if wall_ratios else (None, None, None)
    )
    a = np.asarray(a_times)
    b = np.asarray(b_times)
    per_test = {
        name: float(np.median(a[:, j] / np.maximum(b[:, j], 1e-9))) for j, name in enumerate(names)
    }
    notes = []
    if not converged:
        notes.append(
            f"stopped after {len(ratios)} rounds ({time.monotonic() - started:.1f} s budget "
            f"spent) before the 95% CI reached ±{opts.target_rel_ci:.0%}"
        )
    outliers = outlier_count(ratios)
    if outliers and outliers * 10 >= len(ratios):
        notes.append(
            f"{outliers} of {len(ratios)} rounds were outliers: other load on the machine?"
        )
    if float(np.median(a.sum(axis=1))) < 0.002:
        notes.append("runs take under 2 ms of CPU: start-up dominates, speed-ups are small")
    return SpeedupEstimate(
        median=median,
        ci_low=low,
        ci_high=high,
        runs=len(ratios),
        baseline_cpu_seconds=float(np.median(a.sum(axis=1))),
        candidate_cpu_seconds=float(np.median(b.sum(axis=1))),
        per_test=per_test,
        samples=tuple(ratios),
        note="; ".join(notes),
        converged=converged,
        wall_median=wall_median,
        wall_ci_low=wall_low,
        wall_ci_high=wall_high,
        cpu_source="cgroup" if sources == {"cgroup"} else "rusage",
    )


def _ratio(a: float, b: float) -> float:
    # rusage has microsecond resolution; a 0 µs run is below what can be measured.
    return max(a, 1e-6) / max(b, 1e-6)
