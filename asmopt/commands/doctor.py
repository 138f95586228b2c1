"""`asmopt doctor`: the checks of :mod:`asmopt.doctor`, as a table or JSON."""

from __future__ import annotations

import json
import sys

import click

from asmopt.commands.common import (
    _console,
)


@click.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json: bool) -> None:
    """Check the toolchain, sandbox, llvm-mca, valgrind and optional back-ends."""
    from asmopt.doctor import run_checks

    checks = run_checks()
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title="asmopt doctor")
        table.add_column("check")
        table.add_column("status")
        table.add_column("detail / fix")
        for c in checks:
            mark = {
                "ok": "[green]ok[/]",
                "missing": "[red]missing[/]",
                "optional": "[yellow]optional[/]",
            }[c.status]
            detail = c.detail if c.status == "ok" else c.fix or c.detail
            table.add_row(escape(c.name), mark, escape(detail))
        _console().print(table)
    sys.exit(1 if any(c.status == "missing" for c in checks) else 0)
