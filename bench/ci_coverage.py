"""Does a benchmark's 95% CI, stopped by the benchmark's own rule, cover the true speed-up?

A benchmark looks at its CI after every round from ``min_rounds`` on and stops as soon as the
CI is narrow enough (``target_rel_ci``). Each CI alone is a distribution-free 95% interval
(order statistics); stopping at the first narrow one is *optional stopping*, which can make
the interval that is reported miss more often than 5%. This script replays the benchmark's
real stopping rule and estimate (``executor.benchmark._Rounds``) on simulated round ratios
whose true median is known, for three shapes of noise (log-normal, Laplace, Student t with 2
degrees of freedom: heavy tails, like rounds hit by other load) at several spreads, with the
options a job uses: the screening's (from 6 rounds, ±5%) and the full precision's (a look at
6 rounds, then every round from 10, at the setting ``ci_target``, ±3%: what the winner's
second measurement uses); and, for comparison, the same at ±2% (the default until
2026-12-01) and that rule before it had the look at 6. It prints, per case, how
often the reported CI misses the true median, how often it would call a candidate exactly as
fast as the baseline faster (its CI above the true ratio + min_gain), and the median number
of rounds.

A fourth shape is skewed, as symmetric noise is not: a candidate 1.5x faster whose runs, like
the baseline's, are sometimes hit by a burst of other work of the same absolute size, so a
burst costs the shorter run a larger share (the true median of that ratio is computed from a
million rounds). ``--signed-rank`` adds the screening and full-precision rules with
Wilcoxon's signed-rank interval on log ratios (``ci_method="signed-rank"``), which needs
fewer rounds when rounds are symmetric; whether it may become the default turns on this
table.

    .venv/bin/python bench/ci_coverage.py [--sims N] [--seed S] [--signed-rank]

Target: every miss rate of the rules in use (the screening's and the full precision's) at
most 5% for spreads up to ``TARGET_SPREAD`` (what real rounds show here, and twice that); the
wider spreads and the rules kept for comparison are printed too. Exit status 0 when met, 1
when not.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, table

from asmopt.executor.benchmark import BenchmarkOptions, _Rounds
from asmopt.model.settings import Settings

SPREADS = (0.003, 0.01, 0.02, 0.03, 0.05, 0.08)  # sigma of log(ratio)
# The target holds up to this spread: the rounds of real jobs on the 2-core machine show a
# sigma (1.4826 MAD of log ratio) of 0.001-0.011 (bench/README.md); wider ones are printed as
# what the rule does there.
TARGET_SPREAD = 0.02
SHAPES = ("log-normal", "Laplace", "t(2)")
MAX_ROUNDS = 60  # stands in for the time budget
MIN_GAIN = 0.01  # verify calls FASTER only when the CI's lower bound is above 1 + this


BURSTS = "bursts, 1.5x"
BURST_SPEEDUP = 1.5
BURST_CHANCE = 0.15  # of a run being hit
BURST_SIZE = 0.05  # mean extra time of a hit, as a share of the baseline's run


def _burst_ratios(rng: np.random.Generator, sigma: float, n: int) -> np.ndarray:
    """Round ratios of a candidate ``BURST_SPEEDUP`` times faster, each run with log-normal
    noise ``sigma`` plus, now and then, a burst of extra time whose size does not depend on
    the run's length (see the module docstring)."""
    a = np.exp(sigma * rng.standard_normal(n))
    b = np.exp(sigma * rng.standard_normal(n)) / BURST_SPEEDUP
    for run in (a, b):
        hit = rng.random(n) < BURST_CHANCE
        run += hit * rng.exponential(BURST_SIZE, n)
    return a / b


def _ratios(rng: np.random.Generator, shape: str, sigma: float, n: int) -> np.ndarray:
    if shape == BURSTS:
        return _burst_ratios(rng, sigma, n)
    return np.exp(sigma * _noise(rng, shape, n))


def _noise(rng: np.random.Generator, shape: str, n: int) -> np.ndarray:
    if shape == "log-normal":
        return rng.standard_normal(n)
    if shape == "Laplace":
        return rng.laplace(size=n) / np.sqrt(2.0)  # unit variance, as the others near it
    return rng.standard_t(2, n) / 2.0


def replay(ratios: np.ndarray, opts: BenchmarkOptions) -> tuple[float, float, int]:
    """The benchmark's own stopping rule and estimate on these round ratios, in order:
    (CI low, CI high, rounds)."""
    rounds = _Rounds(started=time.monotonic())
    for r in ratios:
        if rounds.add([float(r)], [1.0], [float(r), 1.0], opts, None):
            break
    est = rounds.estimate(["t"], opts)
    return est.ci_low, est.ci_high, est.runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sims", type=int, default=2000, help="simulated benchmarks per case")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--signed-rank", action="store_true", help="also Wilcoxon's interval")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    target = Settings().ci_target
    full = replace(
        BenchmarkOptions(), budget_seconds=1e9, max_rounds=MAX_ROUNDS, target_rel_ci=target
    )
    two = replace(full, target_rel_ci=0.02)
    rules = {
        "screening (min 6, ±5%)": replace(full, min_rounds=6, target_rel_ci=0.05),
        f"full precision (at 6, from 10; ±{target:.0%})": full,
        "the same at ±2%": two,
        "before: from 10 only (±2%)": replace(two, early_look=0),
    }
    in_use = set(list(rules)[:2])  # the target is judged on these; the rest compare
    shapes = (*SHAPES, BURSTS)
    if args.signed_rank:
        signed = replace(full, ci_method="signed-rank")
        rules["signed-rank screening"] = replace(signed, min_rounds=6, target_rel_ci=0.05)
        rules["signed-rank full precision"] = signed
    truth = {shape: 1.0 for shape in SHAPES}
    for sigma in SPREADS:
        truth[(BURSTS, sigma)] = float(np.median(_burst_ratios(rng, sigma, 1_000_000)))
    print(f"CI coverage under the benchmark's stopping rule  {machine_line()}")
    print(
        f"{args.sims} simulated benchmarks per case, true median 1.00 (with bursts: "
        f"{BURST_SPEEDUP}x, less what bursts cost), at most {MAX_ROUNDS} rounds\n"
    )
    worst = beyond = 0.0
    rows = []
    for label, opts in rules.items():
        for shape in shapes:
            for sigma in SPREADS:
                true = truth[(shape, sigma)] if shape == BURSTS else 1.0
                miss = faster = 0
                used = []
                for _ in range(args.sims):
                    ratios = _ratios(rng, shape, sigma, MAX_ROUNDS)
                    low, high, n = replay(ratios, opts)
                    miss += not low <= true <= high
                    faster += low > true * (1.0 + MIN_GAIN)
                    used.append(n)
                rate = miss / args.sims
                if label not in in_use:
                    pass
                elif sigma <= TARGET_SPREAD:
                    worst = max(worst, rate)
                else:
                    beyond = max(beyond, rate)
                rows.append([label, shape, f"{sigma:.3f}", f"{rate:.1%}",
                             f"{faster / args.sims:.1%}", f"{np.median(used):.0f}"])  # fmt: skip
    header = ["rule", "noise", "sigma", "CI misses", "CI above +1%", "median rounds"]
    print(table(header, rows))
    met = worst <= 0.05
    print(
        f"\nworst miss rate of the rules in use up to sigma {TARGET_SPREAD}: {worst:.1%} "
        f"(target at most 5%: {'met' if met else 'NOT MET'}); at wider spreads: up to "
        f"{beyond:.1%}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
