"""Hostile candidates: each gets its clear verdict, nothing escapes, nothing outlives the run.

Every candidate here is a C program compiled to assembly and fed through the same pipeline a
model's answer goes through (``verify_candidate``), against an honest baseline that reads a
number and prints it doubled.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from asmopt.executor.results import TestStatus, Verdict
from asmopt.executor.sandbox import Sandbox, SandboxLimits
from asmopt.executor.testcases import TestCase
from asmopt.executor.verify import VerifyOptions, prepare_baseline, verify_candidate

BASELINE = r"""
#include <stdio.h>
int main(void) { long x; if (scanf("%ld", &x) != 1) return 1; printf("%ld\n", 2 * x); return 0; }
"""

# Planted outside the sandbox by the test; a candidate that can read it prints it.
SECRET = "asmopt-secret-" + uuid.uuid4().hex
MARKER = "asmopt-hostile-" + uuid.uuid4().hex[:12]

PRELUDE = """
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <netinet/in.h>
#include <arpa/inet.h>
static long input(void) { long x = 0; if (scanf("%ld", &x) != 1) exit(1); return x; }
static void answer(long x) { printf("%ld\\n", 2 * x); }
"""


def _program(body: str) -> str:
    return PRELUDE + "int main(void) {\n" + textwrap.dedent(body) + "\n}\n"


# name -> (C body of main, statuses that are acceptable verdicts for the single test)
HOSTILE: dict[str, tuple[str, set[TestStatus]]] = {
    "infinite_loop": ("for (;;) {}", {TestStatus.TIMED_OUT}),
    "sleeps_forever": ("for (;;) pause();", {TestStatus.TIMED_OUT}),
    "output_flood": (
        'for (;;) fputs("flood flood flood flood flood flood flood\\n", stdout);',
        {TestStatus.OUTPUT_TOO_LARGE},
    ),
    "stderr_flood": (
        'for (;;) fputs("flood flood flood flood flood flood flood\\n", stderr);',
        {TestStatus.OUTPUT_TOO_LARGE},
    ),
    "fork_bomb": ("for (;;) fork(); ", {TestStatus.TIMED_OUT}),
    "memory_hog": (
        "for (;;) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); }",
        {TestStatus.OUT_OF_MEMORY},
    ),
    "opens_socket": (
        """
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(80);
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        connect(s, (struct sockaddr *)&a, sizeof a);
        answer(input());
        """,
        {TestStatus.SANDBOX_VIOLATION},
    ),
    "ptrace": ("ptrace(PTRACE_TRACEME, 0, 0, 0); answer(input());", {TestStatus.SANDBOX_VIOLATION}),
    "mount": (
        'mount("none", "/tmp", "tmpfs", 0, 0); answer(input());',
        {TestStatus.SANDBOX_VIOLATION},
    ),
    "kexec_and_bpf": (
        "syscall(SYS_bpf, 0, 0, 0); syscall(SYS_kexec_load, 0, 0, 0, 0); answer(input());",
        {TestStatus.SANDBOX_VIOLATION},
    ),
    "i386_syscall_gate": (
        # A 32-bit system call from 64-bit code: a classic seccomp bypass attempt.
        'long r; __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L)); answer(input());',
        {TestStatus.SANDBOX_VIOLATION},
    ),
    "reads_host_secret": (
        """
        FILE *f = fopen("@SECRET_PATH@", "r"); char buf[256] = "";
        if (f) { fgets(buf, sizeof buf, f); printf("%s\\n", buf); }
        answer(input());
        """,
        {TestStatus.PASSED},  # it may run, but must not see the file (checked below)
    ),
    "writes_outside": (
        """
        int fd = open("@OUTSIDE_PATH@", O_WRONLY | O_CREAT, 0644);
        if (fd >= 0) { write(fd, "pwned", 5); close(fd); }
        FILE *g = fopen("/usr/pwned", "w"); if (g) fputs("pwned", g);
        answer(input());
        """,
        {TestStatus.PASSED},  # the write must fail (checked below)
    ),
    "leaves_a_daemon": (
        """
        if (fork() == 0) { setsid(); if (fork() == 0) {
            char *argv[] = {"/bin/sleep", "@MARKER@", 0};
            execv("/bin/sleep", argv); for (;;) pause(); } _exit(0); }
        answer(input());
        """,
        {TestStatus.PASSED},  # must not outlive the run (checked below)
    ),
    "kills_everything": ("kill(-1, SIGKILL); answer(input());", {TestStatus.CRASHED}),
    "segfault": ("*(volatile int *)16 = 1; return 0;", {TestStatus.CRASHED}),
    "abort": ("abort();", {TestStatus.CRASHED}),
    "stack_overflow": (
        "volatile char big[1 << 16]; big[0] = 1; return main() + big[0];",
        {TestStatus.CRASHED},
    ),
    "exit_code": ("input(); return 3;", {TestStatus.NONZERO_EXIT}),
    "wrong_answer": ("answer(input() + 1); return 0;", {TestStatus.WRONG_OUTPUT}),
    "huge_tmp_file": (
        """
        FILE *f = fopen("/tmp/big", "w"); static char buf[1 << 20];
        for (int i = 0; i < 4096; i++) fwrite(buf, 1, sizeof buf, f);
        fclose(f); answer(input());
        """,
        {TestStatus.CRASHED, TestStatus.NONZERO_EXIT},  # SIGXFSZ, or a write error
    ),
    "escalates_privileges": (
        'if (setuid(0) == 0 || getuid() == 0) puts("root"); answer(input());',
        {TestStatus.PASSED},  # prints nothing extra (output compared below)
    ),
    "reads_environment": (
        'if (getenv("HOME") || getenv("USER")) puts("env leaked"); answer(input());',
        {TestStatus.PASSED},
    ),
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hostile")
    secret = root / "secret.txt"
    secret.write_text(SECRET)
    secret.chmod(0o644)
    os.chmod(root, 0o755)
    source = root / "base.c"
    source.write_text(BASELINE)
    tests = [TestCase("t1", b"21\n", b"42\n")]
    options = VerifyOptions(
        limits=SandboxLimits(wall_seconds=5, cpu_seconds=5, memory_bytes=256 << 20,
                             output_bytes=1 << 20),
        measure=False,
        min_timeout=1.5,
    )  # fmt: skip
    sandbox = Sandbox(options.limits)
    baseline = prepare_baseline(source, tests, root / "work", sandbox, options=options)
    yield root, sandbox, baseline, options, secret
    sandbox.close()


def _asm_of(root: Path, name: str, c_text: str) -> str:
    src = root / f"{name}.c"
    src.write_text(c_text)
    out = root / f"{name}.s"
    proc = subprocess.run(
        ["gcc", "-O1", "-S", str(src), "-o", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return out.read_text()


def _leftovers() -> list[str]:
    proc = subprocess.run(["pgrep", "-af", MARKER], capture_output=True, text=True)
    return [line for line in proc.stdout.splitlines() if "pgrep" not in line]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_candidate_gets_a_clear_verdict(lab, name: str) -> None:
    root, sandbox, baseline, options, secret = lab
    body, acceptable = HOSTILE[name]
    outside = root / f"outside-{name}.txt"
    body = (
        body.replace("@SECRET_PATH@", str(secret))
        .replace("@OUTSIDE_PATH@", str(outside))
        .replace("@MARKER@", MARKER)
    )
    asm = _asm_of(root, name, _program(body))
    started = time.monotonic()
    result = verify_candidate(asm, baseline, sandbox, options)
    elapsed = time.monotonic() - started

    (verdict,) = result.tests
    assert verdict.status in acceptable, (name, verdict)
    expected_verdict = Verdict.NOT_FASTER if verdict.passed else Verdict.TESTS_FAILED
    assert result.verdict is expected_verdict
    # Nothing escapes: no secret read, no file written outside, no process left behind.
    assert not outside.exists()
    assert not Path("/usr/pwned").exists()
    assert not _leftovers(), _leftovers()
    assert elapsed < 15, f"{name} took {elapsed:.1f}s"


def test_caller_keeps_working_after_hostile_runs(lab) -> None:
    root, sandbox, baseline, options, _ = lab
    asm = _asm_of(root, "honest", BASELINE)
    result = verify_candidate(asm, baseline, sandbox, options)
    assert result.all_passed
    assert result.identical_to_baseline is False or result.tests_passed == 1


# A program under valgrind that leaves, where valgrind writes its profile (beside itself in
# the output directory the sandbox lends), a link to /dev/zero: valgrind writes through it at
# exit, and a profile read through the link would never end.
PROFILE_LINK_C = r"""
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char dir[4096], path[4200];
    const char *names[] = {"callgrind.out", "cachegrind.out"};
    for (int i = 0; i < 2; i++) {
        strncpy(dir, argv[0], sizeof dir - 1);
        dir[sizeof dir - 1] = 0;
        snprintf(path, sizeof path, "%s/%s", dirname(dir), names[i]);
        unlink(path);
        symlink("/dev/zero", path);
    }
    puts("1");
    return 0;
}
"""


@pytest.mark.parametrize("tool", ["callgrind", "cachegrind"])
def test_a_program_cannot_plant_a_link_where_its_profile_goes(tmp_path: Path, tool: str) -> None:
    """What valgrind leaves is read from a directory the program could write too: a link
    there (to /dev/zero, which would never end; or to a host file) is not followed."""
    pytest.importorskip("pyseccomp")
    from asmopt.executor.callgrind import CallgrindError, count_instructions_sandboxed
    from asmopt.executor.toolchain import find_tool

    if find_tool("valgrind") is None:
        pytest.skip("valgrind not installed")
    src = tmp_path / "plant.c"
    src.write_text(PROFILE_LINK_C)
    binary = tmp_path / "plant"
    subprocess.run(["gcc", "-O1", str(src), "-o", str(binary)], check=True)
    with Sandbox() as box, pytest.raises(CallgrindError, match="profile of plant cannot be read"):
        count_instructions_sandboxed(box, binary, b"", timeout=60, tool=tool)


def test_what_a_program_leaves_is_read_only_as_a_regular_file_and_never_waits(
    tmp_path: Path,
) -> None:
    """The one way the host opens a file a sandboxed program could have written
    (``executor.leftover.open_left``: its profiles, a tool's product, PGO data): a link is
    refused (ELOOP), and a FIFO is refused at once, where a plain open would wait for a
    writer forever."""
    import errno
    import os

    from asmopt.executor.leftover import NotRegularFile, open_left

    (tmp_path / "real").write_bytes(b"data")
    os.symlink(tmp_path / "real", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    with open_left(tmp_path / "real") as f:
        assert f.read() == b"data"
    with pytest.raises(OSError) as refused:
        open_left(tmp_path / "link")
    assert refused.value.errno == errno.ELOOP
    with pytest.raises(NotRegularFile):
        open_left(tmp_path / "fifo")
    with pytest.raises(NotRegularFile):
        open_left(tmp_path)
    with pytest.raises(FileNotFoundError):
        open_left(tmp_path / "missing")
