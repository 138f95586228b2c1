"""A/A precision: does a byte-identical copy of the baseline measure 1.00x?

For each program under bench/programs, build ``gcc -O3``, copy the binary byte for byte to a
second file, and time copy against original two ways:

- ours: ``executor.benchmark`` with default ``BenchmarkOptions`` (interleaved rounds, CPU
  time from the sandbox, median ratio with a bootstrap 95% CI);
- the paper's: per test ``hyperfine --warmup 3 --runs 10`` of each binary (sequential, wall
  time, mean), per-test speed-up mean_original/mean_copy clamped below at 1.0, averaged
  over tests.

Each protocol is repeated over several trials per program (interleaved with each other, so
both see the same machine). Any speed-up either reports is false: the binaries are the same.

Run:  .venv/bin/python bench/aa_precision.py [--quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import _common as c
import numpy as np

from asmopt.executor.benchmark import (
    BenchmarkOptions,
    benchmark,
    bootstrap_median_ci,
    order_statistic_median_ci,
)
from asmopt.executor.sandbox import Sandbox

FALSE_SPEEDUP = 1.05  # what counts as "reports a speed-up" in the paper's terms


@dataclass
class ProgramResult:
    name: str
    kind: str  # "compute" or "start-up"
    tests: int
    baseline_cpu_ms: float = 0.0
    ours: list[dict] = field(default_factory=list)  # one SpeedupEstimate.to_dict() per trial
    paper: list[float] = field(default_factory=list)  # the paper's speed-up per trial
    paper_raw: list[list[tuple[float, float]]] = field(default_factory=list)


def run_program(
    sandbox: Sandbox,
    helper: Path,
    name: str,
    kind: str,
    max_tests: int,
    our_trials: int,
    paper_trials: int,
    options: BenchmarkOptions,
    work: Path,
) -> ProgramResult:
    prog = c.load_program(name)
    tests = prog.tests[:max_tests]
    folder = work / name
    original = c.build(prog.source, folder, "original", "gcc", ["-O3"])
    copy = c.identical_copy(original, folder / "copy.bin")
    inputs = c.write_inputs(tests, folder / "inputs")
    result = ProgramResult(name, kind, len(tests))
    for trial in range(max(our_trials, paper_trials)):
        if trial < our_trials:
            est = benchmark(sandbox, original, copy, tests, options)
            result.ours.append({**est.to_dict(), "samples": list(est.samples)})
            result.baseline_cpu_ms = est.baseline_cpu_seconds * 1e3 / len(tests)
        if trial < paper_trials:
            pairs = [tuple(c.hyperfine_means(helper, [(original, i), (copy, i)])) for i in inputs]
            result.paper_raw.append([(a, b) for a, b in pairs])
            result.paper.append(c.paper_speedup([a for a, _ in pairs], [b for _, b in pairs]))
    return result


def contains_one(est: dict) -> bool:
    return est["ci_low"] <= 1.0 <= est["ci_high"]


def says_faster(est: dict) -> bool:
    """Our pipeline would offer it: the CI is wholly above 1, or the median reads >= 1.05x."""
    return est["ci_low"] > 1.0 or est["median"] >= FALSE_SPEEDUP


def report(results: list[ProgramResult]) -> bool:
    print("\nOurs: executor.benchmark, default options (interleaved, CPU time, median + CI)")
    rows = []
    for r in results:
        med = [e["median"] for e in r.ours]
        width = [e["ci_high"] - e["ci_low"] for e in r.ours]
        rows.append(
            [
                r.name,
                r.kind,
                r.tests,
                f"{r.baseline_cpu_ms:.1f}",
                f"{min(med):.3f}–{max(med):.3f}",
                f"{statistics.median(width):.3f}",
                f"{sum(contains_one(e) for e in r.ours)}/{len(r.ours)}",
                f"{sum(says_faster(e) for e in r.ours)}/{len(r.ours)}",
                f"{statistics.median(e['runs'] for e in r.ours):.0f}",
                f"{sum(e['converged'] for e in r.ours)}/{len(r.ours)}",
            ]
        )
    print(
        c.table(
            [
                "program",
                "kind",
                "tests",
                "ms/test",
                "median ratio",
                "CI width",
                "CI has 1.00",
                "says faster",
                "rounds",
                "converged",
            ],
            rows,
        )
    )
    print("(ms/test: baseline CPU per test; says faster: CI above 1 or median >= 1.05)")

    print("\nPaper: hyperfine 3 warm-ups + 10 runs per test and binary, mean wall time,")
    print("per-test speed-up clamped below at 1.0, averaged over tests")
    rows = []
    for r in results:
        # Unclamped per-test ratios show the spread the clamp turns into "speed-up".
        ratios = [a / b for trial in r.paper_raw for a, b in trial]
        rows.append(
            [
                r.name,
                r.kind,
                r.tests,
                f"{min(r.paper):.3f}",
                f"{statistics.median(r.paper):.3f}",
                f"{max(r.paper):.3f}",
                f"{min(ratios):.3f}–{max(ratios):.3f}",
                f"{sum(s >= FALSE_SPEEDUP for s in r.paper)}/{len(r.paper)}",
            ]
        )
    print(
        c.table(
            [
                "program",
                "kind",
                "tests",
                "min",
                "median",
                "max",
                "per-test A/B",
                ">= 1.05x",
            ],
            rows,
        )
    )

    ours = [e for r in results for e in r.ours]
    paper = [s for r in results for s in r.paper]
    ours_false = sum(says_faster(e) for e in ours)
    ours_in = sum(contains_one(e) for e in ours)
    progs_in = sum(all(contains_one(e) for e in r.ours) for r in results)
    paper_false = sum(s >= FALSE_SPEEDUP for s in paper)
    widths = [e["ci_high"] - e["ci_low"] for e in ours]
    print("\nSummary (identical binaries: every reported speed-up is false)")
    rows = [
        ["ours: false speed-up rate", f"{ours_false}/{len(ours)}", "0", ours_false == 0],
        [
            "ours: programs whose CI always has 1.00",
            f"{progs_in}/{len(results)} ({progs_in / len(results):.0%})",
            ">= 95%",
            progs_in >= 0.95 * len(results),
        ],
        ["ours: estimates whose CI has 1.00", f"{ours_in}/{len(ours)}", "", ""],
        ["ours: median CI width", f"{statistics.median(widths):.3f}", "", ""],
        [
            "paper: trials reporting >= 1.05x",
            f"{paper_false}/{len(paper)} ({paper_false / len(paper):.0%})",
            "",
            "",
        ],
    ]
    print(c.table(["figure", "measured", "target", "met"], rows))
    met = ours_false == 0 and progs_in >= 0.95 * len(results)
    print("\nTARGETS MET" if met else "\nTARGETS MISSED: see the rows marked 'no' above")
    return met


def replay(results: list[ProgramResult], sims: int, seed: int = 1) -> None:
    """Evidence for benchmark.py's stopping rule: rerun it on A/A round ratios drawn from
    this run's own (symmetrised: r and 1/r are equally likely for identical binaries)."""
    rules = {
        "old rule: bootstrap, min 6 rounds": ("bootstrap", 6),
        "bootstrap, min 10 rounds": ("bootstrap", 10),
        "bootstrap, min 15 rounds": ("bootstrap", 15),
        "order-statistic CI, min 6 rounds": ("order", 6),
        "now: order-statistic CI, min 10 rounds": ("order", 10),
    }
    rng = np.random.default_rng(seed)
    opts = BenchmarkOptions()
    cap = 60  # rounds; stands in for the time budget
    rows = []
    for label, (method, min_rounds) in rules.items():
        excl = fast = margin = 0
        rounds = []
        total = 0
        for r in results:
            logs = np.log([x for e in r.ours for x in e["samples"]])
            if logs.size < 4:
                continue
            pool = np.concatenate([logs, -logs])
            for _ in range(sims):
                seq = np.exp(rng.choice(pool, size=cap))
                for n in range(min_rounds, cap + 1):
                    if method == "bootstrap":
                        med, lo, hi = bootstrap_median_ci(seq[:n], 1000, int(rng.integers(1e9)))
                    else:
                        med = float(np.median(seq[:n]))
                        _, lo, hi = order_statistic_median_ci(seq[:n])
                    if (hi - lo) / 2.0 <= opts.target_rel_ci * med:
                        break
                total += 1
                rounds.append(n)
                excl += not (lo <= 1.0 <= hi)
                fast += lo > 1.0 or med >= FALSE_SPEEDUP
                margin += lo > 1.01
        rows.append(
            [
                label,
                f"{excl / total:.1%}",
                f"{fast / total:.1%}",
                f"{margin / total:.1%}",
                f"{np.median(rounds):.0f}",
            ]
        )
    print(
        f"\nReplay of the stopping rule ({sims} simulated A/A benchmarks per program, "
        f"round ratios resampled from this run's, at most {cap} rounds)"
    )
    print(
        c.table(["rule", "CI misses 1.00", "says faster", "CI low > 1.01", "median rounds"], rows)
    )
    print("(says faster: CI low > 1.00, which verify calls FASTER, or median >= 1.05)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke check, under a minute")
    ap.add_argument("--our-trials", type=int, help="benchmark() calls per program")
    ap.add_argument("--paper-trials", type=int, help="paper-protocol repeats per program")
    ap.add_argument("--tests", type=int, help="tests per compute program (first N)")
    ap.add_argument("--json", type=Path, help="write every sample here")
    ap.add_argument("--from-json", type=Path, help="report (and replay) a saved run")
    ap.add_argument(
        "--replay", type=int, default=None, help="simulated benchmarks per program (0: none)"
    )
    args = ap.parse_args(argv)
    if args.quick:
        compute, startup = c.COMPUTE[:2], c.STARTUP[:1]
        our_trials, paper_trials, max_tests = 1, 2, 2
        # Default options except a short budget, so the smoke check stays under a minute.
        options = BenchmarkOptions(budget_seconds=5.0)
    else:
        compute, startup = c.COMPUTE, c.STARTUP
        our_trials, paper_trials, max_tests = 2, 5, 5
        options = BenchmarkOptions()
    our_trials = args.our_trials or our_trials
    paper_trials = args.paper_trials or paper_trials
    max_tests = args.tests or max_tests
    replay_sims = args.replay if args.replay is not None else (20 if args.quick else 200)
    started = time.monotonic()
    if args.from_json:
        print(f"A/A precision, saved run {args.from_json}")
        saved = json.loads(args.from_json.read_text())
        results = [ProgramResult(**d) for d in saved]
    else:
        print(f"A/A precision  {c.machine_line()}")
        print(
            f"{len(compute)} compute-bound + {len(startup)} start-up-bound programs; "
            f"first {max_tests} tests of compute programs, all tests of start-up ones; "
            f"{our_trials} trial(s) ours, {paper_trials} paper; {options}"
        )
        results = measure_all(compute, startup, max_tests, our_trials, paper_trials, options)
        if args.json:
            args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1))
    met = report(results)
    if replay_sims:
        replay(results, replay_sims)
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    return 0 if met else 1


def measure_all(
    compute: Sequence[str],
    startup: Sequence[str],
    max_tests: int,
    our_trials: int,
    paper_trials: int,
    options: BenchmarkOptions,
) -> list[ProgramResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-aa-") as tmp, Sandbox() as sandbox:
        work = Path(tmp)
        helper = c.stdin_exec(work / "helper")
        plan = [(n, "compute", max_tests) for n in compute]
        plan += [(n, "start-up", 1000) for n in startup]
        for name, kind, n_tests in plan:
            t0 = time.monotonic()
            r = run_program(
                sandbox, helper, name, kind, n_tests, our_trials, paper_trials, options, work
            )
            results.append(r)
            print(f"  {name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    return results


if __name__ == "__main__":
    sys.exit(main())
