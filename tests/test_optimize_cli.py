"""`asmopt optimize` as a user runs it: a real speed-up on the shipped example, and a clear
message with a non-zero exit (and nothing written) for every kind of bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asmopt.model.search.openai_server import run_in_thread

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "dispatch"


def asmopt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asmopt.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The shipped example with small inputs, so that the test stays quick."""
    shutil.copy(EXAMPLE / "dispatch.c", tmp_path / "dispatch.c")
    (tmp_path / "tests").mkdir()
    for name, n in (("a", 300000), ("b", 900000)):
        (tmp_path / "tests" / f"{name}.in").write_text(f"{n}\n")
    (tmp_path / ".git").mkdir()  # the workspace root: its .asmopt/ store lives here
    return tmp_path


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if ".asmopt" not in p.parts}


def test_optimize_finds_a_verified_faster_candidate(example: Path) -> None:
    proc = asmopt("optimize", "dispatch.c", "--json", "--budget", "6", "--write", cwd=example)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["verdict"] == "faster"
    assert data["policy"] == "compiler"
    assert data["tests"]["passed"] == data["tests"]["total"] == 2
    assert data["speedup"]["ci_low"] > 1.0
    assert all(c["verdict"] != "faster" or c["tests_passed"] == c["tests_total"]
               for c in data["candidates"])  # fmt: skip
    # Every verified candidate is in the workspace store, filed under its target.
    from asmopt.executor.store import ResultStore

    records = ResultStore(example, read_only=True).records(target="dispatch", limit=None)
    assert len(records) >= len(data["candidates"]) - 1
    assert ResultStore(example, read_only=True).best("dispatch", None) is not None
    written = (example / "dispatch.opt.s").read_text()
    assert "main:" in written
    # --write never replaces a file silently.
    again = asmopt("optimize", "dispatch.c", "--write", "--budget", "6", cwd=example)
    assert again.returncode == 2 and "--force" in again.stderr
    assert (example / "dispatch.opt.s").read_text() == written


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("bad_c", ["bad.c"], "does not compile"),
        ("no_tests", ["lonely.c"], "no tests found"),
        ("no_main", ["lib.c", "--tests", "tests"], "no main"),
        ("ok", ["dispatch.c", "--function", "nosuch"], "no function `nosuch`"),
        (
            "ok",
            ["dispatch.c", "--policy", "transformers", "--model", "missing-dir"],
            "does not exist",
        ),
        (
            "ok",
            ["dispatch.c", "--policy", "openai", "--endpoint", "http://127.0.0.1:9"],
            "cannot reach",
        ),
        ("ok", ["dispatch.c", "--tests", "missing"], "does not exist"),
        ("inlined", ["inl.c", "--function", "work"], "inlined `work`"),
    ],
)
def test_bad_input_gets_a_clear_message_and_writes_nothing(
    example: Path, setup: str, args: list[str], message: str
) -> None:
    if setup == "bad_c":
        (example / "bad.c").write_text("int main(void) { return undefined_name; }\n")
    elif setup == "no_tests":
        (example / "sub").mkdir()
        (example / "sub" / "lonely.c").write_text("int main(void){return 0;}\n")
        args = ["sub/lonely.c"]
    elif setup == "inlined":
        (example / "inl.c").write_text(
            "#include <stdio.h>\nlong work(long n) { long s = 0; for (long i = 0; i < n; i++) "
            's += i ^ (s >> 2); return s; }\nint main(void) { long n; if (scanf("%ld", &n) '
            '!= 1) return 1; printf("%ld\\n", work(n)); return 0; }\n'
        )
    elif setup == "no_main":
        (example / "lib.c").write_text("int twice(int x) { return 2 * x; }\n")
    before = _files(example)
    proc = asmopt("optimize", *args, "--write", "--budget", "3", cwd=example)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _files(example) == before


class ProseBackend:
    name = "prose"

    def complete(self, messages, n=1, temperature=0.5, max_new_tokens=2000, seed=None):
        return ["Sure! Here is a faster program: just use a better algorithm."] * n


class GarbageBackend:
    name = "garbage"

    def complete(self, messages, n=1, temperature=0.5, max_new_tokens=2000, seed=None):
        return ["```assembly\nmain:\n\tthis is not an instruction\n```"] * n


@pytest.mark.parametrize("backend", [ProseBackend(), GarbageBackend()])
def test_a_useless_model_loses_cleanly(example: Path, backend) -> None:
    with run_in_thread(backend) as server:
        proc = asmopt(
            "optimize", "dispatch.c", "--policy", "openai", "--endpoint", server.url,
            "-n", "2", "--json", "--write", cwd=example,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["verdict"] == "not-faster"
    assert not (example / "dispatch.opt.s").exists()
