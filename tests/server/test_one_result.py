"""One program, optimized from the CLI (`asmopt optimize --json`) and from the editor (the
language server's real worker), on one workspace whose `asmopt.toml` lives in a subfolder:
both honour that file, both keep their results in the store beside it, and both name the
same winner, verdict and figures (the editor's run is served from what the CLI's stored)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asmopt.model.search.outcome import RunRecord
from asmopt.server.messages import structure_record
from asmopt.server.results import load_results

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

CONFIG = """\
[settings]
policies = ["compiler"]
bench_budget = 2
samples = 1
test_timeout = 5
go_on = true

[[target]]
name = "summer"
sources = ["prog.c"]
tests = "tests"
"""


def _project(workspace: Path, prog_c: str) -> Path:
    """``workspace/sub``: prog.c, its tests and the asmopt.toml that names its target."""
    sub = workspace / "sub"
    (sub / "tests").mkdir(parents=True)
    source = prog_c.replace("long sum_to(long n)", "__attribute__((noinline)) long sum_to(long n)")
    (sub / "prog.c").write_text(source)
    for name, n in (("small", 1000), ("big", 300000)):
        (sub / "tests" / f"{name}.in").write_text(f"{n}\n")
    (sub / "asmopt.toml").write_text(CONFIG)
    return sub


def _cli(workspace: Path) -> RunRecord:
    proc = subprocess.run(
        [sys.executable, "-m", "asmopt.cli", "optimize", "sub/prog.c", "--function", "sum_to",
         "--json"],
        capture_output=True, text=True, cwd=workspace, timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    return structure_record(json.loads(proc.stdout))


async def test_the_cli_and_the_editor_give_one_result(tmp_path: Path, lsp) -> None:
    workspace = tmp_path / "ws"
    sub = _project(workspace, lsp.PROG_C)
    cli = _cli(workspace)
    assert cli.target == "summer"  # the subfolder's asmopt.toml
    assert cli.candidates and cli.verdict in ("faster", "not-faster")

    async with lsp.session(workspace, optimizer="real") as s:
        uri = s.open("sub/prog.c")
        assert await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await s.wait_for(
            lambda: s.progress_kinds() and s.progress_kinds()[0][-1] == "end",
            timeout=300,
            what="the editor's run to end",
        )
        assert not s.messages(), s.messages()
        titles = await s.lenses(uri)

    # One store, beside the asmopt.toml: the editor did not make one at its own root.
    assert (sub / ".asmopt").is_dir() and not (workspace / ".asmopt").exists()
    stored = load_results(sub, "summer", str((sub / "prog.c").resolve()))
    (editor,) = [r for r in stored if r.function == "sum_to"]
    assert editor.created_at > cli.created_at  # the editor's own record, not the CLI's
    assert editor.target == cli.target == "summer"
    assert (editor.verdict, editor.policy, editor.label, editor.candidate) == (
        cli.verdict, cli.policy, cli.label, cli.candidate,
    )  # fmt: skip
    assert editor.speedup == cli.speedup and editor.tests == cli.tests
    assert titles[0] == cli.lens_title()
