"""The racing rule (executor.benchmark.RacingRule / Race): its stated error rate, checked by
simulation on synthetic round-ratio streams, and that it does stop what is clearly slower."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asmopt.executor.benchmark import (
    Race,
    RacingRule,
    median_bounds,
    one_sided_rank,
)


def test_one_sided_bounds_hold_with_their_stated_error():
    rng = np.random.default_rng(1)
    error = 0.01
    misses_low = misses_high = 0
    trials = 4000
    for _ in range(trials):
        data = rng.standard_cauchy(20)  # heavy tails: the bound is distribution-free
        low, high = median_bounds(data, error)
        misses_low += low > 0.0
        misses_high += high < 0.0
    # The largest k whose side errs at most 1%: P(Bin(20, 1/2) <= 4) = 0.6%, <= 5 is 2.1%.
    assert one_sided_rank(20, error) == 5
    assert misses_low / trials < 2 * error
    assert misses_high / trials < 2 * error


def test_no_bound_before_enough_samples():
    assert median_bounds([1.0, 2.0, 3.0], 0.001) == (-math.inf, math.inf)
    rule = RacingRule(contenders=9)
    assert rule.bounds([1.0] * (rule.start - 1)) == (-math.inf, math.inf)


def _stream(rng, median: float, n: int, kind: str) -> list[float]:
    """Round ratios with the given median: log-normal, or with heavy outliers (load)."""
    noise = rng.normal(0.0, 0.03, n)
    if kind == "outliers":
        spikes = rng.random(n) < 0.15
        noise = np.where(spikes, noise + rng.choice([-0.4, 0.3], n), noise)
    # Symmetric noise about 0 in log space keeps the median at ``median``... except for the
    # asymmetric spikes, whose median shift is measured below from a huge sample.
    return list(median * np.exp(noise))


def _median_of(kind: str, median: float) -> float:
    rng = np.random.default_rng(99)
    return float(np.median(_stream(rng, median, 400_000, kind)))


def _simulate(medians: list[float], kind: str, trials: int, seed: int, max_rounds: int = 40):
    """Race candidates the way a job does (two timed at once, in order of arrival) and
    count how often candidate 0 is stopped."""
    rng = np.random.default_rng(seed)
    stopped_first = 0
    rounds_used = []
    for _ in range(trials):
        race = Race(RacingRule(contenders=len(medians), min_gain=0.01))
        order = list(rng.permutation(len(medians)))
        # Two lanes, round-robin, like two workers timing two candidates at once.
        streams = {i: _stream(rng, medians[i], max_rounds, kind) for i in order}
        active = order[:2]
        queue = order[2:]
        seen = {i: 0 for i in order}
        while active:
            for i in list(active):
                seen[i] += 1
                reason = race.check(str(i), str(i), streams[i][: seen[i]])
                if reason or seen[i] >= max_rounds:
                    if reason and i == 0:
                        stopped_first += 1
                    rounds_used.append(seen[i])
                    active.remove(i)
                    if queue:
                        active.append(queue.pop(0))
    return stopped_first / trials, float(np.mean(rounds_used))


@pytest.mark.parametrize("kind", ["lognormal", "outliers"])
def test_the_true_best_is_stopped_less_often_than_alpha(kind):
    # Candidate 0 is the best (1.50x); a rival is nearly as good, the others are not.
    medians = [1.50, 1.47, 1.30, 1.02, 1.0, 0.9]
    assert _median_of(kind, 1.50) >= _median_of(kind, 1.47)
    rate, _ = _simulate(medians, kind, trials=400, seed=3)
    assert rate <= RacingRule().alpha


def test_ties_the_worst_case_stay_under_alpha():
    # Every candidate is equally good: whichever is "the best", it must survive.
    rate, _ = _simulate([1.3] * 6, "outliers", trials=400, seed=4)
    assert rate <= RacingRule().alpha


def test_a_clearly_slower_candidate_stops_after_a_few_rounds():
    rng = np.random.default_rng(5)
    rule = RacingRule(contenders=4)
    race = Race(rule)
    best = _stream(rng, 1.6, rule.start, "lognormal")
    assert race.check("best", "clang -O3", best) is None
    slow = _stream(rng, 1.0, rule.start, "lognormal")
    reason = None
    for n in range(1, rule.start + 1):
        reason = race.check("slow", "gcc -O2", slow[:n])
        if reason:
            break
    # Every round below every round of the best: stopped at an early look, long before the
    # median bounds could say anything.
    assert n in rule.early_looks and n < rule.start
    assert reason is not None and "slower than clang -O3" in reason


def test_without_early_looks_it_waits_for_the_median_bounds():
    rng = np.random.default_rng(5)
    rule = RacingRule(contenders=4, early_looks=())
    race = Race(rule)
    race.check("best", "clang -O3", _stream(rng, 1.6, rule.start, "lognormal"))
    slow = _stream(rng, 1.0, rule.start, "lognormal")
    stops = [n for n in range(1, rule.start + 1) if race.check("slow", "slow", slow[:n])]
    assert stops == [rule.start]


def test_a_candidate_slower_than_the_baseline_stops_as_not_faster():
    rng = np.random.default_rng(6)
    rule = RacingRule(contenders=2)
    race = Race(rule)
    slower = _stream(rng, 0.9, 60, "lognormal")
    reasons = [race.check("slow", "slow", slower[:n]) for n in range(1, 61)]
    first = next(n for n, r in enumerate(reasons, 1) if r)
    assert "not faster than the baseline" in (reasons[first - 1] or "")
    assert first <= 2 * rule.start


def test_racing_saves_rounds_on_a_typical_field():
    medians = [1.66, 1.0, 1.63, 1.64, 1.65, 1.0, 1.0, 1.0, 1.0]
    _, mean_rounds = _simulate(medians, "lognormal", trials=100, seed=7, max_rounds=40)
    assert mean_rounds < 30  # without racing every candidate here would take 40


def _stopped(ratios: list[float], **options) -> tuple[int, object]:
    """How many of ``ratios`` (round ratios, in order) a benchmark times before it stops, and
    its estimate, under its own rule (``benchmark._Rounds``)."""
    import time

    from asmopt.executor.benchmark import BenchmarkOptions, _Rounds

    opts = BenchmarkOptions(budget_seconds=1e9, **options)
    rounds = _Rounds(started=time.monotonic())
    for r in ratios:
        if rounds.add([r], [1.0], [r, 1.0], opts, None):
            break
    return len(rounds.ratios), rounds.estimate(["t"], opts)


def test_a_benchmark_looks_at_its_ci_after_6_rounds_then_after_every_round_from_10():
    """Quiet rounds stop at 6 with the CI of those 6 (the extremes: exact coverage 96.9%);
    otherwise no look happens before 10, so a CI that narrows by chance at 7-9 rounds is
    not the one reported (bench/ci_coverage.py: the reported CI then misses at most 4% of
    the time for round spreads up to 2%)."""
    quiet = [1.50, 1.51, 1.49, 1.50, 1.52, 1.50, *[1.50] * 10]
    n, est = _stopped(quiet)
    assert n == 6 and est.converged and (est.ci_low, est.ci_high) == (1.49, 1.52)
    assert _stopped(quiet, early_look=0)[0] == 10
    # One outlier each way: the 95% CI of 9 rounds is [x2, x8], narrow here; of 6-8 it is
    # the whole range.
    outliers = [1.20, 1.50, 1.51, 1.80, 1.49, 1.50, 1.51, 1.50, 1.49, 1.50, 1.50, 1.51]
    n, est = _stopped(outliers)
    assert n == 10 and est.converged and 1.49 <= est.ci_low < est.ci_high <= 1.51
    assert _stopped(outliers, min_rounds=6, early_look=0)[0] == 9  # a look every round
