"""`asmopt verify`: run a candidate .s against the tests and time it against the baseline."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import click

from asmopt.commands.common import (
    _console,
    _fail,
    _make_sandbox,
    _workspace_store,
    ci_option,
    comparator_option,
    sandbox_options,
)


@click.command()
@click.argument("candidate", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--baseline",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The program's C source (built with gcc -O3) or its baseline .s.",
)
@click.option(
    "--tests",
    "tests_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory of NAME.in / NAME.out test cases.",
)
@click.option("--cflags", default="-O3", show_default=True, help="Flags for the baseline build.")
@click.option("--compiler", default="gcc", show_default=True)
@click.option("--no-measure", is_flag=True, help="Only run the tests; skip the benchmark.")
@ci_option
@click.option(
    "--budget", type=float, default=60.0, show_default=True, help="Seconds of benchmarking at most."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--instructions",
    is_flag=True,
    help="Also count executed instructions with callgrind (deterministic; not time).",
)
@comparator_option
@sandbox_options
def verify(
    candidate: Path,
    baseline: Path,
    tests_dir: Path,
    cflags: str,
    compiler: str,
    no_measure: bool,
    target_ci: float,
    budget: float,
    as_json: bool,
    instructions: bool,
    compare: str,
    tolerance: float,
    no_sandbox: bool,
    timeout: float,
) -> None:
    """Run CANDIDATE.s against the tests and benchmark it against the baseline."""
    from asmopt.executor.judge import Judge
    from asmopt.executor.sandbox import SandboxError
    from asmopt.executor.testcases import TestSetError, load_tests
    from asmopt.executor.verify import BaselineError

    if not candidate.exists():
        _fail(f"{candidate} does not exist")
    try:
        tests = load_tests(tests_dir)
    except TestSetError as err:
        _fail(str(err))
    options = _verify_options(compare, tolerance, timeout, target_ci, budget, no_measure)
    sandbox = _make_sandbox(options.limits, no_sandbox)
    store = _workspace_store(candidate)
    err_console = _console(stderr=True)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="asmopt-verify-") as tmp,
            err_console.status("building the baseline") as status,
        ):
            judge = Judge.prepare(
                baseline,
                tests,
                Path(tmp),
                sandbox,
                options,
                store=store,
                compiler=compiler,
                cflags=cflags.split(),
                progress=lambda m: status.update(m),
            )
            result = judge.judge(
                candidate.read_text(errors="replace"),
                meta={"target": baseline.stem, "policy": "user", "source": str(candidate)},
                progress=lambda m: status.update(f"candidate: {m}"),
            )
            counts = None
            if instructions and result.all_passed:
                status.update("counting instructions (callgrind)")
                counts = _instruction_counts(candidate, judge)
    except (BaselineError, SandboxError) as err:
        _fail(str(err))
    finally:
        sandbox.close()
    _print_result(result, counts, candidate, as_json)
    sys.exit(0 if result.all_passed else 1)


def _verify_options(
    compare: str,
    tolerance: float,
    timeout: float,
    target_ci: float,
    budget: float,
    no_measure: bool,
):  # -> asmopt.executor.verify.VerifyOptions
    """How the candidate is judged: output comparison, sandbox limits, benchmark precision."""
    from asmopt.executor.benchmark import BenchmarkOptions
    from asmopt.executor.sandbox import SandboxLimits
    from asmopt.executor.testcases import Comparator
    from asmopt.executor.verify import VerifyOptions

    return VerifyOptions(
        comparator=Comparator(mode=compare, rel_tol=tolerance),  # type: ignore[arg-type]
        limits=SandboxLimits(wall_seconds=timeout, cpu_seconds=int(timeout) + 1),
        bench=BenchmarkOptions(target_rel_ci=target_ci, budget_seconds=budget),
        measure=not no_measure,
    )


def _instruction_counts(candidate: Path, judge) -> dict:
    """Executed instructions of the candidate and the baseline (callgrind), or the error."""
    from asmopt.executor.callgrind import CallgrindError

    try:
        return judge.instruction_counts(candidate.read_text(errors="replace"))
    except CallgrindError as err:
        return {"error": str(err)}


def _print_result(result, counts: dict | None, candidate: Path, as_json: bool) -> None:
    """The verdict as one JSON object, or as a report for people."""
    if as_json:
        data = result.to_dict()
        if counts is not None:
            data["instructions"] = counts
        click.echo(json.dumps(data, indent=2))
    else:
        from asmopt.render import print_instructions, print_verification

        print_verification(_console(), result, candidate.name)
        if counts is not None:
            print_instructions(_console(), counts)
