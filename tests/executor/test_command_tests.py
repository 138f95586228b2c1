"""Tests and benchmarks that are commands: run in the sandbox with the target's folder
read-only, the program's path substituted, every process charged, and judged like file
tests (a test run and a timed run look the same)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from asmopt.executor.command_tests import (
    SHELL,
    CommandSpec,
    CommandTestError,
    command_tests,
)
from asmopt.executor.results import TestStatus, Verdict
from asmopt.executor.sandbox import SANDBOX_FILES_DIR, Sandbox, SandboxLimits
from asmopt.executor.verify import VerifyOptions, prepare_baseline, verify_candidate

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000;
    unsigned long acc = 0;
    for (long i = 0; i < n; i++) acc = acc * 31 + (unsigned long)i;
    printf("%lu\n", acc);
    return 0;
}
"""


@pytest.fixture
def workspace() -> Iterator[Path]:
    """A project folder the sandbox user can read (as root, bubblewrap runs as nobody and
    cannot enter pytest's private tmp_path)."""
    folder = Path(tempfile.mkdtemp(prefix="command-tests-"))
    folder.chmod(0o755)
    (folder / "data").mkdir()
    (folder / "data" / "input.txt").write_text("from the workspace\n")
    (folder / ".asmopt").mkdir()
    (folder / ".asmopt" / "results").write_text("earlier verdicts\n")
    (folder / "expected.txt").write_text("the answer\n")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def program(workspace: Path) -> Path:
    src = workspace / "prog.c"
    src.write_text(PROGRAM)
    binary = workspace / "prog"
    subprocess.run(["gcc", "-O2", str(src), "-o", str(binary)], check=True)
    return binary


def test_a_plain_command_runs_the_program_directly() -> None:
    made = command_tests([CommandSpec("test_command", "{bin} 10 --check")])
    assert made.launcher is None
    assert made.tests[0].args == ("10", "--check")
    made = command_tests([CommandSpec("test_command", ("{bin}", "a b"))])
    assert made.launcher is None and made.tests[0].args == ("a b",)


def test_shell_syntax_runs_every_command_in_the_shell() -> None:
    made = command_tests(
        [CommandSpec("test_command", "{bin} 1 && {bin} 2"), CommandSpec("bench_command", "{bin} 9")]
    )
    assert made.launcher == SHELL
    assert made.tests[0].args == ("-c", "{bin} 1 && {bin} 2")
    assert made.tests[1].args == ("-c", "exec '{bin}' 9")
    ignored = command_tests([CommandSpec("bench_command", "{bin}", ignore_output=True)])
    assert ignored.launcher == SHELL
    assert ignored.tests[0].args[1].startswith("exec >/dev/null\n")


def test_a_command_that_never_runs_the_program_is_refused() -> None:
    with pytest.raises(CommandTestError, match=r"write \{bin\}"):
        command_tests([CommandSpec("test_command", "./build/tests")])


def test_the_session_shows_the_folder_read_only_and_hides_what_it_must(
    workspace: Path, program: Path
) -> None:
    script = (
        "{bin} 5; pwd; cat data/input.txt; ls .asmopt; cat expected.txt 2>/dev/null; "
        "touch data/new 2>/dev/null || echo read-only"
    )
    with (
        Sandbox() as sandbox,
        sandbox.session(
            [program], launcher=SHELL, files=workspace, hide=(".asmopt", "expected.txt")
        ) as session,
    ):
        run = session.run(0, b"", ("-c", script))
    assert run.exit_code == 0, run.stderr
    lines = run.stdout.decode().splitlines()
    assert lines[1] == SANDBOX_FILES_DIR
    assert lines[2] == "from the workspace"
    assert lines[3:] == ["read-only"]  # no verdicts, no expected output, nothing written
    assert not (workspace / "data" / "new").exists()


def test_every_process_of_a_command_is_charged(workspace: Path, program: Path) -> None:
    with Sandbox() as sandbox, sandbox.session([program], launcher=SHELL) as session:
        once = session.run(0, b"", ("-c", "{bin} 300000000 >/dev/null"))
        twice = session.run(0, b"", ("-c", "{bin} 300000000 >/dev/null; {bin} 300000000"))
    assert once.exit_code == 0 and twice.exit_code == 0
    assert twice.cpu_seconds > 1.6 * once.cpu_seconds


def _options(workspace: Path, *specs: CommandSpec) -> tuple[list, VerifyOptions]:
    made = command_tests(list(specs))
    limits = SandboxLimits(wall_seconds=5, cpu_seconds=5)
    return list(made.tests), VerifyOptions(
        launcher=made.launcher, files=workspace, hide=(".asmopt",), limits=limits, measure=False
    )


def _asm(workspace: Path, code: str) -> str:
    src = workspace / "c.c"
    src.write_text(code)
    subprocess.run(["gcc", "-O1", "-S", str(src), "-o", str(workspace / "c.s")], check=True)
    return (workspace / "c.s").read_text()


def test_a_command_test_judges_candidates_by_exit_status_and_output(
    workspace: Path, program: Path
) -> None:
    tests, options = _options(
        workspace, CommandSpec("test_command", "{bin} 1000 && {bin} 7 | tr 0-9 a-j")
    )
    with Sandbox() as sandbox:
        baseline = prepare_baseline(
            workspace / "prog.c", tests, workspace / "base", sandbox, options=options
        )
        assert baseline.expected["test_command"].count(b"\n") == 2
        same = verify_candidate(_asm(workspace, PROGRAM), baseline, sandbox, options)
        wrong = verify_candidate(
            _asm(workspace, PROGRAM.replace("* 31", "* 37")), baseline, sandbox, options
        )
        failing = verify_candidate(
            _asm(workspace, PROGRAM.replace("return 0;", "return n == 1000;")),
            baseline,
            sandbox,
            options,
        )
    assert same.all_passed
    assert wrong.verdict is Verdict.TESTS_FAILED
    assert wrong.tests[0].status is TestStatus.WRONG_OUTPUT
    assert failing.verdict is Verdict.TESTS_FAILED
    assert failing.tests[0].status is TestStatus.NONZERO_EXIT


@pytest.mark.parametrize(
    ("command", "status"),
    [
        ("{bin} 5; no-such-tool", TestStatus.NONZERO_EXIT),
        ("{bin} 5; sleep 30", TestStatus.TIMED_OUT),
        ("{bin} 5; yes", TestStatus.OUTPUT_TOO_LARGE),
    ],
)
def test_a_broken_command_fails_in_the_sandbox(
    workspace: Path, program: Path, command: str, status: TestStatus
) -> None:
    tests, options = _options(workspace, CommandSpec("test_command", command))
    limits = SandboxLimits(wall_seconds=2, cpu_seconds=2, output_bytes=1 << 20)
    with (
        Sandbox(limits) as sandbox,
        sandbox.session([program], limits=limits, **options.session_options()) as session,
    ):
        run = session.run(0, tests[0].stdin, tests[0].args, limits)
    from asmopt.executor.testcases import Comparator, judge

    assert judge(tests[0], run, Comparator(), expected=b"").status is status
    assert os.path.exists(program)
