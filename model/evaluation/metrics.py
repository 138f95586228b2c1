"""The paper's metrics, exactly as its code computes them, and honest ones beside them.

Everything here is a pure function of :class:`SampleOutcome` values, so each figure can be
checked by hand. The paper's rules (``src/test_benchmark.py`` and ``src/metrics.py`` of
``Anjiang-Wei/SuperCoder``):

- a sample's per-test speed-up is baseline time / candidate time for each test it passes,
  clamped below at 1.0 (a slower test counts as 1.0); a sample's speed-up is the mean over
  its tests, and 1.0 when any test fails or when its text equals the baseline's (``strip()``
  on both sides);
- a sample identical to the baseline counts as passing every test;
- best of N: the sample with the most tests passed, then the highest speed-up, among the
  samples that assembled (ties: the first);
- compile rate: problems with at least one sample that assembled and linked; pass rate:
  problems whose best sample passes every test;
- the speed-up list has one entry per problem with at least one sample that assembled (the
  best sample's speed-up, or 1.0 when it fails a test): problems none of whose samples
  assembled are left out of it, as the paper's ``calculate_metrics`` does;
- mean, median, 25th/75th percentiles (numpy's linear interpolation), max and (population)
  standard deviation of that list; we add its geometric mean.

Where asmopt measures differently: the paper's per-test ratio is a ratio of hyperfine means
(3 warm-ups, 10 runs, wall time); asmopt's is the median over interleaved rounds of
baseline/candidate CPU time for that test (``SpeedupEstimate.per_test``).

The honest metrics do not clamp, do not count copies of the baseline as successes, and carry
uncertainty: see :func:`honest_metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "HonestMetrics",
    "PaperMetrics",
    "SampleOutcome",
    "best_of_n",
    "bootstrap_geomean_ci",
    "geometric_mean",
    "honest_choice",
    "honest_metrics",
    "honest_speedup",
    "paper_metrics",
    "paper_speedup",
    "same_assembly",
]


def same_assembly(candidate: str, baseline: str) -> bool:
    """The paper's identity test: both texts, fences removed, equal after ``strip()``."""

    def clean(text: str) -> str:
        return text.replace("```assembly\n", "").replace("```", "").strip()

    return clean(candidate) == clean(baseline)


@dataclass(frozen=True)
class SampleOutcome:
    """What happened to one sample (one candidate) of one problem.

    ``per_test`` holds the measured baseline/candidate ratio of each test (> 1 is faster),
    unclamped; it is empty when the candidate was not timed. ``speedup`` with
    ``ci_low``/``ci_high`` is asmopt's whole-workload estimate (median ratio of summed CPU
    time over interleaved rounds, 95% bootstrap CI).
    """

    compiled: bool
    tests_passed: int = 0
    tests_total: int = 0
    identical: bool = False
    per_test: tuple[float, ...] = ()
    speedup: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    @property
    def all_passed(self) -> bool:
        """Every test passes (the paper: ``num_successful == num_total``, so a copy of the
        baseline, which it marks as passing every test, counts)."""
        if not self.compiled:
            return False
        return self.identical or self.tests_passed == self.tests_total

    @property
    def paper_tests_passed(self) -> int:
        # The paper does not run a copy of the baseline; it marks every test passed.
        return self.tests_total if self.identical and self.compiled else self.tests_passed

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_test"] = list(self.per_test)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleOutcome:
        return cls(
            compiled=bool(data["compiled"]),
            tests_passed=int(data.get("tests_passed", 0)),
            tests_total=int(data.get("tests_total", 0)),
            identical=bool(data.get("identical", False)),
            per_test=tuple(float(x) for x in data.get("per_test", ())),
            speedup=data.get("speedup"),
            ci_low=data.get("ci_low"),
            ci_high=data.get("ci_high"),
        )


# --------------------------------------------------------------------------- the paper's


def paper_speedup(sample: SampleOutcome) -> float:
    """A sample's speed-up as the paper computes it: 1.0 unless every test passes and the
    text differs from the baseline; else the mean over tests of max(1, ratio) (1.0 when no
    test was timed)."""
    if not sample.compiled or sample.identical or not sample.all_passed:
        return 1.0
    if not sample.per_test:
        return 1.0
    return float(np.mean([max(1.0, r) for r in sample.per_test]))


def best_of_n(samples: Sequence[SampleOutcome]) -> int | None:
    """Index of the paper's best sample: most tests passed, then highest :func:`paper_speedup`,
    among samples that assembled; the first wins a tie. None when none assembled."""
    best: int | None = None
    best_key: tuple[int, float] | None = None
    for i, sample in enumerate(samples):
        if not sample.compiled:
            continue
        key = (sample.paper_tests_passed, paper_speedup(sample))
        if best_key is None or key > best_key:
            best, best_key = i, key
    return best


def geometric_mean(values: Sequence[float]) -> float | None:
    """exp(mean(log x)); None for an empty list. Values must be positive."""
    if not values:
        return None
    data = np.asarray(values, dtype=float)
    if np.any(data <= 0) or not np.all(np.isfinite(data)):
        raise ValueError("the geometric mean needs positive, finite values")
    return float(np.exp(np.mean(np.log(data))))


@dataclass(frozen=True)
class PaperMetrics:
    """The paper's summary (``calculate_metrics``), rates in percent."""

    problems: int
    compiled_problems: int
    correct_problems: int
    compile_rate: float
    pass_rate: float
    speedups: tuple[float, ...]  # one per problem with a sample that assembled
    mean_speedup: float | None
    geomean_speedup: float | None
    p25: float | None
    p50: float | None
    p75: float | None
    max_speedup: float | None
    std_speedup: float | None
    best: tuple[int | None, ...]  # the chosen sample of each problem

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["speedups"] = list(self.speedups)
        data["best"] = list(self.best)
        return data


def paper_metrics(problems: Sequence[Sequence[SampleOutcome]]) -> PaperMetrics:
    """The paper's compile %, pass %, and speed-up statistics over ``problems`` (each a list
    of its samples)."""
    total = len(problems)
    best = [best_of_n(samples) for samples in problems]
    compiled = sum(1 for b in best if b is not None)
    speedups: list[float] = []
    correct = 0
    for samples, b in zip(problems, best, strict=True):
        if b is None:
            continue  # no sample assembled: left out of the speed-up list, as in the paper
        chosen = samples[b]
        if chosen.all_passed:
            correct += 1
            speedups.append(paper_speedup(chosen))
        else:
            speedups.append(1.0)

    def pct(n: int) -> float:
        return 100.0 * n / total if total else 0.0

    if speedups:
        data = np.asarray(speedups)
        stats: dict[str, float | None] = {
            "mean_speedup": float(np.mean(data)),
            "geomean_speedup": geometric_mean(speedups),
            "p25": float(np.percentile(data, 25)),
            "p50": float(np.median(data)),
            "p75": float(np.percentile(data, 75)),
            "max_speedup": float(np.max(data)),
            "std_speedup": float(np.std(data)),
        }
    else:
        stats = dict.fromkeys(
            ("mean_speedup", "geomean_speedup", "p25", "p50", "p75", "max_speedup", "std_speedup")
        )
    return PaperMetrics(
        problems=total,
        compiled_problems=compiled,
        correct_problems=correct,
        compile_rate=pct(compiled),
        pass_rate=pct(correct),
        speedups=tuple(speedups),
        best=tuple(best),
        **stats,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- honest


def honest_choice(samples: Sequence[SampleOutcome]) -> int | None:
    """The sample a user would be offered: among those that pass every test (really run)
    and differ from the baseline, the highest lower CI bound, then the highest median, then
    the first. None when there is no such sample."""
    best: int | None = None
    best_key: tuple[float, float] | None = None
    for i, sample in enumerate(samples):
        if not sample.compiled or sample.identical or sample.tests_passed != sample.tests_total:
            continue
        if sample.tests_total == 0:
            continue
        key = (
            sample.ci_low if sample.ci_low is not None else -math.inf,
            sample.speedup if sample.speedup is not None else -math.inf,
        )
        if best_key is None or key > best_key:
            best, best_key = i, key
    return best


def honest_speedup(samples: Sequence[SampleOutcome]) -> tuple[float, float, float]:
    """(median, ci_low, ci_high) of the chosen sample, unclamped; a problem without a correct,
    changed, measured sample keeps the baseline: exactly (1, 1, 1)."""
    chosen = honest_choice(samples)
    if chosen is None:
        return 1.0, 1.0, 1.0
    s = samples[chosen]
    if s.speedup is None:
        return 1.0, 1.0, 1.0
    low = s.ci_low if s.ci_low is not None else s.speedup
    high = s.ci_high if s.ci_high is not None else s.speedup
    return float(s.speedup), float(low), float(high)


def bootstrap_geomean_ci(
    values: Sequence[float], resamples: int = 5000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap CI of the geometric mean, resampling programs with replacement."""
    data = np.log(np.asarray(values, dtype=float))
    if data.size == 0:
        raise ValueError("no values")
    if data.size == 1:
        value = float(np.exp(data[0]))
        return value, value
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.size, size=(resamples, data.size))
    means = np.exp(data[idx].mean(axis=1))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class HonestMetrics:
    """Figures that don't flatter: rates in percent, shares as fractions of all problems."""

    problems: int
    pass_rate: float  # a changed candidate passes every test (copies of the baseline don't count)
    copy_rate: float  # the paper's "passing" problems whose best sample is a copy
    speedups: tuple[float, ...]  # per problem, unclamped (1.0 where the baseline is kept)
    ci: tuple[tuple[float, float], ...]  # per problem
    geomean_speedup: float | None
    ci_low: float | None  # of the geometric mean, bootstrap over programs
    ci_high: float | None
    faster_share: float  # chosen candidate's CI low > 1
    slower_share: float  # chosen candidate's CI high < 1
    choice: tuple[int | None, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["speedups"] = list(self.speedups)
        data["ci"] = [list(c) for c in self.ci]
        data["choice"] = list(self.choice)
        return data


def honest_metrics(
    problems: Sequence[Sequence[SampleOutcome]], *, resamples: int = 5000, seed: int = 0
) -> HonestMetrics:
    """Pass rate without copies of the baseline, the unclamped geometric mean speed-up with
    a bootstrap CI over programs, and the shares of programs significantly faster / slower.

    Each problem contributes its :func:`honest_choice` sample's measured speed-up (a slower
    one stays below 1), or exactly 1.0 when it has none (the user keeps ``gcc -O3``).
    """
    total = len(problems)
    choice = [honest_choice(samples) for samples in problems]
    triples = [honest_speedup(samples) for samples in problems]
    speedups = [t[0] for t in triples]
    passed = sum(1 for c in choice if c is not None)
    copies = 0
    for samples in problems:
        b = best_of_n(samples)
        if b is not None and samples[b].identical:
            copies += 1
    geo = geometric_mean(speedups)
    low = high = None
    if speedups:
        low, high = bootstrap_geomean_ci(speedups, resamples=resamples, seed=seed)
    faster = sum(1 for t in triples if t[1] > 1.0)
    slower = sum(1 for t in triples if t[2] < 1.0)
    return HonestMetrics(
        problems=total,
        pass_rate=100.0 * passed / total if total else 0.0,
        copy_rate=100.0 * copies / total if total else 0.0,
        speedups=tuple(speedups),
        ci=tuple((t[1], t[2]) for t in triples),
        geomean_speedup=geo,
        ci_low=low,
        ci_high=high,
        faster_share=faster / total if total else 0.0,
        slower_share=slower / total if total else 0.0,
        choice=tuple(choice),
    )
