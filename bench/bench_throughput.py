"""Bench throughput: data-set rows fully judged per minute by ``asmopt bench``.

A data set is built from a directory of C programs with tests (``asmopt dataset build``; not
timed), then ``run_bench`` judges every row as ``asmopt bench DATA --policy compiler`` would:
the row's baseline assembled and run on its tests in the sandbox, the embedded ``compiler``
policy's samples generated (clang -O3 first, then profile-guided builds, ...), each verified
(build, every test in the sandbox, then the interleaved benchmark until the 95% CI is within
``--ci`` or ``--budget`` seconds are spent). The figure is rows per minute of wall time on
``--workers`` processes; no row is served from the result store.

Run:  .venv/bin/python bench/bench_throughput.py [--src DIR] [--workers 2] [--samples 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

try:
    from asmopt.executor.benchmark import BenchmarkOptions
    from asmopt.executor.sandbox import SandboxLimits
    from asmopt.executor.verify import VerifyOptions
    from asmopt.model.evaluation.dataset import read_dataset
    from asmopt.model.evaluation.dataset_build import BuildOptions, build_dataset
    from asmopt.model.evaluation.evaluate import BenchOptions, PolicySpec, describe, run_bench
    from asmopt.model.evaluation.report import build_report
except ImportError as err:  # run with the system Python instead of the project's venv
    sys.exit(f"cannot import asmopt ({err}): run with .venv/bin/python, or pip install -e .")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT / "tests" / "data" / "programs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=1, help="compiler variants per row")
    parser.add_argument("--budget", type=float, default=10.0, help="benchmark seconds/candidate")
    parser.add_argument("--ci", type=float, default=0.02, help="target 95%% CI half-width")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="asmopt-throughput-") as tmp:
        build_dataset(args.src, Path(tmp) / "ds", BuildOptions(val_fraction=0.0))
        data = read_dataset(Path(tmp) / "ds" / "train.parquet")
        options = BenchOptions(
            samples=args.samples,
            workers=args.workers,
            verify=VerifyOptions(
                limits=SandboxLimits(wall_seconds=10, cpu_seconds=11),
                bench=BenchmarkOptions(target_rel_ci=args.ci, budget_seconds=args.budget),
            ),
        )
        started = time.monotonic()
        result = run_bench(data, PolicySpec(names=("compiler",)), Path(tmp) / "out", options)
        seconds = time.monotonic() - started
    report = build_report(result, data=str(args.src))
    candidates = sum(len(r.samples) for r in result.rows)
    tests = sum(len(p.tests) for p in data.problems)
    print(f"machine: {os.cpu_count()} cores; workers: {args.workers}; samples/row: {args.samples}")
    print(f"data: {len(data)} rows from {args.src} ({tests} tests)")
    print(f"bench: {describe(result)}; {candidates} candidates verified")
    print(
        f"throughput: {60 * len(result.rows) / seconds:.1f} rows/min, "
        f"{60 * candidates / seconds:.1f} candidates/min ({seconds:.1f} s wall)"
    )
    p, h = report["paper"], report["honest"]
    print(
        f"paper: pass {p['pass_rate']:.0f}%, mean {p['mean_speedup']:.3f}x | honest: geomean "
        f"{h['geomean_speedup']:.3f}x [{h['ci_low']:.3f}-{h['ci_high']:.3f}], "
        f"significantly faster {100 * h['faster_share']:.0f}%"
    )


if __name__ == "__main__":
    main()
