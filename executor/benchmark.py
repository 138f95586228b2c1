"""Interleaved A/B benchmarking with a confidence interval that tells the truth.

One *round* runs every timed test once with the baseline (A) and once with the candidate (B),
interleaved test by test, alternating which side goes first so that neither side always
inherits a warm cache from the other. A round's ratio is (sum of A's CPU time) / (sum of B's),
that is, the speed-up on the user's whole workload. Rounds continue until the bootstrap 95%
confidence interval of the median ratio is within ``target_rel_ci`` of the median, or the time
budget is spent. CPU time (user+sys of the sandboxed process tree, from rusage) is used, not
wall time, so the sandbox's start-up and other machines' load on the wall clock stay out.

The timing runs share one persistent sandbox (``Sandbox.session``, baseline and candidate in
it) rather than starting a bubblewrap per run, which took most of the wall time of short
programs; a sandbox that cannot hold a session falls back to ``Sandbox.run``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asmopt.executor.results import RunResult, SpeedupEstimate
from asmopt.executor.sandbox import RunSession, Sandbox, SandboxError, SandboxLimits
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


def _checked(run: RunResult, side: str, test: TestCase) -> float:
    if run.timed_out or run.signal is not None or run.exit_code != 0 or run.output_truncated:
        raise BenchmarkError(
            f"the {side} failed on test {test.name} while being timed "
            f"(exit {run.exit_code}, signal {run.signal}, timed out {run.timed_out}); "
            "its behaviour is not deterministic"
        )
    return run.cpu_seconds


class _Runs:
    """Runs baseline (0) and candidate (1): in one session when possible, else one-shot."""

    def __init__(self, sandbox: Sandbox, binaries: tuple[Path, Path], use_session: bool) -> None:
        self._sandbox = sandbox
        self._binaries = binaries
        self._session: RunSession | None = None
        if use_session and hasattr(sandbox, "session"):
            try:
                self._session = sandbox.session(list(binaries))
            except SandboxError:
                self._session = None

    def run(
        self,
        index: int,
        test: TestCase,
        limits: SandboxLimits | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        if self._session is not None:
            try:
                return self._session.run(index, test.stdin, test.args, limits, cancel=cancel)
            except SandboxError:
                # The session cannot start here: time one-shot runs from now on (a closed
                # sandbox raises again below).
                self._session.close()
                self._session = None
        return self._sandbox.run(
            self._binaries[index], test.stdin, test.args, limits=limits, cancel=cancel
        )

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


def benchmark(
    sandbox: Sandbox,
    baseline: Path,
    candidate: Path,
    tests: Sequence[TestCase],
    options: BenchmarkOptions | None = None,
    *,
    limits: SandboxLimits | None = None,
    cancel: threading.Event | None = None,
) -> SpeedupEstimate:
    """Measure the speed-up of ``candidate`` over ``baseline`` on ``tests`` (> 1 is faster)."""
    opts = options or BenchmarkOptions()
    if not tests:
        raise ValueError("benchmark needs at least one test to time")
    names = [t.name for t in tests]
    a_times: list[list[float]] = []
    b_times: list[list[float]] = []
    ratios: list[float] = []
    started = time.monotonic()
    converged = False
    median = low = high = 1.0
    round_no = 0
    total_rounds = opts.warmup_rounds + opts.max_rounds
    runs = _Runs(sandbox, (baseline, candidate), opts.persistent_sandbox)
    try:
        while round_no < total_rounds:
            a_round: list[float] = []
            b_round: list[float] = []
            for i, test in enumerate(tests):
                # Alternate the order by round and by test: A B, B A, ...
                a_first = (round_no + i) % 2 == 0
                order = (("baseline", 0), ("candidate", 1))
                if not a_first:
                    order = order[::-1]
                for side, index in order:
                    run = runs.run(index, test, limits, cancel)
                    seconds = _checked(run, side, test)
                    (a_round if side == "baseline" else b_round).append(seconds)
            round_no += 1
            if round_no <= opts.warmup_rounds:
                continue
            a_times.append(a_round)
            b_times.append(b_round)
            ratios.append(_ratio(sum(a_round), sum(b_round)))
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
    )


def _ratio(a: float, b: float) -> float:
    # rusage has microsecond resolution; a 0 µs run is below what can be measured.
    return max(a, 1e-6) / max(b, 1e-6)
