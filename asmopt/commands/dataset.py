"""`asmopt dataset build|show`: data sets in the paper's verl parquet format."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from asmopt.commands.common import (
    _console,
    _fail,
    sandbox_options,
)


@click.group()
def dataset() -> None:
    """Build and inspect data sets in the paper's verl parquet format."""


@dataset.command("build")
@click.argument("src_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--min-speedup",
    type=float,
    default=None,
    help="Keep programs whose -O0 build is at least this many times slower than -O3 "
    "(the paper: 3).",
)
@click.option("--val", "val_fraction", type=float, default=0.1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tokenizer", default=None, help="tokenizer.json or a tokenizer directory.")
@click.option(
    "--max-tokens",
    type=int,
    default=None,
    help="Drop rows whose question + answer exceed this many tokens (the paper: 4000).",
)
@click.option("--max-tests", type=int, default=10, show_default=True)
@click.option(
    "--compare",
    type=click.Choice(["exact", "tokens", "floats"]),
    default="tokens",
    show_default=True,
    help="How given .out files are checked against the gcc -O3 build.",
)
@click.option("--jsonl", is_flag=True, help="Also write the rows as JSON lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@sandbox_options
def dataset_build(
    src_dir: Path,
    out_dir: Path,
    min_speedup: float | None,
    val_fraction: float,
    seed: int,
    tokenizer: str | None,
    max_tokens: int | None,
    max_tests: int,
    compare: str,
    jsonl: bool,
    as_json: bool,
    no_sandbox: bool,
    timeout: float,
) -> None:
    """Build train/val parquet from SRC_DIR (C programs with tests, or an asmopt.toml)."""
    from asmopt.model.evaluation.dataset import DatasetError
    from asmopt.model.evaluation.dataset_build import BuildOptions, build_dataset, load_tokenizer

    if max_tokens is not None and tokenizer is None:
        _fail("--max-tokens needs --tokenizer PATH")
    try:
        counter = load_tokenizer(tokenizer) if tokenizer else None
        options = BuildOptions(
            min_speedup=min_speedup,
            val_fraction=val_fraction,
            seed=seed,
            tokenizer=counter,
            max_tokens=max_tokens,
            max_tests=max_tests,
            compare=compare,
            timeout=timeout,
            sandbox=not no_sandbox,
            jsonl=jsonl,
        )
        with _console(stderr=True).status("building") as status:
            summary = build_dataset(
                src_dir,
                out_dir,
                options,
                progress=lambda name, i, n: status.update(f"{i}/{n} {name}"),
            )
    except DatasetError as err:
        _fail(str(err))
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        console = _console()
        console.print(
            f"{summary.train} train, {summary.val} val, {len(summary.dropped)} dropped -> {out_dir}"
        )
        for d in summary.dropped:
            console.print(f"  dropped {d.name}: {d.reason} ({d.detail})")
    sys.exit(0)


@dataset.command("show")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def dataset_show(file: Path, as_json: bool) -> None:
    """Summarize a data set: rows, splits, tests per row, assembly size."""
    from asmopt.model.evaluation.dataset import DatasetError, read_dataset, summarize

    try:
        data = read_dataset(file, max_tests=None, skip_invalid=True)
    except DatasetError as err:
        _fail(str(err))
    summary = summarize(data)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    console = _console()
    console.print(f"[bold]{summary['origin']}[/]: {summary['rows']} rows")
    console.print(f"  splits: {summary['splits']}")
    t, a = summary["tests_per_row"], summary["asm_lines"]
    console.print(f"  tests per row: {t['min']}–{t['max']} (mean {t['mean']:.1f})")
    console.print(f"  baseline assembly lines: {a['min']}–{a['max']} (mean {a['mean']:.0f})")
    console.print(
        f"  with C source: {summary['with_c_source']}, with precompiled baseline: "
        f"{summary['with_baseline_binary']}"
    )
    if summary["prompt_matches_template"] is not None:
        console.print(
            f"  prompts equal to the paper's template: "
            f"{100 * summary['prompt_matches_template']:.0f}%"
        )
    for reason in summary["skipped"]:
        console.print(f"  [yellow]invalid:[/] {reason}")
