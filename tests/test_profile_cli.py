"""Where the time goes, as a user sees it: `asmopt profile` lists the hottest functions by
instructions; `asmopt optimize` says in one line when start-up and libc dominate and stops
(unless --go-on), and prints each verified speed-up as soon as it is known."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

HOT = r"""
#include <stdio.h>
__attribute__((noinline)) long work(long n) {
    long s = 0;
    for (long i = 0; i < n; i++) s += (i * i) % 7;
    return s;
}
int main(void) {
    long n;
    if (scanf("%ld", &n) != 1) return 1;
    printf("%ld\n", work(n));
    return 0;
}
"""
# Reads two numbers and prints their sum: its run is process start-up and libc.
TINY = r"""
#include <stdio.h>
int main(void) {
    long a, b;
    if (scanf("%ld %ld", &a, &b) != 2) return 1;
    printf("%ld\n", a + b);
    return 0;
}
"""


def asmopt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asmopt.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip


def _program(folder: Path, name: str, text: str, inputs: list[str]) -> Path:
    (folder / "tests").mkdir(parents=True)
    for i, line in enumerate(inputs):
        (folder / "tests" / f"t{i}.in").write_text(line + "\n")
    (folder / ".git").mkdir()
    source = folder / f"{name}.c"
    source.write_text(text)
    return source


def test_profile_lists_the_hottest_functions_by_instructions(tmp_path: Path) -> None:
    _program(tmp_path, "hot", HOT, ["2000000", "3000000"])
    proc = asmopt("profile", "hot.c", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert "instructions" in data["metric"] and "not time" in data["metric"]
    assert data["functions"][0]["name"] == "work"
    assert data["functions"][0]["share"] > 0.5
    assert data["own_share"] > 0.5 and data["tests"]
    table = asmopt("profile", "hot.c", cwd=tmp_path)
    assert "work" in table.stdout and "instructions" in table.stdout


def test_a_start_up_bound_program_is_not_optimized_unless_asked(tmp_path: Path) -> None:
    _program(tmp_path, "tiny", TINY, ["1 2", "3 4"])
    proc = asmopt("optimize", "tiny.c", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    said = proc.stdout + proc.stderr
    assert "start-up" in said and "--go-on" in said
    assert "at most 1.0" in said  # the bound by instruction count, in one line
    data = json.loads(asmopt("optimize", "tiny.c", "--json", cwd=tmp_path).stdout)
    assert data["verdict"] == "not-faster" and data["startup_bound"]
    assert data["profile"]["own_share"] < 0.2


def test_verified_speed_ups_are_printed_as_they_come(tmp_path: Path) -> None:
    example = REPO / "examples" / "dispatch"
    shutil.copy(example / "dispatch.c", tmp_path / "dispatch.c")
    (tmp_path / "tests").mkdir()
    for name, n in (("a", 300000), ("b", 900000)):
        (tmp_path / "tests" / f"{name}.in").write_text(f"{n}\n")
    (tmp_path / ".git").mkdir()
    proc = asmopt("optimize", "dispatch.c", "--budget", "6", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(("so far:", "faster:")))
    # Shown while the job still runs: other candidates are verified after it.
    assert any(line.startswith("verify:") for line in lines[first + 1 :])
    assert "winner:" in proc.stdout


@pytest.mark.slow
def test_go_on_optimizes_anyway(tmp_path: Path) -> None:
    _program(tmp_path, "tiny", TINY, ["1 2"])
    proc = asmopt("optimize", "tiny.c", "--go-on", "--budget", "3", "--json", cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    assert "startup_bound" not in json.loads(proc.stdout)


def test_ctrl_c_keeps_what_was_verified(tmp_path: Path) -> None:
    import signal
    import time

    example = REPO / "examples" / "dispatch"
    shutil.copy(example / "dispatch.c", tmp_path / "dispatch.c")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "a.in").write_text("600000\n")
    (tmp_path / ".git").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "asmopt.cli", "optimize", "dispatch.c", "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.monotonic() + 300
    for line in proc.stderr:  # the first verified speed-up, streamed
        if line.startswith("faster:") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)  # the user stops here
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    data = json.loads(out)
    assert data["verdict"] == "faster" and data["speedup"]["ci_low"] > 1.01
    assert data["tests"]["passed"] == data["tests"]["total"]
