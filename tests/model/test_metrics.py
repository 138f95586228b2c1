"""The paper's metrics and the honest ones, recomputed by hand on made-up results."""

from __future__ import annotations

import math

import pytest

from asmopt.model.evaluation.metrics import (
    SampleOutcome,
    best_of_n,
    bootstrap_geomean_ci,
    geometric_mean,
    honest_choice,
    honest_metrics,
    paper_metrics,
    paper_speedup,
    same_assembly,
)


def ok(*per_test: float, speedup: float | None = None, ci=(None, None)) -> SampleOutcome:
    """A sample that passes all its tests with these per-test ratios."""
    return SampleOutcome(
        compiled=True,
        tests_passed=len(per_test),
        tests_total=len(per_test),
        per_test=per_test,
        speedup=speedup,
        ci_low=ci[0],
        ci_high=ci[1],
    )


FAILS = SampleOutcome(compiled=True, tests_passed=1, tests_total=3)
NO_BUILD = SampleOutcome(compiled=False, tests_total=3)
COPY = SampleOutcome(
    compiled=True,
    tests_passed=3,
    tests_total=3,
    identical=True,
    per_test=(1.1, 1.2, 1.0),
    speedup=1.01,
    ci_low=0.98,
    ci_high=1.04,
)


def test_per_test_slowdowns_are_clamped_to_one_before_averaging() -> None:
    # (1.5 + max(1, 0.8) + 1.1) / 3 = 1.2, not the unclamped 1.133
    assert paper_speedup(ok(1.5, 0.8, 1.1)) == pytest.approx(1.2)


def test_failures_and_copies_count_as_one() -> None:
    assert paper_speedup(FAILS) == 1.0
    assert paper_speedup(NO_BUILD) == 1.0
    # A copy of the baseline that happens to measure faster still counts 1.0 ...
    assert paper_speedup(COPY) == 1.0
    # ... and passes, as the paper marks every test of a copy as passed.
    assert COPY.all_passed
    assert not FAILS.all_passed and not NO_BUILD.all_passed


def test_best_of_n_prefers_tests_passed_then_speedup() -> None:
    samples = [NO_BUILD, FAILS, ok(1.2, 1.2, 1.2), COPY, ok(1.1, 1.1, 1.1)]
    assert best_of_n(samples) == 2
    # More tests passed beats a higher speed-up on fewer tests.
    partial_fast = SampleOutcome(compiled=True, tests_passed=2, tests_total=3, per_test=(5.0,))
    assert best_of_n([partial_fast, COPY]) == 1
    # Ties go to the first sample; no compiled sample means no best one.
    assert best_of_n([ok(1.3, 1.3), ok(1.3, 1.3)]) == 0
    assert best_of_n([NO_BUILD, NO_BUILD]) is None


def _problems() -> list[list[SampleOutcome]]:
    return [
        [ok(1.2, 1.2, speedup=1.15, ci=(1.1, 1.2))],  # correct, 1.2x (paper)
        [COPY],  # a copy: passes, 1.0x
        [FAILS],  # compiles, fails a test: 1.0x
        [NO_BUILD],  # nothing assembles: not in the speed-up list
        [ok(3.0, 0.5, speedup=0.9, ci=(0.85, 0.95))],  # paper: (3 + 1) / 2 = 2.0x
    ]


def test_paper_metrics_match_a_hand_computation() -> None:
    m = paper_metrics(_problems())
    assert m.problems == 5
    assert m.compile_rate == pytest.approx(80.0)
    assert m.pass_rate == pytest.approx(60.0)
    assert m.speedups == pytest.approx((1.2, 1.0, 1.0, 2.0))
    assert m.mean_speedup == pytest.approx(1.3)
    assert m.geomean_speedup == pytest.approx(2.4**0.25)
    assert m.p25 == pytest.approx(1.0)
    assert m.p50 == pytest.approx(1.1)
    assert m.p75 == pytest.approx(1.4)  # numpy's linear interpolation: 1.2 + 0.25 * 0.8
    assert m.max_speedup == pytest.approx(2.0)
    assert m.best == (0, 0, 0, None, 0)


def test_paper_metrics_of_nothing() -> None:
    m = paper_metrics([])
    assert m.compile_rate == 0.0 and m.mean_speedup is None and m.p50 is None


def test_honest_metrics_do_not_clamp_or_count_copies() -> None:
    h = honest_metrics(_problems(), resamples=2000)
    assert h.pass_rate == pytest.approx(40.0)  # the copy and the failures don't count
    assert h.copy_rate == pytest.approx(20.0)
    assert h.speedups == pytest.approx((1.15, 1.0, 1.0, 1.0, 0.9))
    assert h.geomean_speedup == pytest.approx((1.15 * 0.9) ** 0.2)
    assert h.ci_low is not None and h.ci_high is not None
    assert h.ci_low <= h.geomean_speedup <= h.ci_high
    assert h.faster_share == pytest.approx(0.2)
    assert h.slower_share == pytest.approx(0.2)


def test_honest_choice_takes_the_surest_gain_not_the_luckiest() -> None:
    noisy = ok(1.5, speedup=1.3, ci=(0.9, 1.8))
    sure = ok(1.1, speedup=1.1, ci=(1.05, 1.15))
    assert honest_choice([noisy, sure]) == 1
    assert honest_choice([COPY, FAILS, NO_BUILD]) is None


def test_geometric_mean_and_its_bootstrap_interval() -> None:
    assert geometric_mean([2.0, 0.5]) == pytest.approx(1.0)
    assert geometric_mean([]) is None
    with pytest.raises(ValueError):
        geometric_mean([1.0, 0.0])
    assert bootstrap_geomean_ci([1.5]) == (1.5, 1.5)
    low, high = bootstrap_geomean_ci([0.9, 1.0, 1.1, 1.2], resamples=1000, seed=1)
    assert 0.9 <= low < high <= 1.2
    assert bootstrap_geomean_ci([0.9, 1.0, 1.1, 1.2], resamples=1000, seed=1) == (low, high)


def test_identity_is_the_papers_strip_comparison() -> None:
    base = "\t.text\nmain:\n\tret\n"
    assert same_assembly("```assembly\n" + base + "```", base)
    assert same_assembly("\n\n" + base + "   \n", base)
    assert not same_assembly(base.replace("ret", "ret\n\tnop"), base)


def test_outcomes_survive_json() -> None:
    sample = ok(1.2, 0.9, speedup=1.05, ci=(1.0, 1.1))
    again = SampleOutcome.from_dict(sample.to_dict())
    assert again == sample
    assert math.isclose(paper_speedup(again), 1.1)
