"""Hostile builds: candidate text that attacks the assembler and linker, not the test runs.

The candidate is assembled and linked in the sandbox, which shows it nothing but ``/usr`` and
its own copy: the workspace, the tests' answers, the home directory and ``/etc`` are not
there, and a build that loops, floods or grows is cut off by limits. Each attack must end as a
failed build (or a harmless one) with a clear message, leak nothing, keep asmopt small and
leave no file behind.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from asmopt.executor.results import Verdict
from asmopt.executor.sandbox import Sandbox
from asmopt.executor.store import ResultStore
from asmopt.executor.testcases import TestCase
from asmopt.executor.verify import VerifyOptions, prepare_baseline, verify_candidate

SECRET = "asmopt-build-secret-" + uuid.uuid4().hex

BASELINE = r"""
#include <stdio.h>
int main(void) { long x; if (scanf("%ld", &x) != 1) return 1; printf("%ld\n", 2 * x); return 0; }
"""

# Prints the bytes between answer_start and answer_end: what an .incbin pulled in.
PRINTER = """
    .text
    .globl main
    .type main, @function
main:
    subq $8, %rsp
    leaq answer_start(%rip), %rsi
    leaq answer_end(%rip), %rdx
    subq %rsi, %rdx
    movl $1, %edi
    call write@PLT
    xorl %eax, %eax
    addq $8, %rsp
    ret
    .size main, .-main
    .section .note.GNU-stack,"",@progbits
    .section .rodata
answer_start:
"""


def _incbin(path: str) -> str:
    return PRINTER + f'    .incbin "{path}"\nanswer_end:\n'


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace as a user has it: a program, its tests with answers, a secret file."""
    ws = tmp_path_factory.mktemp("ws")
    (ws / "prog.c").write_text(BASELINE)
    tests = ws / "tests"
    tests.mkdir()
    (tests / "t1.in").write_text("21\n")
    (tests / "t1.out").write_text("42\n")
    (ws / "secret.txt").write_text(SECRET + "\n")
    home_secret = Path(tempfile.gettempdir()) / f"asmopt-secret-{uuid.uuid4().hex}"
    home_secret.write_text(SECRET + "\n")
    cwd = os.getcwd()
    os.chdir(ws)  # the build once ran here: relative paths reached the tests
    try:
        with Sandbox() as sandbox:
            baseline = prepare_baseline(
                ws / "prog.c",
                [TestCase("t1", b"21\n", b"42\n")],
                ws / ".asmopt" / "base",
                sandbox,
                options=VerifyOptions(measure=False),
            )
            yield ws, sandbox, baseline, home_secret
    finally:
        os.chdir(cwd)
        home_secret.unlink(missing_ok=True)


def _judge(workspace, asm: str, store: ResultStore | None = None):
    _, sandbox, baseline, _ = workspace
    return verify_candidate(asm, baseline, sandbox, VerifyOptions(measure=False), store=store)


def _leaks(result) -> bool:
    return SECRET in json.dumps(result.to_dict())


def test_a_plain_candidate_still_builds_and_passes(workspace):
    asm = subprocess.run(
        ["gcc", "-O2", "-S", "-o", "-", str(workspace[0] / "prog.c")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = _judge(workspace, asm)
    assert result.build.ok and result.all_passed, result.message


@pytest.mark.parametrize(
    "path",
    ["tests/t1.out", "secret.txt", "../secret.txt", "HOME_SECRET", "/etc/shadow", "/etc/passwd"],
)
def test_incbin_of_host_files_finds_nothing(workspace, path):
    ws, _, _, home_secret = workspace
    if path == "HOME_SECRET":
        path = str(home_secret)
    if path in ("secret.txt", "tests/t1.out"):
        path = str(ws / path) if path == "secret.txt" else path
    result = _judge(workspace, _incbin(path))
    assert result.verdict is Verdict.BUILD_FAILED, result.message
    assert "not found" in result.message or "No such file" in result.message
    assert not _leaks(result)
    assert "42" not in json.dumps([t.to_dict() for t in result.tests])


def test_include_of_a_host_file_leaks_no_line_through_errors(workspace):
    ws, _, _, home_secret = workspace
    result = _judge(workspace, f'    .include "{home_secret}"\n    .include "{ws}/secret.txt"\n')
    assert result.verdict is Verdict.BUILD_FAILED
    assert not _leaks(result)


def test_incbin_of_proc_environ_shows_no_host_environment(workspace, monkeypatch):
    monkeypatch.setenv("ASMOPT_TEST_SECRET", SECRET)
    result = _judge(workspace, _incbin("/proc/self/environ"))
    assert not _leaks(result)


@pytest.mark.parametrize(
    ("name", "asm", "words"),
    [
        ("urandom", '    .include "/dev/urandom"\n', ("MiB of messages", "memory", "limit")),
        (
            "rept",
            "    .text\n    .globl main\nmain:\n    .rept 100000000\n    nop\n    .endr\n    ret\n",
            ("memory",),
        ),
        (
            "skip",
            "    .text\n    .globl main\nmain: ret\n    .data\n    .skip 3500000000\n",
            ("MiB", "File size limit", "limit"),
        ),
        (
            "warnings",
            "    .text\n    .globl main\nmain: ret\n"
            + "".join(f'    .warning "flood {i} {"x" * 60}"\n' for i in range(30000)),
            ("MiB of messages",),
        ),
        (
            "zero",
            '    .data\n    .incbin "/dev/zero"\n',
            ("MiB", "limit", "memory", "unable to include"),
        ),
    ],
)
def test_exhausting_builds_fail_bounded(workspace, tmp_path, name, asm, words):
    store = ResultStore(tmp_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    result = _judge(workspace, asm, store)
    took = time.monotonic() - started
    assert result.verdict is Verdict.BUILD_FAILED, result.message
    text = " ".join(d.message for d in result.build.diagnostics) + result.build.stderr
    assert any(w in text for w in words), text[:500]
    assert took < 90
    # asmopt itself stays small: the tool's memory is the sandbox's, not ours.
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200
    # What is kept of the messages is a few KB, in the result and in the store.
    assert len(json.dumps(result.to_dict())) < 16_000
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) < 1_000_000
    store.close()


def test_no_temporary_files_are_left_by_failed_builds(workspace, tmp_path, monkeypatch):
    # A private temporary folder: other test runs on the machine make asmopt-* folders too.
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    _, sandbox, _, _ = workspace
    staged = {p.name for p in sandbox._session.iterdir()}
    _judge(workspace, '    .include "/dev/urandom"\n')
    _judge(workspace, "    .data\n    .skip 3500000000\n")
    assert list(private.iterdir()) == []
    assert {p.name for p in sandbox._session.iterdir()} == staged


def test_a_killed_asmopt_leaves_nothing_for_long(tmp_path):
    """A session folder of an asmopt that died by SIGKILL (staged binaries, build leftovers)
    is removed by the next sandbox made on the machine."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = Path(tempfile.gettempdir()) / f"asmopt-sandbox-{dead.pid}-leftover"
    (stale / "prog-0").parent.mkdir(parents=True, exist_ok=True)
    (stale / "prog-0").write_bytes(b"\x7fELF")
    with Sandbox():
        assert not stale.exists()


def test_editor_buffer_check_runs_in_the_sandbox(workspace):
    """An editor's assembly buffer may be a generated candidate: checking it assembles it
    in the sandbox, where a host file it includes is not there."""
    from asmopt.executor.toolchain import check_assembly

    _, _, _, home_secret = workspace
    found = check_assembly(f'    .include "{home_secret}"\n', filename="cand.s")
    text = " ".join(d.message for d in found)
    assert "not found" in text or "can't open" in text or "No such file" in text, text
    assert SECRET not in text
