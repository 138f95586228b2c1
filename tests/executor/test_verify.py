"""The verify pipeline and the benchmark: verdicts a user sees, speed-ups that hold up."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from asmopt.executor.benchmark import (
    BenchmarkOptions,
    bootstrap_median_ci,
    order_statistic_median_ci,
    outlier_count,
)
from asmopt.executor.results import TestStatus, Verdict
from asmopt.executor.sandbox import Sandbox, SandboxLimits
from asmopt.executor.store import ResultStore
from asmopt.executor.testcases import TestCase
from asmopt.executor.verify import (
    BaselineError,
    VerificationResult,
    VerifyOptions,
    prepare_baseline,
    verify_candidate,
)

# A loop whose -O0 build is several times slower than its -O3 build: a known, large effect.
SUM = r"""
#include <stdio.h>
static unsigned a[1 << 16];
int main(void) {
    long n; if (scanf("%ld", &n) != 1) return 1;
    for (long r = 0; r <= n >> 16; r++)
        for (int i = 0; i < (1 << 16); i++) a[i] = a[i] * 3u + (unsigned)i;
    unsigned long acc = 0;
    for (int i = 0; i < (1 << 16); i++) acc += a[i] ^ (acc >> 3);
    printf("%lu\n", acc);
    return 0;
}
"""

FAST = BenchmarkOptions(min_rounds=6, budget_seconds=8, target_rel_ci=0.03)


def _asm(tmp: Path, code: str, *flags: str) -> str:
    src = tmp / "p.c"
    src.write_text(code)
    out = tmp / "p.s"
    subprocess.run(["gcc", *flags, "-S", str(src), "-o", str(out)], check=True)
    return out.read_text()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("verify")
    src = root / "sum.c"
    src.write_text(SUM)
    tests = [TestCase("small", b"1000\n", None), TestCase("big", b"100000000\n", None)]
    options = VerifyOptions(bench=FAST, limits=SandboxLimits(wall_seconds=20, cpu_seconds=20))
    sandbox = Sandbox(options.limits)
    baseline = prepare_baseline(src, tests, root / "work", sandbox, options=options)
    yield sandbox, baseline, options
    sandbox.close()


def test_identical_copy_is_not_faster(setup) -> None:
    sandbox, baseline, options = setup
    result = verify_candidate(baseline.asm, baseline, sandbox, options)
    assert result.all_passed
    assert result.identical_to_baseline
    assert result.verdict is Verdict.NOT_FASTER
    assert result.speedup is not None
    # A 95% CI misses 1.00 one run in twenty by design (a full suite run once found
    # [1.010, 1.043] for the copy): what holds every time is the verdict, and the CI within
    # the benchmark's precision (FAST: ±3%) of 1.00.
    tolerance = 1.0 + FAST.target_rel_ci
    assert result.speedup.ci_low <= tolerance and result.speedup.ci_high >= 1.0 / tolerance


def test_slower_build_is_measured_as_slower(setup, tmp_path: Path) -> None:
    sandbox, baseline, options = setup
    result = verify_candidate(_asm(tmp_path, SUM, "-O0"), baseline, sandbox, options)
    assert result.all_passed
    assert result.verdict is Verdict.NOT_FASTER
    assert result.speedup is not None and result.speedup.significant_slower
    assert result.speedup.median < 0.8
    assert set(result.speedup.per_test) == {"small", "big"}


def test_expected_output_comes_from_the_baseline(setup, tmp_path: Path) -> None:
    sandbox, baseline, options = setup
    assert baseline.expected["small"].strip().isdigit()
    wrong = SUM.replace("a[i] * 3u", "a[i] * 5u")
    result = verify_candidate(_asm(tmp_path, wrong, "-O2"), baseline, sandbox, options)
    assert result.verdict is Verdict.TESTS_FAILED
    assert any(t.status is TestStatus.WRONG_OUTPUT for t in result.tests)
    assert result.speedup is None


def test_assembly_errors_point_at_lines(setup) -> None:
    sandbox, baseline, options = setup
    asm = baseline.asm.replace("\tret\n", "\tret\n\tbogus %rax\n", 1)
    result = verify_candidate(asm, baseline, sandbox, options)
    assert result.verdict is Verdict.BUILD_FAILED
    assert result.build is not None and result.build.diagnostics
    line = result.build.diagnostics[0].line
    assert line is not None and "bogus" in asm.splitlines()[line - 1]


def test_store_remembers_results_across_instances(setup, tmp_path: Path) -> None:
    sandbox, baseline, options = setup
    asm = _asm(tmp_path, SUM, "-O1")
    first = verify_candidate(asm, baseline, sandbox, options, store=ResultStore(tmp_path))
    assert not first.cached
    again = verify_candidate(asm, baseline, sandbox, options, store=ResultStore(tmp_path))
    assert again.cached
    assert again.verdict is first.verdict
    assert again.to_dict()["tests"] == first.to_dict()["tests"]
    assert again.speedup is not None and first.speedup is not None
    assert again.speedup.median == first.speedup.median


def test_a_measurement_its_job_withdrew_is_not_stored(setup, tmp_path: Path) -> None:
    """A race lane that says WITHDRAWN cuts the timing short; that result says nothing of the
    candidate, so a later job measures it anew instead of finding it in the store."""
    from asmopt.executor.benchmark import WITHDRAWN
    from asmopt.executor.verify import withdrawn

    sandbox, baseline, options = setup
    asm = _asm(tmp_path, SUM, "-O1")

    def lane(ratios, walls):
        return f"{WITHDRAWN}another is surely faster"

    cut = verify_candidate(asm, baseline, sandbox, options, store=ResultStore(tmp_path), race=lane)
    assert withdrawn(cut) and cut.speedup is not None and cut.speedup.runs == 1
    again = verify_candidate(asm, baseline, sandbox, options, store=ResultStore(tmp_path))
    assert not again.cached and not withdrawn(again)


def test_round_trip_of_the_json_shape(setup) -> None:
    sandbox, baseline, options = setup
    result = verify_candidate(baseline.asm, baseline, sandbox, options)
    data = result.to_dict()
    assert {"verdict", "tests", "speedup"} <= set(data)
    assert {"passed", "total", "verdicts"} <= set(data["tests"])
    assert {"median", "ci_low", "ci_high", "runs"} <= set(data["speedup"])
    back = VerificationResult.from_dict(data)
    assert back.to_dict()["speedup"] == data["speedup"]


def test_baseline_that_fails_its_own_tests_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "p.c"
    src.write_text('#include <stdio.h>\nint main(void){puts("1");return 0;}\n')
    with Sandbox() as box, pytest.raises(BaselineError, match="fails its own test t"):
        prepare_baseline(src, [TestCase("t", b"", b"2\n")], tmp_path / "w", box)


def test_c_that_does_not_compile_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "p.c"
    src.write_text("int main(void) { return x; }\n")
    with Sandbox() as box, pytest.raises(BaselineError, match="does not compile"):
        prepare_baseline(src, [TestCase("t", b"", None)], tmp_path / "w", box)


def test_bootstrap_ci_covers_the_median_and_narrows_with_data() -> None:
    rng = np.random.default_rng(1)
    few = rng.normal(1.0, 0.05, 8)
    many = rng.normal(1.0, 0.05, 200)
    m1, lo1, hi1 = bootstrap_median_ci(few)
    m2, lo2, hi2 = bootstrap_median_ci(many)
    assert lo1 <= m1 <= hi1 and lo2 <= m2 <= hi2
    assert hi2 - lo2 < hi1 - lo1
    assert lo2 < 1.0 < hi2


def test_outliers_are_counted() -> None:
    assert outlier_count([1.0, 1.01, 0.99, 1.0, 1.02, 3.0]) == 1
    assert outlier_count([1.0, 1.0, 1.0]) == 0


def test_order_statistic_ci_has_its_promised_coverage() -> None:
    """On skewed data, the distribution-free interval covers the true median >= 95% of the
    time even at 10 samples (a percentile bootstrap does not)."""
    rng = np.random.default_rng(7)
    true_median = float(np.log(2.0))  # median of an exponential with rate 1
    hits = 0
    trials = 2000
    for _ in range(trials):
        _, lo, hi = order_statistic_median_ci(rng.exponential(1.0, 10))
        hits += lo <= true_median <= hi
    assert hits / trials >= 0.95


def test_signed_rank_ci_matches_the_tables_and_covers_symmetric_rounds() -> None:
    from asmopt.executor.intervals import _signed_rank_cdf, signed_rank_median_ci

    # The two-sided 5% critical values of Wilcoxon's T in every table: 8 (n=10), 52 (n=20).
    for n, critical in ((10, 8), (20, 52)):
        cdf = _signed_rank_cdf(n)
        assert cdf[critical] <= 0.025 < cdf[critical + 1]
    data = [1.0, 1.2, 0.9, 1.1, 1.05]  # too few for 95%: the whole range
    _, lo, hi = signed_rank_median_ci(data)
    assert (lo, hi) == pytest.approx((0.9, 1.2))
    # Symmetric log ratios (a t distribution, heavy tails): at 10 rounds it covers the median
    # as often as it promises (exactly 95.1%; 2000 trials see that within 3 standard errors,
    # 1.5%), and is narrower than the order-statistic interval on the same rounds.
    rng = np.random.default_rng(3)
    hits, narrower, trials = 0, 0, 2000
    for _ in range(trials):
        ratios = np.exp(0.02 * rng.standard_t(3, 10))
        _, lo, hi = signed_rank_median_ci(ratios)
        _, olo, ohi = order_statistic_median_ci(ratios)
        hits += lo <= 1.0 <= hi
        narrower += hi / lo < ohi / olo
    assert abs(hits / trials - (1.0 - 2.0 * _signed_rank_cdf(10)[8])) < 0.015
    assert narrower / trials > 0.7


def test_order_statistic_ci_is_the_whole_range_when_data_is_scarce() -> None:
    data = [1.0, 1.2, 0.9, 1.1, 1.05]
    median, lo, hi = order_statistic_median_ci(data)
    assert (lo, hi) == (0.9, 1.2) and median == 1.05


def test_no_speed_up_is_claimed_from_fewer_rounds_than_a_95_percent_ci_needs() -> None:
    """Two rounds' extremes cover the median half the time: a tie timed twice would be called
    faster one time in four. Timing goes on past the budget to 6 rounds, and fewer (a race's
    early stop, a cancel) never make a candidate faster."""
    import time

    from asmopt.executor.benchmark import _Rounds
    from asmopt.executor.intervals import MIN_CI_SAMPLES
    from asmopt.executor.results import BuildResult, SpeedupEstimate
    from asmopt.executor.verify import _Tested, _timed_verdict

    spent = BenchmarkOptions(budget_seconds=0.0, min_rounds=3, target_rel_ci=0.5)
    rounds = _Rounds(started=time.monotonic() - 1.0)
    stops = [rounds.add([1.3], [1.0], [1.3, 1.0], spent, None) for _ in range(MIN_CI_SAMPLES)]
    assert stops == [False] * (MIN_CI_SAMPLES - 1) + [True]
    # Once a round is no faster, 6 rounds could not claim a speed-up either: it stops there.
    rounds = _Rounds(started=time.monotonic() - 1.0)
    assert not rounds.add([1.3], [1.0], [1.3, 1.0], spent, None)
    assert rounds.add([0.9], [1.0], [0.9, 1.0], spent, None)

    tested = _Tested("c", BuildResult(ok=True, output=None, command=()), identical=False)
    for runs, verdict in (
        (MIN_CI_SAMPLES - 1, Verdict.NOT_FASTER),
        (MIN_CI_SAMPLES, Verdict.FASTER),
    ):
        speedup = SpeedupEstimate(1.3, 1.2, 1.4, runs, 1.0, 1 / 1.3)
        result = _timed_verdict(speedup, VerifyOptions(), tested, [])
        assert result.verdict is verdict, result.message
    assert (
        "too few for a 95% CI"
        in _timed_verdict(
            SpeedupEstimate(1.3, 1.2, 1.4, 2, 1.0, 1 / 1.3), VerifyOptions(), tested, []
        ).message
    )
