"""The command line as a user drives it: real processes, real exit codes, real JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAM = r"""
#include <stdio.h>
static unsigned a[1 << 14];
int main(void) {
    long n; if (scanf("%ld", &n) != 1) return 1;
    for (long r = 0; r <= n >> 14; r++)
        for (int i = 0; i < (1 << 14); i++) a[i] = a[i] * 31u + (unsigned)i;
    unsigned long acc = 0;
    for (int i = 0; i < (1 << 14); i++) acc += a[i];
    printf("%lu\n", acc);
    return 0;
}
"""


def asmopt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asmopt.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "prog.c").write_text(PROGRAM)
    tests = tmp_path / "tests"
    tests.mkdir()
    for i, n in enumerate((10, 1000, 30000000), 1):
        (tests / f"t{i}.in").write_text(f"{n}\n")
    subprocess.run(["gcc", "-O3", "-S", "prog.c", "-o", "same.s"], cwd=tmp_path, check=True)
    subprocess.run(["gcc", "-O0", "-S", "prog.c", "-o", "slow.s"], cwd=tmp_path, check=True)
    wrong = PROGRAM.replace("a[i] * 31u", "a[i] * 37u")
    (tmp_path / "wrong.c").write_text(wrong)
    subprocess.run(["gcc", "-O2", "-S", "wrong.c", "-o", "wrong.s"], cwd=tmp_path, check=True)
    (tmp_path / "broken.s").write_text("\t.text\nmain:\n\tmovq %rax\n")
    return tmp_path


def _verify_json(project: Path, candidate: str) -> tuple[int, dict]:
    proc = asmopt(
        "verify", candidate, "--baseline", "prog.c", "--tests", "tests", "--json",
        "--budget", "5", cwd=project,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout)


def test_verify_json_schema_and_exit_codes(project: Path) -> None:
    code, same = _verify_json(project, "same.s")
    assert code == 0
    assert same["verdict"] == "not-faster"
    assert same["tests"]["passed"] == same["tests"]["total"] == 3
    assert [v["status"] for v in same["tests"]["verdicts"]] == ["passed"] * 3
    assert {"median", "ci_low", "ci_high", "runs"} <= set(same["speedup"])

    code, slow = _verify_json(project, "slow.s")
    assert code == 0 and slow["verdict"] == "not-faster"
    assert slow["speedup"]["ci_high"] < 1.0

    code, wrong = _verify_json(project, "wrong.s")
    assert code == 1 and wrong["verdict"] == "tests-failed"
    assert wrong["tests"]["passed"] < wrong["tests"]["total"]

    code, broken = _verify_json(project, "broken.s")
    assert code == 1 and broken["verdict"] == "build-failed"
    # The store lives in the workspace's .asmopt/ and nothing else was written there.
    assert (project / ".asmopt" / "results.sqlite").exists()


def test_verify_prints_a_table_with_the_speedup(project: Path) -> None:
    proc = asmopt("verify", "slow.s", "--baseline", "prog.c", "--tests", "tests",
                  "--budget", "5", cwd=project)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "3/3 tests passed" in proc.stdout
    assert "speed-up vs baseline" in proc.stdout and "×" in proc.stdout
    assert "verdict: not-faster" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "nope.s", "--baseline", "prog.c", "--tests", "tests"], "does not exist"),
        (["verify", "same.s", "--baseline", "prog.c", "--tests", "missing"], "missing"),
        (["verify", "same.s", "--baseline", "nope.c", "--tests", "tests"], "nope.c"),
    ],
)
def test_bad_input_gets_a_clear_message(project: Path, args: list[str], message: str) -> None:
    proc = asmopt(*args, cwd=project)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_empty_test_directory_is_an_error(project: Path) -> None:
    (project / "empty").mkdir()
    proc = asmopt("verify", "same.s", "--baseline", "prog.c", "--tests", "empty", cwd=project)
    assert proc.returncode == 2 and "error:" in proc.stderr


def test_doctor_reports_readiness(tmp_path: Path) -> None:
    proc = asmopt("doctor", "--json", cwd=tmp_path)
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert checks["sandbox"]["status"] == "ok"
    assert checks["gcc"]["status"] == "ok"
    assert {"llvm-mca", "valgrind", "clang"} <= set(checks)
    assert proc.returncode == 0


def test_verify_counts_instructions_on_request(project: Path) -> None:
    small = project / "small"
    small.mkdir()
    (small / "t1.in").write_text("1000\n")
    proc = asmopt(
        "verify", "slow.s", "--baseline", "prog.c", "--tests", "small", "--json",
        "--instructions", "--budget", "2", cwd=project,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)["instructions"]
    assert "not time" in counts["metric"]
    # -O0 executes several times the instructions of -O3 in the hot loop.
    assert counts["candidate"] > 2 * counts["baseline"] > 0
    assert counts["ratio"] < 0.5


def _corrupt(project: Path, elsewhere: Path) -> None:
    (project / ".asmopt").mkdir()
    (project / ".asmopt" / "results.sqlite").write_bytes(b"\x13garbage" * 512)


def _linked(project: Path, elsewhere: Path) -> None:
    (project / ".asmopt").symlink_to(elsewhere)  # elsewhere stands for /etc


def _blocked(project: Path, elsewhere: Path) -> None:
    (project / ".asmopt").write_text("not a folder: the store cannot be created\n")


@pytest.mark.parametrize(
    ("spoil", "warning"),
    [
        (_corrupt, r"result store .*results\.sqlite was corrupt \(file is not a database\); "
                   r"moved it to results\.sqlite\.corrupt-\S+ and started a fresh one"),
        (_linked, r"results are not stored: refusing to use the result store: .*\.asmopt is a "
                  r"symbolic link \(to .*\), and asmopt never opens or creates its store"),
        (_blocked, r"results are not stored: cannot create the result store: .*\.asmopt exists "
                   r"and is not a folder"),
    ],
    ids=["corrupt", "symlink", "not-writable"],
)  # fmt: skip
def test_a_broken_store_costs_a_warning_not_the_result(
    project: Path, tmp_path_factory: pytest.TempPathFactory, spoil, warning: str
) -> None:
    elsewhere = tmp_path_factory.mktemp("etc")
    spoil(project, elsewhere)
    proc = asmopt(
        "verify", "same.s", "--baseline", "prog.c", "--tests", "tests", "--no-measure",
        "--json", cwd=project,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tests"]["passed"] == 3  # the result is all there
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and re.search(warning, warnings[0]), proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(elsewhere.iterdir()) == []  # nothing was created through a link
    if spoil is _corrupt:  # the run went on with a fresh store, and kept the old one aside
        from asmopt.executor.store import ResultStore

        assert len(ResultStore(project, read_only=True).records()) == 1
        assert len(list((project / ".asmopt").glob("results.sqlite.corrupt-*"))) == 1
