"""`asmopt bench`: generate, verify and benchmark every row of a data set; write a report."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from asmopt.commands.common import (
    EXIT_INTERRUPTED,
    _console,
    _fail,
    ci_option,
    sandbox_options,
)


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--policy",
    "policies",
    multiple=True,
    default=("compiler",),
    show_default=True,
    help="compiler, transformers, openai, vllm, or baseline (a copy: calibrates the harness). "
    "Repeat to pool several.",
)
@click.option("--model", default=None, help="Checkpoint directory, .gguf or model id/name.")
@click.option("--endpoint", default=None, help="OpenAI-compatible base URL (openai policy).")
@click.option("-n", "--samples", type=int, default=1, show_default=True, help="Samples per row.")
@click.option(
    "--workers",
    type=int,
    default=0,
    show_default=True,
    help="Verification processes (0: one per core; 1: all in this process).",
)
@click.option(
    "--ray",
    "ray_address",
    default=None,
    help="Run verification on Ray: host:port, ray://host:10001, auto, or local.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Results, resume state and report (default: asmopt-bench/<data>-<policy>).",
)
@click.option(
    "--max-tests", type=int, default=10, show_default=True, help="First N tests of each row."
)
@click.option(
    "--budget",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds of benchmarking per candidate at most.",
)
@ci_option
@click.option(
    "--compare",
    type=click.Choice(["exact", "tokens", "floats"]),
    default="exact",
    show_default=True,
    help="Output comparison (exact: the paper's rule).",
)
@click.option(
    "--skip-invalid", is_flag=True, help="Leave out malformed rows (listed) instead of stopping."
)
@click.option("--limit", type=int, default=None, help="Only the first N rows.")
@click.option(
    "--temperature", type=float, default=0.5, show_default=True, help="LLM sampling temperature."
)
@sandbox_options
def bench(
    data: Path,
    policies: tuple[str, ...],
    model: str | None,
    endpoint: str | None,
    samples: int,
    workers: int,
    ray_address: str | None,
    out_dir: Path | None,
    max_tests: int,
    budget: float,
    target_ci: float,
    compare: str,
    skip_invalid: bool,
    limit: int | None,
    temperature: float,
    no_sandbox: bool,
    timeout: float,
) -> None:
    """Generate, verify and benchmark every row of DATA (parquet, JSONL or a directory of
    targets); write report.json, report.md and plots under --out. Resumable: run the same
    command again after an interruption."""
    from asmopt.model.evaluation.dataset import DataSet, DatasetError, read_dataset
    from asmopt.model.evaluation.evaluate import (
        BenchError,
        BenchInterrupted,
        PolicySpec,
        options_summary,
    )
    from asmopt.model.evaluation.report import build_report, remove_report, write_report

    if samples < 1:
        _fail("-n/--samples must be at least 1")
    try:
        dataset = read_dataset(data, max_tests=max_tests, skip_invalid=skip_invalid)
    except DatasetError as err:
        _fail(str(err))
    err_console = _console(stderr=True)
    for reason in dataset.skipped:
        err_console.print(f"[yellow]skipped:[/] {reason}")
    if limit is not None:
        dataset = DataSet(dataset.origin, dataset.problems[:limit], dataset.skipped)
    spec = PolicySpec(
        names=tuple(policies), model=model, endpoint=endpoint, temperature=temperature
    )
    out_dir = out_dir or Path("asmopt-bench") / f"{Path(data).stem}-{spec.label}"
    options = _bench_options(
        samples, workers, ray_address, no_sandbox, endpoint, compare, timeout, target_ci, budget
    )
    remove_report(out_dir)
    try:
        result = _run_with_progress_bar(dataset, spec, out_dir, options, err_console)
    except BenchInterrupted as err:
        err_console.print(f"[yellow]{err}[/] (no report written)")
        sys.exit(EXIT_INTERRUPTED)
    except BenchError as err:
        _fail(str(err))
    report = build_report(result, data=str(data), options=options_summary(options))
    write_report(report, out_dir)
    _print_summary(result, report, out_dir)
    sys.exit(0 if report["complete"] else 1)


def _bench_options(
    samples: int,
    workers: int,
    ray_address: str | None,
    no_sandbox: bool,
    endpoint: str | None,
    compare: str,
    timeout: float,
    target_ci: float,
    budget: float,
):  # -> asmopt.model.evaluation.evaluate.BenchOptions
    """How rows are generated and verified, and how precisely each candidate is timed."""
    from asmopt.executor.benchmark import BenchmarkOptions
    from asmopt.executor.sandbox import SandboxLimits
    from asmopt.executor.testcases import Comparator
    from asmopt.executor.verify import VerifyOptions
    from asmopt.model.evaluation.evaluate import BenchOptions

    return BenchOptions(
        samples=samples,
        workers=workers,
        ray_address=ray_address,
        sandbox=not no_sandbox,
        generation_workers=4 if endpoint else 1,  # a served model takes parallel requests
        verify=VerifyOptions(
            comparator=Comparator(mode=compare),  # type: ignore[arg-type]
            limits=SandboxLimits(wall_seconds=timeout, cpu_seconds=int(timeout) + 1),
            bench=BenchmarkOptions(target_rel_ci=target_ci, budget_seconds=budget),
        ),
    )


def _run_with_progress_bar(dataset, spec, out_dir: Path, options, err_console):
    """Run the bench with a progress bar of rows (on stderr); returns its result."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from asmopt.model.evaluation.evaluate import run_bench

    progress = Progress(
        TextColumn("[bold]bench[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )
    with progress:
        task = progress.add_task("rows", total=len(dataset.problems), last="")

        def on_row(row, done: int, total: int) -> None:
            mark = " (stored)" if row.cached else ""
            progress.update(task, completed=done, last=f"{row.name}: {row.status}{mark}")

        return run_bench(dataset, spec, out_dir, options, on_row=on_row)


def _print_summary(result, report: dict, out_dir: Path) -> None:
    """The paper's figures, the honest ones, and where the report is."""
    from asmopt.model.evaluation.evaluate import describe

    p, h = report["paper"], report["honest"]

    def x(v):
        return "—" if v is None else f"{v:.2f}x"

    console = _console()
    console.print(describe(result))
    console.print(
        f"paper:  compile {p['compile_rate']:.1f}%  pass {p['pass_rate']:.1f}%  "
        f"mean {x(p['mean_speedup'])}  geomean {x(p['geomean_speedup'])}  "
        f"p25/50/75 {x(p['p25'])}/{x(p['p50'])}/{x(p['p75'])}"
    )
    console.print(
        f"honest: pass {h['pass_rate']:.1f}% (no copies)  geomean {x(h['geomean_speedup'])} "
        f"[{x(h['ci_low'])}–{x(h['ci_high'])}]  significantly faster "
        f"{100 * h['faster_share']:.1f}%  slower {100 * h['slower_share']:.1f}%"
    )
    console.print(f"report: {out_dir / 'report.md'} ({report['status']})")
