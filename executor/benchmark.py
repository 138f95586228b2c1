"""Interleaved A/B benchmarking with a confidence interval that tells the truth.

One *round* runs every timed test once with the baseline (A) and once with the candidate (B),
interleaved test by test, alternating which side goes first so that neither side always
inherits a warm cache from the other. A round's ratio is (sum of A's CPU time) / (sum of B's),
that is, the speed-up on the user's whole workload. Rounds continue until the 95% confidence
interval of the median ratio (order statistics, distribution-free) is within ``target_rel_ci``
of the median at one of the looks (after ``early_look`` rounds, then after every round from
``min_rounds``), or the time budget is spent. CPU time of every process of the sandbox (its
cgroup where the machine allows, else rusage; see ``cgroup.py``) is the figure, not wall time,
so the sandbox's start-up and other load on the wall clock stay out; the wall-time ratio is
reported beside it.

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

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from asmopt.executor.cohort import Cohort, Seat, SharedRun
from asmopt.executor.intervals import (
    MIN_CI_SAMPLES,
    bootstrap_median_ci,
    median_bounds,
    one_sided_rank,
    order_statistic_median_ci,
    outlier_count,
    signed_rank_median_ci,
)
from asmopt.executor.racing import WITHDRAWN, Race, RaceLane, RacingRule
from asmopt.executor.results import RunResult, SpeedupEstimate, TestVerdict
from asmopt.executor.sandbox import RunSession, Sandbox, SandboxLimits
from asmopt.executor.testcases import TestCase

# What other modules import from here (the statistics and racing live beside it).
__all__ = [
    "WITHDRAWN",
    "BenchmarkError",
    "BenchmarkOptions",
    "Cohort",
    "InconsistentRun",
    "Race",
    "RaceLane",
    "RacingRule",
    "Seat",
    "benchmark",
    "bootstrap_median_ci",
    "median_bounds",
    "median_ci",
    "one_sided_rank",
    "order_statistic_median_ci",
    "outlier_count",
    "run_test",
]


class BenchmarkError(RuntimeError):
    """A program that passed its tests failed while being timed (flaky or hostile)."""


@dataclass(frozen=True)
class BenchmarkOptions:
    """How hard to try for a precise figure."""

    target_rel_ci: float = 0.02  # stop when the CI half-width is within 2% of the median
    # Wall-clock budget for timing one candidate; timing goes on past it until there are
    # MIN_CI_SAMPLES (6) rounds, the fewest with a 95% CI (unless max_rounds is fewer), while
    # every round so far is faster than the baseline.
    budget_seconds: float = 60.0
    # The CI is looked at after ``early_look`` rounds and then after every round from
    # ``min_rounds`` on; timing stops at the first look where it is narrow enough. Looking
    # after every round from 6 on would stop at the first narrow interval by chance too
    # often (optional stopping); one look at 6 and none until 10 keeps the reported 95% CI
    # missing the true ratio at most 3.9% of the time for round spreads up to 2% (rounds
    # here show 0.1-1.1%), and no more often than looks from 10 alone at any spread, while
    # quiet rounds stop at 6 instead of 10 (bench/ci_coverage.py replays the rule).
    min_rounds: int = 10
    early_look: int = 6  # 0: no look before min_rounds
    max_rounds: int = 200
    warmup_rounds: int = 1
    # "order": the distribution-free interval of the median from order statistics (exact
    # coverage >= 95% for any distribution); "bootstrap": percentile bootstrap, which is too
    # narrow at the sample sizes a benchmark can afford (it missed 1.00 in ~9% of A/A runs);
    # "signed-rank": Wilcoxon's interval on log ratios, narrower at the same rounds but exact
    # only when they are symmetric (studied in bench/ci_coverage.py, not a default).
    ci_method: str = "order"
    bootstrap_resamples: int = 2000
    seed: int = 0
    # One sandbox for all the rounds (Sandbox.session) instead of one per run; False times
    # with Sandbox.run (for comparisons).
    persistent_sandbox: bool = True


def median_ci(samples: Sequence[float], options: BenchmarkOptions, salt: int = 0):
    """The median and its 95% CI by the method ``options`` names."""
    if options.ci_method == "bootstrap":
        return bootstrap_median_ci(samples, options.bootstrap_resamples, options.seed + salt)
    if options.ci_method == "signed-rank":
        return signed_rank_median_ci(samples)
    if options.ci_method != "order":
        raise ValueError(f"unknown ci_method {options.ci_method!r}")
    return order_statistic_median_ci(samples)


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


def _baseline_run(run: Callable[[], RunResult]) -> RunResult:
    """A timed run of the baseline, made once more when its sandbox died before answering.
    The baseline passed its tests and no candidate reaches its sandbox, so that was the
    machine; left as it was, the candidate would be reported "cannot be timed". A
    candidate's lost run is never run again: it may be its own doing."""
    result = run()
    return run() if result.lost else result


# Where a candidate takes its turns, and its name there (see ``cohort.py``).
Shared = Seat


@dataclass(frozen=True)
class _Done:
    """A baseline run's figures."""

    cpu_seconds: float
    wall_seconds: float
    cpu_source: str


class _Runs:
    """Runs baseline (0) and candidate (1), each in a sandbox session of its own (the
    caller's, when it passes them), or one-shot when ``use_session`` is False; in the turns of
    a ``shared`` cohort, whose baseline runs it pairs with when it may (see ``cohort.py``)."""

    def __init__(
        self,
        sandbox: Sandbox,
        binaries: tuple[Path, Path],
        use_session: bool,
        sessions: tuple[RunSession, RunSession] | None,
        shared: Shared | None = None,
        spare: Callable[[], tuple[RunSession, RunSession]] | None = None,
    ) -> None:
        self._sandbox = sandbox
        self._binaries = binaries
        self._own: list[RunSession] = []
        self._shared = shared
        self.sessions: tuple[RunSession, RunSession] | None = sessions
        if sessions is None and use_session:
            self._own = [sandbox.session([b], fresh_per_run=True) for b in binaries]
            self.sessions = (self._own[0], self._own[1])
        self._spare = spare or (
            lambda: (
                sandbox.session([binaries[0]], fresh_per_run=True),
                sandbox.session([binaries[1]], fresh_per_run=True),
            )
        )
        self._second: tuple[RunSession, RunSession] | None = None
        self._helper: ThreadPoolExecutor | None = None  # runs the second lane (at_once)

    def widened(self) -> AbstractContextManager[Cohort | None]:
        """For one round: the idle cohort lent to time it two wide (``Seat.widened``), or
        None (never outside a cohort or without sessions)."""
        if self._shared is None or self.sessions is None:
            return nullcontext(None)
        return self._shared.widened()

    def lanes(self) -> tuple[tuple[RunSession, RunSession], tuple[RunSession, RunSession]]:
        """The two pairs of (baseline, candidate) sessions of a wide round."""
        assert self.sessions is not None
        if self._second is None:
            self._second = self._spare()
            self._own.extend(self._second)
        return self.sessions, self._second

    def at_once(self, calls: Sequence[Callable[[], RunResult]]) -> list[RunResult]:
        """Run the two ``calls`` at once: the first in this thread, the second in the helper
        thread (always the same one: a session's next bubblewraps start in the thread of its
        last run and die with that thread, ``--die-with-parent``, so the second pair of
        sessions is only ever used from one thread that lives as long as they do). Their
        results once both returned; the first exception after both ended."""
        first, second = calls
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="asmopt-wide")
        future = self._helper.submit(second)
        try:
            mine = first()
        except BaseException:
            with contextlib.suppress(BaseException):
                future.result()
            raise
        return [mine, future.result()]

    def run(
        self,
        index: int,
        test: TestCase,
        limits: SandboxLimits | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        with self.turn():
            if self.sessions is not None:
                return run_test(self.sessions[index], test, limits, cancel)
            return self._sandbox.run(
                self._binaries[index], test.stdin, test.args, limits=limits, cancel=cancel
            )

    def claim(
        self, tests: Sequence[TestCase], limits: SandboxLimits | None
    ) -> tuple[TestCase, SharedRun | None]:
        """The test to run next, and a baseline run of it that another member of the cohort
        makes (or made) and this candidate may pair with (None: the first of ``tests``, with
        a baseline run of its own)."""
        if self._shared is not None:
            cohort, me = self._shared.cohort, self._shared.me
            for test in tests:
                run = cohort.claim((test.name, limits), me, since=self._shared.moved_at)
                if run is not None:
                    return test, run
        return tests[0], None

    @property
    def cohort(self) -> Cohort | None:
        return self._shared.cohort if self._shared is not None else None

    def turn(self) -> AbstractContextManager[None]:
        """The cohort's turn (held across the runs made inside), or nothing outside one."""
        return self._shared.cohort.turn() if self._shared is not None else nullcontext()

    def announce(self, test: TestCase, limits: SandboxLimits | None) -> SharedRun | None:
        """In a cohort, announce the baseline run of ``test`` this candidate will make, for
        other members to pair with (None outside a cohort)."""
        if self._shared is None:
            return None
        return self._shared.cohort.announce((test.name, limits), self._shared.me)

    def withdraw(self, announced: SharedRun | None) -> None:
        """An announced run will not be made (this candidate failed first)."""
        if announced is not None and self._shared is not None:
            self._shared.cohort.fail(announced)

    def baseline(
        self,
        test: TestCase,
        limits: SandboxLimits | None,
        cancel: threading.Event | None,
        check: RunCheck | None,
        k: int,
        announced: SharedRun | None = None,
    ) -> _Done:
        """Run the baseline on ``test`` now and check it like a test; in a cohort, share it
        (as ``announced``, or announced now)."""
        if self._shared is None:
            run = _baseline_run(lambda: self.run(0, test, limits, cancel))
            seconds = _checked(run, "baseline", test, check, k)
            return _Done(seconds, run.wall_seconds, run.cpu_source)
        cohort, me = self._shared.cohort, self._shared.me
        if announced is None:
            announced = cohort.announce((test.name, limits), me)
        try:
            run = _baseline_run(lambda: self.run(0, test, limits, cancel))
            seconds = _checked(run, "baseline", test, check, k)
        except BaseException:
            cohort.fail(announced)
            raise
        cohort.finish(announced, seconds, run.wall_seconds, run.cpu_source)
        return _Done(seconds, run.wall_seconds, run.cpu_source)

    def paired(
        self,
        claimed: SharedRun,
        test: TestCase,
        limits: SandboxLimits | None,
        cancel: threading.Event | None,
        check: RunCheck | None,
        k: int,
    ) -> _Done:
        """The figures of ``claimed`` once it ran; of a run of this candidate's own when it
        failed."""
        if claimed.wait(cancel.is_set if cancel is not None else lambda: False):
            assert claimed.cpu_seconds is not None
            return _Done(claimed.cpu_seconds, claimed.wall_seconds, claimed.cpu_source)
        return self.baseline(test, limits, cancel, check, k)

    def close(self) -> None:
        for session in self._own:
            session.close()
        if self._helper is not None:
            self._helper.shutdown(wait=True)


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
    shared: Shared | None = None,
    spare: Callable[[], tuple[RunSession, RunSession]] | None = None,
) -> SpeedupEstimate:
    """Measure the speed-up of ``candidate`` over ``baseline`` on ``tests`` (> 1 is faster).

    ``check(test, run)`` judges every timed run like a test run; the first that does not
    pass raises :class:`InconsistentRun` (a program must not act one way when tested and
    another when timed). ``sessions`` are the sandbox sessions of baseline and candidate
    when the caller already ran their tests in them, so the timed runs happen in the very
    sandbox the tests ran in. ``race`` is called with the round ratios after every round
    (see :class:`Race`); when it gives a reason, timing stops there and the estimate says
    why (``stopped_early``). ``shared`` is the candidate's :class:`Seat`: the cohort it is
    timed in (which may change between rounds) and its name there; its runs then take the
    cohort's turns and pair with baseline runs other members made when they may; a round for
    which the seat lends a second, idle cohort is timed two wide (:func:`_wide_round`) in a
    second pair of sessions, ``spare()``'s (opened on first use and closed here; sessions
    like the first pair's when it is not given).
    """
    opts = options or BenchmarkOptions()
    if not tests:
        raise ValueError("benchmark needs at least one test to time")
    rounds = _Rounds(started=time.monotonic())
    runs = _Runs(sandbox, (baseline, candidate), opts.persistent_sandbox, sessions, shared, spare)
    try:
        round_no = 0
        while opts.max_rounds > 0:
            if shared is not None:
                shared.between_rounds()  # nothing announced or awaited: it may change cohorts
            with runs.widened() as other:
                if other is not None:
                    lanes = _wide_round(runs, other, tests, round_no, limits, cancel, check, rounds)
                else:
                    lanes = [_round(runs, tests, round_no, limits, cancel, check, rounds)]
            warm_up, round_no = round_no < opts.warmup_rounds, round_no + 1
            # Each lane's ratio is added on its own, so the looks happen at the same numbers
            # of rounds whether rounds come one or two at a time.
            if not warm_up and any(
                rounds.add(a_round, b_round, walls, opts, race) for a_round, b_round, walls in lanes
            ):
                break
    finally:
        runs.close()
    return rounds.estimate([t.name for t in tests], opts)


def _round(
    runs: _Runs,
    tests: Sequence[TestCase],
    round_no: int,
    limits: SandboxLimits | None,
    cancel: threading.Event | None,
    check: RunCheck | None,
    rounds: _Rounds,
) -> tuple[list[float], list[float], list[float]]:
    """One round: every test once on each side; the CPU times of A's and B's runs (in the
    order of ``tests``), and the wall time of each side. Which side goes first alternates by
    round and by test. In a cohort, a test whose baseline run another member announced (or
    just made) goes next, paired with that run; a baseline run of the candidate's own is
    announced as soon as it is decided on, for the others to pair with."""
    a_times: dict[str, float] = {}
    b_times: dict[str, float] = {}
    walls = [0.0, 0.0]
    left = list(tests)
    while left:
        k = round_no + 1
        first = (round_no + len(tests) - len(left)) % 2 == 0  # the baseline first
        test, claimed = runs.claim(left, limits)
        left.remove(test)
        mine = runs.announce(test, limits) if claimed is None else None
        paired = None
        # Its own baseline run and its run of the test back to back, in one turn.
        with runs.turn() if claimed is None else nullcontext():
            if claimed is None and first:
                paired = runs.baseline(test, limits, cancel, check, k, mine)
            try:
                cand = runs.run(1, test, limits, cancel)
                b_times[test.name] = _checked(cand, "candidate", test, check, k)
            except BaseException:
                if paired is None:
                    runs.withdraw(mine)  # announced, never to run: nobody may wait for it
                raise
            if claimed is None and paired is None:
                paired = runs.baseline(test, limits, cancel, check, k, mine)
        rounds.sources.add(cand.cpu_source)
        walls[1] += cand.wall_seconds
        if claimed is not None:
            # Outside any turn of its own: the run's owner needs one to make it.
            paired = runs.paired(claimed, test, limits, cancel, check, k)
        assert paired is not None
        a_times[test.name] = paired.cpu_seconds
        walls[0] += paired.wall_seconds
        rounds.sources.add(paired.cpu_source)
    return [a_times[t.name] for t in tests], [b_times[t.name] for t in tests], walls


def _wide_round(
    runs: _Runs,
    other: Cohort,
    tests: Sequence[TestCase],
    round_no: int,
    limits: SandboxLimits | None,
    cancel: threading.Event | None,
    check: RunCheck | None,
    rounds: _Rounds,
) -> list[tuple[list[float], list[float], list[float]]]:
    """One round two wide, on the cores of the member's cohort and of ``other`` (lent for
    this round), holding both cohorts' turns for the whole round: for each test, the
    baseline runs on both cores at once and then the candidate does (or the other way round,
    alternating as :func:`_round` does); each core's candidate run pairs with that core's
    baseline run. Two rounds' figures, one per core. Nothing of the candidate runs beside a
    baseline run it is paired with, and each ratio has a baseline run of its own (see
    ``cohort.py``). The lent cohort's own members, if any, wait for the round's end: taking
    the turns test by test would let them in between, and the round would take as long as
    two narrow ones."""
    assert runs.cohort is not None
    lanes = runs.lanes()
    a_times: list[dict[str, float]] = [{}, {}]
    b_times: list[dict[str, float]] = [{}, {}]
    walls = [[0.0, 0.0], [0.0, 0.0]]
    k = round_no + 1
    with Cohort.both_turns(runs.cohort, other):
        for j, test in enumerate(tests):
            first = (round_no + j) % 2 == 0  # the baseline first
            for side in (0, 1) if first else (1, 0):
                name = "candidate" if side else "baseline"
                calls = [partial(run_test, lane[side], test, limits, cancel) for lane in lanes]
                if side == 0:
                    calls = [partial(_baseline_run, call) for call in calls]
                results = runs.at_once(calls)
                for i, run in enumerate(results):
                    seconds = _checked(run, name, test, check, k)
                    (b_times if side else a_times)[i][test.name] = seconds
                    walls[i][side] += run.wall_seconds
                    rounds.sources.add(run.cpu_source)
    return [
        ([a_times[i][t.name] for t in tests], [b_times[i][t.name] for t in tests], walls[i])
        for i in range(2)
    ]


@dataclass
class _Rounds:
    """What the timed rounds (warm-up rounds left out) measured so far."""

    started: float  # time.monotonic() when timing began
    a_times: list[list[float]] = field(default_factory=list)
    b_times: list[list[float]] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    wall_ratios: list[float] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)  # cpu_source of every run, warm-up too
    converged: bool = False
    stopped_early: str = ""
    ci: tuple[float, float, float] = (1.0, 1.0, 1.0)  # median, low, high

    def add(
        self,
        a_round: list[float],
        b_round: list[float],
        walls: list[float],
        opts: BenchmarkOptions,
        race: RaceLane | None,
    ) -> bool:
        """Record a timed round; whether timing stops here (converged, raced out, or the
        budget spent)."""
        self.a_times.append(a_round)
        self.b_times.append(b_round)
        self.ratios.append(_ratio(sum(a_round), sum(b_round)))
        self.wall_ratios.append(_ratio(walls[0], walls[1]))
        n = len(self.ratios)
        enough = n >= MIN_CI_SAMPLES  # before that, no interval is a 95% one
        if enough and (n >= opts.min_rounds or n == opts.early_look):
            self.ci = median_ci(self.ratios, opts, n)
            median, low, high = self.ci
            if (high - low) / 2.0 <= opts.target_rel_ci * median:
                self.converged = True
                return True
        if race is not None:
            self.stopped_early = race(tuple(self.ratios), tuple(self.wall_ratios)) or ""
            if self.stopped_early:
                return True
        if n >= opts.max_rounds:
            return True
        # Past the budget, timing goes on to MIN_CI_SAMPLES rounds only while a speed-up can
        # still be claimed: with any round at or below 1.0 it cannot be, at 6 rounds either.
        hopeless = n >= 2 and min(self.ratios) <= 1.0
        return time.monotonic() - self.started > opts.budget_seconds and (enough or hopeless)

    def estimate(self, names: list[str], opts: BenchmarkOptions) -> SpeedupEstimate:
        """The speed-up these rounds show, with notes on how far to trust it."""
        ratios = self.ratios
        median, low, high = self.ci
        if not self.converged and (len(ratios) < opts.min_rounds or self.stopped_early):
            median, low, high = median_ci(ratios, opts)
        wall_median, wall_low, wall_high = (
            order_statistic_median_ci(self.wall_ratios) if self.wall_ratios else (None, None, None)
        )
        a = np.asarray(self.a_times)
        b = np.asarray(self.b_times)
        per_test = {
            name: float(np.median(a[:, j] / np.maximum(b[:, j], 1e-9)))
            for j, name in enumerate(names)
        }
        return SpeedupEstimate(
            median=median,
            ci_low=low,
            ci_high=high,
            runs=len(ratios),
            baseline_cpu_seconds=float(np.median(a.sum(axis=1))),
            candidate_cpu_seconds=float(np.median(b.sum(axis=1))),
            per_test=per_test,
            samples=tuple(ratios),
            note="; ".join(self._notes(a, opts)),
            converged=self.converged,
            wall_median=wall_median,
            wall_ci_low=wall_low,
            wall_ci_high=wall_high,
            cpu_source="cgroup" if self.sources == {"cgroup"} else "rusage",
            stopped_early=self.stopped_early,
        )

    def _notes(self, a: np.ndarray, opts: BenchmarkOptions) -> list[str]:
        ratios = self.ratios
        notes = []
        if self.stopped_early:
            notes.append(f"stopped after {len(ratios)} rounds: {self.stopped_early}")
        elif not self.converged:
            notes.append(
                f"stopped after {len(ratios)} rounds ({time.monotonic() - self.started:.1f} s "
                f"budget spent) before the 95% CI reached ±{opts.target_rel_ci:.0%}"
            )
        outliers = outlier_count(ratios)
        if outliers and outliers * 10 >= len(ratios):
            notes.append(
                f"{outliers} of {len(ratios)} rounds were outliers: other load on the machine?"
            )
        if float(np.median(a.sum(axis=1))) < 0.002:
            notes.append("runs take under 2 ms of CPU: start-up dominates, speed-ups are small")
        return notes


def _ratio(a: float, b: float) -> float:
    # rusage has microsecond resolution; a 0 µs run is below what can be measured.
    return max(a, 1e-6) / max(b, 1e-6)
