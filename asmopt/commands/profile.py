"""`asmopt profile`: where a program's work goes, by instructions executed (valgrind)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from asmopt.commands.common import (
    _console,
    _fail,
    sandbox_options,
    tests_target,
    workspace_of,
)


@click.command()
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--tests",
    "tests_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory of NAME.in tests (default: from asmopt.toml or tests/ beside the source).",
)
@click.option(
    "--budget",
    type=float,
    default=8.0,
    show_default=True,
    help="Seconds of valgrind at most: the quickest tests that fit are profiled.",
)
@click.option("--all-tests", is_flag=True, help="Profile every test, however long it takes.")
@click.option("--top", type=int, default=10, show_default=True, help="Functions to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as one JSON object.")
@sandbox_options
def profile(source: Path, tests_dir: Path | None, budget: float, all_tests: bool, top: int,
            as_json: bool, no_sandbox: bool, timeout: float) -> None:  # fmt: skip
    """Where SOURCE's work goes: its hottest functions by instructions executed on its tests
    (valgrind in the sandbox; instructions, not time)."""
    from rich.markup import escape
    from rich.table import Table

    from asmopt.model.search.optimizer import OptimizeError, OptimizeRequest, profile_program
    from asmopt.model.settings import SettingsError

    if not source.exists():
        _fail(f"{source} does not exist")
    workspace = workspace_of(source)
    try:
        settings = workspace.config.settings.replace(
            sandbox=False if no_sandbox else None, test_timeout=timeout
        )
    except SettingsError as err:
        _fail(str(err))
    target = tests_target(source, tests_dir) if tests_dir is not None else None
    request = OptimizeRequest(
        source, None, settings, target=target, workspace=workspace.root, config=workspace.config
    )
    try:
        with _console(stderr=True).status("profiling (valgrind --tool=cachegrind)"):
            name, prof = profile_program(request, budget=budget, every_test=all_tests)
    except OptimizeError as err:
        _fail(str(err))
    if as_json:
        click.echo(json.dumps({"target": name, **prof.to_dict()}, indent=2))
        return
    console = _console()
    table = Table(title=f"{name}: instructions executed per function (valgrind; not time)")
    table.add_column("function")
    table.add_column("instructions", justify="right")
    table.add_column("share", justify="right")
    for f in prof.functions[:top]:
        table.add_row(escape(f.name), f"{f.instructions:,}", f"{f.share:.1%}")
    console.print(table)
    skipped = ""
    if prof.skipped:
        skipped = f"; {', '.join(prof.skipped)} left out to stay within {budget:g} s"
    console.print(
        f"its own code: {prof.own_share:.1%} of {prof.total:,} instructions (the rest: "
        f"start-up, loader, libc); tests profiled: {', '.join(prof.tests)}{skipped}; "
        f"{prof.seconds:.1f} s"
    )
    bound = prof.startup_bound()
    if bound:
        console.print(f"[yellow]start-up bound:[/] {escape(bound)}")
