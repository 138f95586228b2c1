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

Racing (:class:`Race`): when several candidates are timed for one job, one that is clearly
slower than the best so far, or clearly not faster than the baseline, stops being timed
early. The rule and its error rate are in :class:`RacingRule`; racing only ever shortens the
timing of a candidate, never its checks (every timed run it had is still checked).
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


def one_sided_rank(n: int, error: float) -> int:
    """The largest k >= 1 with P(Binomial(n, 1/2) <= k - 1) <= ``error``, or 0 when even
    k = 1 is too likely: x(k) of n sorted samples is then below the median with probability
    at least 1 - ``error`` (for any continuous distribution), and x(n+1-k) above it."""
    k = 0
    while k + 1 <= (n + 1) // 2 and _binomial_tail(k + 1, n) <= error:
        k += 1
    return k


def median_bounds(samples: Sequence[float], error: float) -> tuple[float, float]:
    """One-sided distribution-free bounds (lower, upper) of the median of ``samples``'
    distribution, each wrong with probability at most ``error``; (-inf, inf) when there are
    too few samples for that error."""
    data = np.sort(np.asarray(samples, dtype=float))
    k = one_sided_rank(int(data.size), error)
    if k == 0:
        return -math.inf, math.inf
    return float(data[k - 1]), float(data[data.size - k])


@dataclass(frozen=True)
class RacingRule:
    """When a candidate stops being timed because it cannot be the winner.

    Two kinds of evidence, each given half of the error rate ``alpha`` (``early_share``):

    *Median bounds.* Looks happen after ``first_look`` rounds (by default the fewest rounds
    at which a bound is possible at all) and then whenever the number of rounds has grown by
    ``growth`` (e.g. 10, 15, 23, 35, ...). At look j a candidate's round ratios give a lower
    and an upper bound of its median ratio (:func:`median_bounds`), each allowed the error
    ``delta / 2**(j+1)``, ``delta = alpha * (1 - early_share) / contenders``. Summed over all
    looks, each of a candidate's two bound sequences is ever wrong with probability at most
    ``delta`` (a union bound: valid however often, and whenever, the job looks). A
    candidate stops at a look when its upper bound is below ``1 + min_gain`` (it cannot be
    called faster than the baseline) or below another candidate's latest lower bound.

    *Early separation.* After ``early_looks`` rounds (3, 5, 8) a candidate stops when every
    one of its round ratios is below every round ratio of another candidate so far: were it
    not slower, that would happen with probability at most 1 / C(n + m, n) (n and m the two
    sample sizes; exact when both have the same distribution, smaller when it is faster);
    it stops only when that is at most ``epsilon = alpha * early_share / (contenders - 1) /
    len(early_looks)``. This drops a clear loser after a few rounds instead of ten.

    Error rate: with at most ``contenders`` candidates, the true best (the largest median
    ratio, and for the second rule a ratio distribution at least as large as each other's;
    with ties, any one of them) is stopped only if its own upper bound is wrong (``delta``),
    some other candidate's lower bound is ((contenders - 1) * ``delta``) or one of its
    separations from another happens by chance ((contenders - 1) * len(early_looks) *
    ``epsilon``): P(the true best is stopped) <= ``alpha`` (5% by default). A candidate
    whose true median is at least ``1 + min_gain`` is stopped by the baseline rule with
    probability at most ``delta``. It assumes what the CI already assumes: a candidate's
    round ratios are independent draws of one continuous distribution.
    ``tests/executor/test_racing.py`` checks the rate by simulation.
    """

    alpha: float = 0.05
    contenders: int = 16
    first_look: int = 0  # 0: the fewest rounds at which the first look can bound anything
    growth: float = 1.5
    min_gain: float = 0.01
    early_looks: tuple[int, ...] = (3, 5, 8)
    early_share: float = 0.5

    @property
    def delta(self) -> float:
        share = 1.0 - self.early_share if self.early_looks else 1.0
        return self.alpha * share / max(1, self.contenders)

    @property
    def epsilon(self) -> float:
        if not self.early_looks:
            return 0.0
        rivals = max(1, self.contenders - 1)
        return self.alpha * self.early_share / rivals / len(self.early_looks)

    @property
    def start(self) -> int:
        if self.first_look > 0:
            return self.first_look
        n = 1
        while one_sided_rank(n, self.delta / 2) == 0:
            n += 1
        return n

    def _looks(self, rounds: int) -> list[int]:
        looks, n = [], self.start
        while n <= rounds:
            looks.append(n)
            n = max(n + 1, math.ceil(n * self.growth))
        return looks

    def is_look(self, rounds: int) -> bool:
        """Whether the job looks at the median bounds after ``rounds`` rounds."""
        looks = self._looks(rounds)
        return bool(looks) and looks[-1] == rounds

    def bounds(self, samples: Sequence[float]) -> tuple[float, float]:
        """The (lower, upper) bounds of the median from the latest look at ``samples``;
        (-inf, inf) before the first look."""
        looks = self._looks(len(samples))
        if not looks:
            return -math.inf, math.inf
        j, n = len(looks) - 1, looks[-1]
        return median_bounds(samples[:n], self.delta / 2 ** (j + 1))

    def separated(self, mine: Sequence[float], theirs: Sequence[float]) -> bool:
        """Whether, at an early look, every one of ``mine`` is below every one of ``theirs``
        and that is unlikely enough by chance (at most ``epsilon``)."""
        n, m = len(mine), len(theirs)
        if n not in self.early_looks or m == 0 or max(mine) >= min(theirs):
            return False
        return 1.0 / math.comb(n + m, n) <= self.epsilon


class Race:
    """The candidates of one job timed against each other (see :class:`RacingRule`).

    Thread-safe: candidates timed at once in different threads race each other live.
    :meth:`check` is what :func:`benchmark`'s per-round callback calls.
    """

    def __init__(self, rule: RacingRule | None = None) -> None:
        self.rule = rule or RacingRule()
        self._lock = threading.Lock()
        self._lower: dict[str, tuple[float, str]] = {}  # key -> (lower bound, label)
        self._samples: dict[str, tuple[tuple[float, ...], str]] = {}  # key -> (ratios, label)
        self.stopped: dict[str, str] = {}  # key -> why it stopped early

    def record(self, key: str, label: str, samples: Sequence[float]) -> None:
        """Let ``samples`` (the round ratios of a candidate measured elsewhere, such as a
        stored result) count as a contender's."""
        lower, _ = self.rule.bounds(samples)
        with self._lock:
            self._lower[key] = (lower, label)
            self._samples[key] = (tuple(samples), label)

    def best(self) -> tuple[float, str] | None:
        """The highest lower bound recorded so far and whose it is."""
        with self._lock:
            finite = [v for v in self._lower.values() if v[0] > -math.inf]
        return max(finite) if finite else None

    def check(self, key: str, label: str, samples: Sequence[float]) -> str | None:
        """Record ``samples`` of candidate ``key``; at a look, why it should stop (or None)."""
        n = len(samples)
        with self._lock:
            self._samples[key] = (tuple(samples), label)
            rivals = [v for k, v in self._samples.items() if k != key]
        reason = None
        if n in self.rule.early_looks:
            beaten = [name for theirs, name in rivals if self.rule.separated(samples, theirs)]
            if beaten:
                reason = f"slower than {beaten[0]} (every round so far below every one of its)"
        if reason is None and self.rule.is_look(n):
            lower, upper = self.rule.bounds(samples)
            with self._lock:
                self._lower[key] = (lower, label)
                others = [v for k, v in self._lower.items() if k != key]
            floor = 1.0 + self.rule.min_gain
            if upper < floor:
                reason = f"not faster than the baseline (median surely below {floor:.2f}x)"
            else:
                ahead = [(low, name) for low, name in others if low > upper]
                if ahead:
                    low, name = max(ahead)
                    reason = f"slower than {name} (median surely below its {low:.2f}x)"
        if reason is not None:
            with self._lock:
                self.stopped[key] = reason
        return reason


# Called by benchmark() after every round with the CPU and the wall-time ratios of the rounds
# so far; returns a reason to stop timing, or None.
RaceLane = Callable[[Sequence[float], Sequence[float]], "str | None"]


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
    race: RaceLane | None = None,
) -> SpeedupEstimate:
    """Measure the speed-up of ``candidate`` over ``baseline`` on ``tests`` (> 1 is faster).

    ``check(test, run)`` judges every timed run like a test run; the first that does not
    pass raises :class:`InconsistentRun` (a program must not act one way when tested and
    another when timed). ``sessions`` are the sandbox sessions of baseline and candidate
    when the caller already ran their tests in them, so the timed runs happen in the very
    sandbox the tests ran in. ``race`` is called with the round ratios after every round
    (see :class:`Race`); when it gives a reason, timing stops there and the estimate says
    why (``stopped_early``).
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
    stopped_early = ""
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
            if race is not None:
                stopped_early = race(tuple(ratios), tuple(wall_ratios)) or ""
                if stopped_early:
                    break
            if time.monotonic() - started > opts.budget_seconds and len(ratios) >= 2:
                break
    finally:
        runs.close()
    if len(ratios) < opts.min_rounds or stopped_early:
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
    if stopped_early:
        notes.append(f"stopped after {len(ratios)} rounds: {stopped_early}")
    elif not converged:
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
        stopped_early=stopped_early,
    )


def _ratio(a: float, b: float) -> float:
    # rusage has microsecond resolution; a 0 µs run is below what can be measured.
    return max(a, 1e-6) / max(b, 1e-6)
