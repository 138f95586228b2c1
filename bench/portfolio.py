"""How much faster than ``gcc -O3`` the embedded default (compiler search + mixing) gets.

For every program in ``bench/compiler_programs/<name>/<name>.c`` (tests in ``tests/``) it
builds the gcc -O3 baseline, runs :func:`asmopt.model.search.portfolio.optimize` with the compiler
policy, and prints the verified speed-up (median and 95% CI) of clang -O3, gcc -O3 PGO and the
portfolio's winner, then geometric means. A program where nothing is measurably faster counts
1.00 for the portfolio (the baseline is what the user keeps).

    .venv/bin/python bench/portfolio.py [--budget 8] [--only sieve,lcs] [--json out.json]

Checks, printed at the end: the portfolio's pick is never slower (by median) than the best
single variant it measured, and never a candidate that failed a test.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from asmopt.executor.benchmark import BenchmarkOptions
from asmopt.executor.sandbox import Sandbox
from asmopt.executor.testcases import load_tests
from asmopt.executor.verify import VerifyOptions, prepare_baseline
from asmopt.model.search.compiler_search import CompilerSearchPolicy
from asmopt.model.search.policy import Request
from asmopt.model.search.portfolio import PortfolioResult, Trial, optimize

HERE = Path(__file__).resolve().parent
PROGRAMS = HERE / "compiler_programs"


def _find(result: PortfolioResult, prefix: str) -> Trial | None:
    for trial in result.trials:
        if trial.kind == "candidate" and trial.label.startswith(prefix):
            return trial
    return None


def _fmt(trial: Trial | None) -> str:
    if trial is None:
        return "—"
    if not trial.passed:
        return "fails"
    s = trial.result.speedup
    if s is None:
        return "?"
    return f"{s.median:.2f} [{s.ci_low:.2f},{s.ci_high:.2f}]"


def _median(trial: Trial | None) -> float:
    if trial is None or not trial.passed or trial.result.speedup is None:
        return 1.0
    return trial.result.speedup.median


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=8.0, help="seconds to time a candidate")
    parser.add_argument("--min-rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--only", default="", help="comma-separated program names")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args(argv)

    names = sorted(p.name for p in PROGRAMS.iterdir() if (p / f"{p.name}.c").exists())
    if args.only:
        wanted = set(args.only.split(","))
        names = [n for n in names if n in wanted]
    options = VerifyOptions(
        bench=BenchmarkOptions(
            min_rounds=args.min_rounds, budget_seconds=args.budget, target_rel_ci=0.015
        )
    )
    rows: list[dict[str, object]] = []
    problems: list[str] = []
    columns = ("gcc -O3", "clang -O3", "gcc PGO", "portfolio")
    cells = " ".join(f"{c:>20}" for c in columns[1:])
    print(f"{'program':<12} {columns[0]:>8} {cells}  pick")
    with Sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="asmopt-bench-") as tmp:
        policy = CompilerSearchPolicy(sandbox=sandbox)
        for name in names:
            source = PROGRAMS / name / f"{name}.c"
            tests_dir = PROGRAMS / name / "tests"
            started = time.monotonic()
            baseline = prepare_baseline(
                source, load_tests(tests_dir), Path(tmp) / name, sandbox, options=options
            )
            request = Request(
                baseline_asm=baseline.asm,
                c_source=source.read_text(),
                source_path=source,
                tests_dir=tests_dir,
            )
            result = optimize(request, [policy], baseline, sandbox, options, workers=args.workers)
            clang = _find(result, "clang -O3")
            pgo = _find(result, "gcc -O3 PGO")
            winner = result.winner
            portfolio = _median(winner)
            best_single = max(
                (_median(t) for t in result.trials if t.kind == "candidate" and t.passed),
                default=1.0,
            )
            if winner is not None and not winner.passed:
                problems.append(f"{name}: the pick fails a test")
            # Same measurements, so a pick below the best single variant by more than noise
            # would be a ranking bug.
            if portfolio + 0.03 < best_single and winner is not None:
                problems.append(
                    f"{name}: pick {portfolio:.2f} < best single variant {best_single:.2f}"
                )
            pick = winner.label if winner else "(baseline: nothing measurably faster)"
            print(
                f"{name:<12} {'1.00':>8} {_fmt(clang):>20} {_fmt(pgo):>20} "
                f"{_fmt(winner) if winner else '1.00':>20}  {pick}"
                f"  ({time.monotonic() - started:.0f} s, {len(result.trials)} verified)",
                flush=True,
            )
            rows.append(
                {
                    "program": name,
                    "clang": _median(clang),
                    "pgo": _median(pgo),
                    "portfolio": portfolio,
                    "best_single": best_single,
                    "pick": pick,
                    "trials": [
                        {"label": t.label, "kind": t.kind, **t.result.to_dict()}
                        for t in result.trials
                    ],
                    "notes": list(result.notes),
                    "unusable": [u.reason for u in result.unusable],
                }
            )
    print(
        f"{'geomean':<12} {'1.00':>8} {_geomean([r['clang'] for r in rows]):>20.3f} "  # type: ignore[misc]
        f"{_geomean([r['pgo'] for r in rows]):>20.3f} "  # type: ignore[misc]
        f"{_geomean([r['portfolio'] for r in rows]):>20.3f}"  # type: ignore[misc]
    )
    print(
        f"best single variant per program, geomean: "
        f"{_geomean([r['best_single'] for r in rows]):.3f}"  # type: ignore[misc]
    )
    for problem in problems:
        print("PROBLEM:", problem)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
