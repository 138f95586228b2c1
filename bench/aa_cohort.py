"""A/A through cohorts: copies of the baseline whose machine code differs only in dead code,
judged as one job's candidates, so they are timed together in cohorts (executor/cohort.py)
and pair with shared baseline runs. None may be called faster.

Each copy is the baseline's assembly with an unreachable function of its own appended at the
end of the text (the code the program executes is the baseline's, at the baseline's
addresses), which makes its machine code differ from the baseline's and from every other
copy's: nothing is recognised as "the same machine code", everything is timed. The job is
``portfolio.optimize`` with the default racing rule, its workers and cohorts; it prints, per
job, how many copies were called faster, their speed-ups and CIs, how many baseline runs the
cohorts made, how often a copy paired with another's and how many rounds were timed two wide
(a copy alone while the other core idled, ``cohort.Seat.widened``).

    .venv/bin/python bench/aa_cohort.py [--program examples/align/align.c] [--copies 6]
        [--jobs 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import machine_line, table

from asmopt.executor.sandbox import Sandbox
from asmopt.executor.testcases import load_tests
from asmopt.executor.verify import VerifyOptions, prepare_baseline
from asmopt.model.search import portfolio, verifier
from asmopt.model.search.policy import Candidate, Request

ROOT = Path(__file__).resolve().parent.parent


class Copies:
    """A policy that proposes the copies."""

    name = "copies"

    def __init__(self, copies: list[str]) -> None:
        self.copies = copies

    def propose(self, request: Request, n: int = 1) -> list[Candidate]:
        return [
            Candidate(asm=asm, policy=self.name, label=f"copy {i + 1}")
            for i, asm in enumerate(self.copies)
        ][:n]


def copy_of(asm: str, k: int) -> str:
    """The baseline with an unreachable function ``k`` NOPs long appended to its text."""
    dead = f"__asmopt_aa_dead_{k}"
    body = "\n".join(["\tnop"] * k)
    return (
        f"{asm.rstrip()}\n\t.text\n\t.type {dead}, @function\n{dead}:\n{body}\n\tret\n"
        f"\t.size {dead}, .-{dead}\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--program", type=Path, default=ROOT / "examples" / "align" / "align.c")
    ap.add_argument("--copies", type=int, default=6)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    print(machine_line())
    tests = load_tests(args.program.parent / "tests")
    options = VerifyOptions()
    rows: list[list[object]] = []
    false = 0
    total = 0
    with Sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="asmopt-aa-cohort-") as tmp:
        baseline = prepare_baseline(args.program, tests, Path(tmp), sandbox, options=options)
        request = Request(baseline_asm=baseline.asm, source_path=args.program)
        for job in range(args.jobs):
            copies = [copy_of(baseline.asm, 1 + job * args.copies + i) for i in range(args.copies)]
            pools: list = []
            real = verifier.Verifier.close

            def close(self, _real=real, _seen=pools) -> None:
                _seen.append(self)
                _real(self)

            verifier.Verifier.close = close  # type: ignore[method-assign]
            started = time.monotonic()
            try:
                result = portfolio.optimize(
                    request, [Copies(copies)], baseline, sandbox, options,
                    workers=args.workers, mix=False,
                )  # fmt: skip
            finally:
                verifier.Verifier.close = real  # type: ignore[method-assign]
            seconds = time.monotonic() - started
            timed = [t for t in result.trials if t.result.speedup is not None]
            faster = [t for t in result.trials if t.faster]
            false += len(faster)
            total += len(timed)
            figures = ", ".join(
                f"{t.result.speedup.median:.3f} [{t.result.speedup.ci_low:.3f}–"
                f"{t.result.speedup.ci_high:.3f}]"
                for t in timed
                if t.result.speedup is not None
            )
            cohorts = [c for pool in pools for c in pool.cohorts]
            ran = sum(c.ran for c in cohorts)
            paired = sum(c.paired for c in cohorts)
            wide = sum(pool.wide_rounds for pool in pools)
            row = [job + 1, f"{len(faster)}/{len(timed)}", ran, paired, wide, f"{seconds:.0f}"]
            rows.append([*row, figures])
    headers = [
        "job", "called faster", "baseline runs", "pairings", "wide rounds", "s",
        "copies (median [CI])",
    ]  # fmt: skip
    print(table(headers, rows))
    print(f"cohort size {verifier.COHORT_SIZE}; copies called faster: {false} of {total}")
    return 1 if false else 0


if __name__ == "__main__":
    sys.exit(main())
