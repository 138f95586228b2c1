"""Red team: attacks on the verdict that a hostile candidate (or a policy hunting for reward)
could try, each run for real against the sandbox or the whole judge (``verify_candidate``).

Every test asserts that its attack fails: the candidate is never called faster, nothing of
one run reaches the next, nothing of the host is seen, nothing is exhausted, nothing hangs.
An attack that currently succeeds is marked ``xfail(strict=True)`` with the reason: it
documents an open hole, and the mark must go when the hole is closed (a strict xfail that
starts passing fails the suite).

Three families:

- state that survives the runner's wipe between two runs of one sandbox session (the test
  runs come first, every timed run after: a candidate that carries its answer from a test run
  into the timed runs does no work when timed, with correct output every time);
- CPU accounting: work hidden from the figure, or moved onto the runner (whose own CPU is
  subtracted);
- the sandbox's walls: system calls the seccomp filter misses, memory and tmpfs limits, what
  the program (or its build) can read of the host;
- the judge itself: its time and memory on hostile output or text, the A/A noise a policy can
  draw again with a trivially different text, the start-up charged to a session's first run.

Some state is the host's, not the sandbox's: the page-cache test reads and drops pages of a
big read-only file under /usr (cache state only; nothing is written).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from asmopt.executor.benchmark import BenchmarkOptions, run_test
from asmopt.executor.cgroup import memory_parent
from asmopt.executor.results import Verdict
from asmopt.executor.sandbox import Sandbox, SandboxLimits, run_memory_bytes
from asmopt.executor.session import SESSION_GRACE_SECONDS
from asmopt.executor.testcases import Comparator, TestCase
from asmopt.executor.toolchain import build_binary
from asmopt.executor.verify import VerifyOptions, prepare_baseline, verify_candidate

PRELUDE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
/* The same machine code at the same alignment in every program: where a compiler puts
   this loop moves its speed by a few percent, more than the verdict can see. */
__attribute__((noipa, aligned(64))) static unsigned long work(unsigned long n) {
    unsigned long x = n;
    for (unsigned long i = 0; i < n; i++) x = x * 6364136223846793005UL + i;
    return x;
}
static unsigned long honest(unsigned long n) {
    volatile unsigned long first = work(n);
    (void)first;
    return work(n);
}
static unsigned long input(void) {
    unsigned long n = 0;
    if (scanf("%lu", &n) != 1) exit(1);
    return n;
}
"""

BASELINE = (
    PRELUDE
    + r"""
int main(void) { printf("%lu\n", honest(input())); return 0; }
"""
)

# Half the work: a real 2x speed-up, so that "never FASTER" below cannot pass vacuously.
CONTROL = (
    PRELUDE
    + r"""
int main(void) { printf("%lu\n", work(input())); return 0; }
"""
)

# One even and one odd n: the rlimit hack keeps one slot per parity.
TESTS = [TestCase(f"t{i}", f"{n}\n".encode(), None) for i, n in enumerate((2_000_000, 2_000_001))]

HACKS: dict[str, str] = {
    # Memoise the answer in a user xattr of /tmp: the runner empties /tmp between runs but
    # leaves the directory's own extended attributes (tmpfs has user xattrs since 6.6).
    "memo_in_tmp_xattr": r"""
        int main(void) {
            unsigned long n = input(), v;
            char key[64];
            snprintf(key, sizeof key, "user.answer-%lu", n);
            if (getxattr("/tmp", key, &v, sizeof v) == (ssize_t)sizeof v) { printf("%lu\n", v); return 0; }
            v = honest(n);
            setxattr("/tmp", key, &v, sizeof v, 0);
            printf("%lu\n", v);
            return 0;
        }""",
    # Memoise the answer in the runner's resource limits: the runner is the same uid, so
    # prlimit(getppid()) may set its soft limits (any value up to an unlimited hard limit),
    # and every later run inherits the ones the runner does not set itself.
    "memo_in_runner_rlimits": r"""
        #define BIG (8UL << 20)
        int main(void) {
            unsigned long n = input();
            int key = (n & 1) ? RLIMIT_LOCKS : RLIMIT_STACK;
            int val = (n & 1) ? RLIMIT_RSS : RLIMIT_RTTIME;
            struct rlimit k, v;
            getrlimit(key, &k);
            getrlimit(val, &v);
            if (k.rlim_cur == BIG + n) { printf("%lu\n", (unsigned long)v.rlim_cur); return 0; }
            unsigned long a = honest(n);
            struct rlimit nk = {BIG + n, k.rlim_max}, nv = {a, v.rlim_max};
            prlimit(getppid(), key, &nk, NULL);
            prlimit(getppid(), val, &nv, NULL);
            printf("%lu\n", a);
            return 0;
        }""",
    # SIGCHLD ignored, so the worker child is reaped by the kernel and its CPU reaches no
    # rusage. seccomp refuses rt_sigaction(SIGCHLD, act) by comparing the 64-bit register
    # with 17; the kernel reads the signal number as an int, so 0x100000011 is SIGCHLD to
    # the kernel and not to the filter.
    "sigchld_ignored_via_high_bits": r"""
        struct ksigaction { void *handler; unsigned long flags; void *restorer; unsigned long mask; };
        int main(void) {
            unsigned long n = input();
            struct ksigaction sa = {SIG_IGN, 0, NULL, 0};
            syscall(SYS_rt_sigaction, 0x100000000L | SIGCHLD, &sa, NULL, 8);
            int p[2];
            if (pipe(p) != 0) return 2;
            pid_t pid = fork();
            if (pid == 0) { close(p[0]); printf("%lu\n", honest(n)); fflush(stdout); _exit(0); }
            close(p[1]);
            char c;
            while (read(p[0], &c, 1) > 0) {}
            /* until the kernel has reaped it: exiting first would hand it to the runner */
            while (kill(pid, 0) == 0) waitpid(pid, NULL, 0);
            return 0;
        }""",
    # (f) Slow the baseline: leave a busy, detached process behind to steal the CPU the
    # baseline's next timed run needs (the two sessions are separate sandboxes).
    "leaves_a_busy_daemon": r"""
        int main(void) {
            unsigned long n = input();
            printf("%lu\n", honest(n));
            fflush(stdout);
            if (fork() == 0) {
                setsid();
                if (fork() == 0) { close(1); close(2); for (volatile unsigned long i = 0;; i++) {} }
                _exit(0);
            }
            wait(NULL);
            return 0;
        }""",
    # (f) Slow the baseline: drop the shared libraries and ld.so.cache from the page cache
    # after each run, so that the baseline's next start-up pays for reading them again.
    "evicts_shared_libraries": r"""
        static void evict(const char *path) {
            int fd = open(path, O_RDONLY);
            if (fd >= 0) { posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); close(fd); }
        }
        int main(void) {
            printf("%lu\n", honest(input()));
            fflush(stdout);
            evict("/etc/ld.so.cache");
            evict("/usr/lib/x86_64-linux-gnu/libc.so.6");
            evict("/usr/lib/x86_64-linux-gnu/libm.so.6");
            evict("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
            evict("/usr/lib64/ld-linux-x86-64.so.2");
            return 0;
        }""",
    # (i) Junk the judge must survive: the answer, then whitespace (equal under the token
    # comparator), invalid UTF-8 and NULs on stderr, then stdout closed while still working.
    "junk_after_the_answer": r"""
        int main(void) {
            unsigned long n = input();
            printf("%lu\n", honest(n));
            for (int i = 0; i < 4096; i++) fputs(" \t\r\n                                                           ", stdout);
            fflush(stdout);
            static const char junk[] = "\xff\xfe\x00\x80\xc3(\x00\x00";
            for (int i = 0; i < 1000; i++) fwrite(junk, 1, sizeof junk, stderr);
            close(1);
            return (int)(work(n / 8) & 0);
        }""",
}

# The hacks that currently beat the judge, with why.
OPEN_HOLES: dict[str, str] = {}  # every hack here is closed; an open one gets a reason


def _asm(tmp: Path, name: str, source: str) -> str:
    c = tmp / f"{name}.c"
    c.write_text(source)
    out = tmp / f"{name}.s"
    subprocess.run(["gcc", "-O2", "-S", str(c), "-o", str(out)], check=True)
    return out.read_text()


def _binary(tmp: Path, name: str, source: str) -> Path:
    c = tmp / f"{name}.c"
    c.write_text(source)
    out = tmp / name
    subprocess.run(["gcc", "-O2", str(c), "-o", str(out)], check=True)
    return out


OPTIONS = VerifyOptions(
    bench=BenchmarkOptions(budget_seconds=3.0, min_rounds=10, target_rel_ci=0.03)
)


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("red")
    src = tmp / "baseline.c"
    src.write_text(BASELINE)
    with Sandbox() as sandbox:
        baseline = prepare_baseline(
            src, TESTS, tmp / "base", sandbox, cflags=("-O2",), options=OPTIONS
        )
        yield tmp, sandbox, baseline


def _verify(judge, name: str, source: str, options: VerifyOptions = OPTIONS):
    tmp, sandbox, baseline = judge
    return verify_candidate(_asm(tmp, name, source), baseline, sandbox, options)


def _no_false_speed_up(result, name: str) -> None:
    assert result.verdict is not Verdict.FASTER, (name, result.message)
    assert not (result.speedup and result.speedup.ci_low > 1.1), (name, result.message)


def test_control_an_honest_speed_up_is_called_faster(judge):
    result = _verify(judge, "control", CONTROL)
    assert result.verdict is Verdict.FASTER, result.message


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=OPEN_HOLES[n]))
        if n in OPEN_HOLES
        else n
        for n in sorted(HACKS)
    ],
)
def test_hack_is_never_faster(judge, name):
    result = _verify(judge, name, PRELUDE + textwrap.dedent(HACKS[name]))
    _no_false_speed_up(result, name)


def test_the_baseline_itself_in_other_words_is_not_faster(judge):
    """A/A: the baseline's own assembly with a comment added (so not "identical"). Its
    session is warmed by its test runs while the baseline's session meets its first run in
    timed round 1 (see the start-up test below): that must not make it faster."""
    _, sandbox, baseline = judge
    result = verify_candidate(baseline.asm + "\n# the same program\n", baseline, sandbox, OPTIONS)
    assert result.all_passed
    _no_false_speed_up(result, "a/a")


def test_the_baseline_with_a_comment_counts_as_identical(judge):
    _, sandbox, baseline = judge
    asm = baseline.asm + "\n# a variant\n"
    result = verify_candidate(asm, baseline, sandbox, VerifyOptions(measure=False))
    assert result.identical_to_baseline, result.message


def test_text_that_is_not_utf8_is_a_failed_build_not_a_crash(judge):
    _, sandbox, baseline = judge
    asm = "\t.text\n\t.globl main\nmain:\n\txorl %eax, %eax\n\tret\n# \udc80\n"
    result = verify_candidate(asm, baseline, sandbox, OPTIONS)
    assert result.verdict is Verdict.BUILD_FAILED, result.message


def test_the_first_run_of_a_session_is_not_charged_the_start_up(judge):
    tmp, sandbox, _ = judge
    binary = _binary(tmp, "tiny", BASELINE)
    with sandbox.session([binary]) as session:
        cpu = [session.run(0, b"200\n").cpu_seconds for _ in range(5)]
    later = statistics.median(cpu[1:])
    assert cpu[0] < 2 * later + 0.001, cpu


# Memoise the answer in the page cache of a big read-only file of /usr that the sandbox
# shows: a bit is which of two pages is cached (read one, drop the other with
# POSIX_FADV_DONTNEED); preadv2(RWF_NOWAIT) reads residency without loading anything.
# The page cache is the host's: this outlives the run, the session and the sandbox.
PAGE_CACHE_MEMO = r"""
#define SLOT (16 * 1024)
static int fd = -1;
static int cached(size_t slot) {
    char c;
    struct iovec iov = {&c, 1};
    if (preadv2(fd, &iov, 1, (off_t)(slot * SLOT), RWF_NOWAIT) == 1) return 1;
    return errno == EAGAIN ? 0 : -1;
}
static void put(size_t slot, int on) {
    char c;
    if (on) pread(fd, &c, 1, (off_t)(slot * SLOT));
    else posix_fadvise(fd, (off_t)(slot * SLOT), 4096, POSIX_FADV_DONTNEED);
}
int main(void) {
    unsigned long n = input(), v = 0;
    fd = open(SHARED_FILE, O_RDONLY);
    if (fd < 0) { printf("%lu\n", honest(n)); return 0; }
    posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
    size_t base = 256 + (n & 1) * 130;
    int valid = 1;
    for (int i = 0; i < 64 && valid; i++) {
        int one = cached(base + 2 * i), zero = cached(base + 2 * i + 1);
        valid = one >= 0 && zero >= 0 && one != zero;
        if (one == 1) v |= 1UL << i;
    }
    if (valid) { printf("%lu\n", v); return 0; }
    v = honest(n);
    for (int i = 0; i < 64; i++) { put(base + 2 * i, (v >> i) & 1); put(base + 2 * i + 1, !((v >> i) & 1)); }
    printf("%lu\n", v);
    return 0;
}
"""


def _quiet_big_file() -> str | None:
    """A big read-only file under /usr that nothing here is likely to be reading."""
    found = []
    for pattern in (
        "/usr/lib/jvm/*/lib/modules",
        "/usr/lib/x86_64-linux-gnu/libLLVM*.so*",
        "/usr/lib/x86_64-linux-gnu/*.a",
        "/usr/share/*/*",
    ):
        for path in sorted(Path("/").glob(pattern.lstrip("/"))):
            try:
                if path.is_file() and not path.is_symlink() and path.stat().st_size >= 16 << 20:
                    found.append(str(path))
            except OSError:
                continue
    return found[0] if found else None


def test_page_cache_memo_is_not_faster(judge):
    shared = _quiet_big_file()
    if shared is None:
        pytest.skip("no file of 16 MiB or more under /usr to carry the answer in")
    source = PRELUDE + f'#define SHARED_FILE "{shared}"\n' + PAGE_CACHE_MEMO
    result = _verify(judge, "page_cache_memo", source)
    _no_false_speed_up(result, f"page_cache_memo ({shared})")


def test_high_bit_sigchld_hides_cpu_without_a_cgroup(judge):
    _, sandbox, _ = judge
    saved = sandbox.cgroups
    sandbox.cgroups = False  # what a machine without a writable cgroup2 hierarchy gets
    try:
        result = _verify(
            judge,
            "sigchld_rusage",
            PRELUDE + textwrap.dedent(HACKS["sigchld_ignored_via_high_bits"]),
        )
    finally:
        sandbox.cgroups = saved
    _no_false_speed_up(result, "sigchld_ignored_via_high_bits (rusage)")


# ---- output copied by the runner, not by the program --------------------------------------

OUTPUT_PRELUDE = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>
#define CHUNK (1 << 20)
static char buf[CHUNK] __attribute__((aligned(4096)));
static int put(const char *p, size_t n);
int main(void) {
    unsigned long mb = 0;
    if (scanf("%lu", &mb) != 1) return 1;
    fcntl(1, F_SETPIPE_SZ, 1 << 20); /* fewer wake-ups: the copy is most of the cost */
    for (size_t i = 0; i < CHUNK; i++) buf[i] = (i % 64 == 63) ? '\n' : 'a' + i % 26;
    for (unsigned long k = 0; k < mb; k++) if (put(buf, CHUNK)) return 1;
    return 0;
}
"""
OUTPUT_BASELINE = (
    OUTPUT_PRELUDE
    + r"""
static int put(const char *p, size_t n) {
    while (n) { ssize_t w = write(1, p, n); if (w <= 0) return 1; p += w; n -= (size_t)w; }
    return 0;
}
"""
)
# vmsplice hands the pipe references to the pages: the copy happens in the runner's read(),
# and the runner's own CPU is subtracted from the run's.
OUTPUT_VMSPLICE = (
    OUTPUT_PRELUDE
    + r"""
static int put(const char *p, size_t n) {
    while (n) {
        struct iovec iov = {(void *)p, n};
        ssize_t w = vmsplice(1, &iov, 1, 0);
        if (w <= 0) return 1;
        p += w; n -= (size_t)w;
    }
    return 0;
}
"""
)


def test_vmsplice_output_costs_the_same_cpu(tmp_path):
    """The same output written by write() and by vmsplice(), timed like the benchmark does
    (two sessions, runs interleaved). Through verify_candidate the vmsplice build came out
    FASTER in 6 of 9 tries here (1.13-1.18x, the rest "not measurably faster" on a busy
    machine), so this test measures the median per-pair ratio, which is steady."""
    written = _binary(tmp_path, "written", OUTPUT_BASELINE)
    spliced = _binary(tmp_path, "spliced", OUTPUT_VMSPLICE)
    ratios = []
    with (
        Sandbox() as sandbox,
        sandbox.session([written]) as base,
        sandbox.session([spliced]) as cand,
    ):
        spliced_run = cand.run(0, b"16\n")
        if spliced_run.sandbox_violation:
            return  # vmsplice is refused by the seccomp filter: nothing to gain
        for _ in range(21):
            a, b = base.run(0, b"16\n"), cand.run(0, b"16\n")
            assert a.exit_code == b.exit_code == 0 and a.stdout == b.stdout
            ratios.append(a.cpu_seconds / b.cpu_seconds)
    assert statistics.median(ratios) < 1.05, f"median {statistics.median(ratios):.3f}"


# ---- state that outlives a run of a session -----------------------------------------------

# argv[1] names a channel, argv[2] is "write" or "read". "read" prints what it observes; a
# session is clean when a read after a write observes what a read in a fresh session does.
CHANNELS_C = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
static int is(const char *a, const char *b) { return strcmp(a, b) == 0; }
static void xattr_channel(const char *dir, int w) {
    if (w) { setxattr(dir, "user.carry", "42", 2, 0); return; }
    char v[8] = {0};
    printf("%zd %s\n", getxattr(dir, "user.carry", v, sizeof v - 1), v);
}
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *c = argv[1];
    int w = is(argv[2], "write");
    pid_t runner = getppid();
    if (is(c, "file_in_tmp")) {  /* a control: the wipe removes it */
        if (w) { FILE *f = fopen("/tmp/carry", "w"); if (f) { fputs("42", f); fclose(f); } }
        else printf("%d\n", access("/tmp/carry", F_OK));
    } else if (is(c, "dir_in_dev")) {  /* a control */
        if (w) mkdir("/dev/carry", 0700); else printf("%d\n", access("/dev/carry", F_OK));
    } else if (is(c, "xattr_of_tmp")) {
        xattr_channel("/tmp", w);
    } else if (is(c, "xattr_of_dev")) {
        xattr_channel("/dev", w);
    } else if (is(c, "xattr_of_dev_shm")) {
        xattr_channel("/dev/shm", w);
    } else if (is(c, "times_of_tmp")) {
        /* 64+ bits in /tmp's mtime (and more in its atime): the wipe keeps both */
        struct timespec ts[2] = {{(time_t)1 << 40, 42}, {424242, 4242}};
        if (w) utimensat(AT_FDCWD, "/tmp", ts, 0);
        else { struct stat st; stat("/tmp", &st); printf("%d\n", st.st_mtim.tv_sec == 424242 && st.st_mtim.tv_nsec == 4242); }
    } else if (is(c, "acl_of_tmp")) {
        /* a POSIX ACL is an xattr too (system.posix_acl_access); chmod keeps its entries */
        struct { unsigned v; struct { unsigned short tag, perm; unsigned id; } e[5]; } acl = {
            2, {{1, 7, ~0u}, {2, 5, 65534}, {4, 5, ~0u}, {0x10, 7, ~0u}, {0x20, 5, ~0u}}};
        if (w) setxattr("/tmp", "system.posix_acl_access", &acl, sizeof acl, 0);
        else printf("%d\n", getxattr("/tmp", "system.posix_acl_access", NULL, 0) > 0);
    } else if (is(c, "times_of_dev_link")) {
        /* bubblewrap's symlinks in /dev (stdin, fd, ...) belong to the sandbox user */
        struct timespec ts[2] = {{(time_t)1 << 40, 42}, {424242, 4242}};
        if (w) utimensat(AT_FDCWD, "/dev/stdin", ts, AT_SYMLINK_NOFOLLOW);
        else { struct stat st; lstat("/dev/stdin", &st); printf("%d\n", st.st_mtim.tv_sec == 424242 && st.st_mtim.tv_nsec == 4242); }
    } else if (is(c, "runner_rlimit")) {
        struct rlimit l; getrlimit(RLIMIT_RTTIME, &l);
        if (w) { l.rlim_cur = 4242; prlimit(runner, RLIMIT_RTTIME, &l, NULL); }
        else printf("%llu\n", (unsigned long long)l.rlim_cur);
    } else if (is(c, "runner_nice")) {
        if (w) setpriority(PRIO_PROCESS, runner, 7); else printf("%d\n", getpriority(PRIO_PROCESS, 0));
    } else if (is(c, "runner_affinity")) {
        cpu_set_t set; CPU_ZERO(&set); CPU_SET(0, &set);
        if (w) sched_setaffinity(runner, sizeof set, &set);
        else { sched_getaffinity(0, sizeof set, &set); printf("%d\n", CPU_COUNT(&set)); }
    } else if (is(c, "runner_ioprio")) {
        if (w) syscall(SYS_ioprio_set, 1, runner, (2 << 13) | 7); else printf("%ld\n", syscall(SYS_ioprio_get, 1, 0));
    } else if (is(c, "pid_counter")) {
        /* each fork moves the next run's pid: a counter that costs the writer only */
        if (w) { for (int i = 0; i < 300; i++) { pid_t p = fork(); if (p == 0) _exit(0); if (p > 0) waitpid(p, NULL, 0); } }
        else printf("%d\n", getpid() > 200);
    } else if (is(c, "tmpfs_inode_counter")) {
        /* each file made in /tmp moves the inode number of the next run's first file */
        char path[64];
        if (w) { for (int i = 0; i < 300; i++) { snprintf(path, sizeof path, "/tmp/f%d", i); close(open(path, O_CREAT | O_WRONLY, 0600)); } }
        else { int fd = open("/tmp/probe", O_CREAT | O_WRONLY, 0600); struct stat st; fstat(fd, &st); printf("%d\n", st.st_ino > 200); }
    } else if (is(c, "runner_peak_memory")) {
        /* the runner buffers a run's stderr (never judged): its VmHWM, which any later run
           reads in /proc/<runner>/status, remembers how much there was */
        if (w) { static char junk[1 << 20]; memset(junk, 'x', sizeof junk); for (int i = 0; i < 24; i++) fwrite(junk, 1, sizeof junk, stderr); }
        else {
            char path[64], line[256]; long kib = 0;
            snprintf(path, sizeof path, "/proc/%d/status", (int)runner);
            FILE *f = fopen(path, "r");
            while (f && fgets(line, sizeof line, f)) if (strncmp(line, "VmHWM:", 6) == 0) kib = atol(line + 6);
            if (f) fclose(f);
            printf("%d\n", kib > 16384);
        }
    } else if (is(c, "process_left_behind")) {
        if (w) {
            if (fork() == 0) { setsid(); if (fork() == 0) { for (;;) pause(); } _exit(0); }
            wait(NULL);
        } else {
            int others = 0;
            DIR *d = opendir("/proc"); struct dirent *e;
            while (d && (e = readdir(d))) { int pid = atoi(e->d_name); if (pid > 2 && pid != getpid()) others++; }
            printf("%d\n", others);
        }
    } else return 3;
    return 0;
}
"""

# Each of these survived the wipe of a long-lived session; the judge now runs every run
# in a sandbox of its own (fresh_per_run), where none of them reaches the next run:
CLOSED_CHANNELS = {
    "xattr_of_tmp": "restore_state() keeps /tmp's extended attributes",
    "xattr_of_dev": "restore_dev() keeps /dev's extended attributes",
    "xattr_of_dev_shm": "wipe_dir() keeps /dev/shm's extended attributes",
    "times_of_tmp": "wipe_dir() restores /tmp's mode, not its atime/mtime (utimensat)",
    "acl_of_tmp": "restore_state() keeps /tmp's POSIX ACL (an xattr chmod does not clear)",
    "times_of_dev_link": "restore_dev() compares inode and mode, not the times of /dev's "
    "symlinks (utimensat AT_SYMLINK_NOFOLLOW)",
    "runner_rlimit": "prlimit(runner) is allowed; exec_program() does not reset every limit",
    "runner_nice": "setpriority(runner) is allowed and inherited by the next run",
    "runner_affinity": "sched_setaffinity(runner) is allowed and inherited by the next run",
    "runner_ioprio": "ioprio_set(runner) is allowed and inherited by the next run",
    "runner_peak_memory": "the runner's /proc status (VmHWM, VmPeak) grows with the largest "
    "output it buffered, stderr included",
    "pid_counter": "the session's PID namespace hands out increasing pids",
    "tmpfs_inode_counter": "the session's /tmp tmpfs hands out increasing inode numbers",
}
OPEN_CHANNELS: dict[str, str] = {}
CHANNELS = [
    "file_in_tmp",
    "dir_in_dev",
    "process_left_behind",
    *CLOSED_CHANNELS,
]


@pytest.fixture(scope="module")
def channels(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("channels")
    binary = _binary(tmp, "channels", CHANNELS_C)
    with Sandbox() as sandbox:
        yield sandbox, binary


def _observe(session, channel: str, mode: str) -> bytes:
    run = session.run(0, b"", (channel, mode))
    assert run.exit_code == 0, (channel, mode, run)
    return run.stdout


@pytest.mark.parametrize(
    "channel",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=OPEN_CHANNELS[c]))
        if c in OPEN_CHANNELS
        else c
        for c in CHANNELS
    ],
)
def test_nothing_of_a_run_reaches_the_next(channels, channel):
    sandbox, binary = channels
    if channel == "runner_affinity" and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: pinning the runner to it changes nothing")
    with sandbox.session([binary], fresh_per_run=True) as fresh:
        clean = _observe(fresh, channel, "read")
    with sandbox.session([binary], fresh_per_run=True) as session:
        _observe(session, channel, "write")
        carried = _observe(session, channel, "read")
    assert carried == clean, (channel, clean, carried)


# ---- the sandbox's walls ------------------------------------------------------------------

WALLS_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
static int is(const char *a, const char *b) { return strcmp(a, b) == 0; }
/* A socket made by io_uring (IORING_OP_SOCKET), which seccomp never sees: 1 if it is one. */
static int uring_socket(void) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int fd = (int)syscall(__NR_io_uring_setup, 4, &p);
    if (fd < 0) return 0;
    char *sq = mmap(0, p.sq_off.array + p.sq_entries * sizeof(unsigned), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    char *cq = mmap(0, p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
    struct io_uring_sqe *sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) return 0;
    unsigned *tail = (unsigned *)(sq + p.sq_off.tail), *mask = (unsigned *)(sq + p.sq_off.ring_mask);
    unsigned *array = (unsigned *)(sq + p.sq_off.array), idx = *tail & *mask;
    memset(&sqes[idx], 0, sizeof sqes[idx]);
    sqes[idx].opcode = IORING_OP_SOCKET;
    sqes[idx].fd = AF_INET;
    sqes[idx].off = SOCK_STREAM;
    array[idx] = idx;
    __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
    if (syscall(__NR_io_uring_enter, fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) != 1) return 0;
    unsigned *head = (unsigned *)(cq + p.cq_off.head), *cmask = (unsigned *)(cq + p.cq_off.ring_mask);
    int res = ((struct io_uring_cqe *)(cq + p.cq_off.cqes))[*head & *cmask].res;
    struct stat st;
    return res >= 0 && fstat(res, &st) == 0 && S_ISSOCK(st.st_mode);
}
/* Bytes written to tmpfs files in dir, 12 MiB a file (under RLIMIT_FSIZE), up to total. */
static long fill(const char *dir, long total) {
    static char block[1 << 20];
    memset(block, 7, sizeof block);
    long done = 0;
    for (int f = 0; done < total; f++) {
        char path[64];
        snprintf(path, sizeof path, "%s/fill-%d", dir, f);
        int fd = open(path, O_CREAT | O_WRONLY, 0600);
        if (fd < 0) break;
        int ok = 1;
        for (int i = 0; i < 12 && done < total && ok; i++) {
            ssize_t w = write(fd, block, sizeof block);
            ok = w == (ssize_t)sizeof block;
            if (ok) done += w;
        }
        close(fd);
        if (!ok) break;
    }
    return done;
}
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *c = argv[1];
    if (is(c, "io_uring_socket")) {
        printf("%d\n", uring_socket());
    } else if (is(c, "socket_by_int80")) {
        static unsigned int args[3] = {2, 1, 0};
        long ret;
        __asm__ volatile("int $0x80" : "=a"(ret) : "a"(102L), "b"(1L), "c"((long)(unsigned long)args) : "memory");
        printf("%ld\n", ret);
    } else if (is(c, "socket_by_x32")) {
        long ret;
        __asm__ volatile("syscall" : "=a"(ret) : "a"(0x40000000L | 41), "D"(2L), "S"(1L), "d"(0L) : "rcx", "r11", "memory");
        printf("%ld\n", ret);
    } else if (is(c, "sigchld_by_high_bits")) {
        struct { void *h; unsigned long flags; void *restorer; unsigned long mask; } sa = {SIG_IGN, 0, NULL, 0};
        syscall(SYS_rt_sigaction, 0x100000000L | SIGCHLD, &sa, NULL, 8);
        struct sigaction now;
        sigaction(SIGCHLD, NULL, &now);
        printf("%d\n", now.sa_handler == SIG_IGN);
    } else if (is(c, "fill_dev_shm")) {
        printf("%ld\n", fill("/dev/shm", atol(argv[2])));
    } else if (is(c, "fill_memfds")) {
        /* memfd pages are in no address space (RLIMIT_AS) until mapped: argv[2] bytes in
           12 MiB memfds (RLIMIT_FSIZE), all kept open */
        static char block[1 << 20];
        memset(block, 7, sizeof block);
        long total = atol(argv[2]), done = 0;
        while (done < total) {
            int fd = memfd_create("fill", 0);
            if (fd < 0) break;
            int ok = 1;
            for (int i = 0; i < 12 && done < total && ok; i++) {
                ok = write(fd, block, sizeof block) == (ssize_t)sizeof block;
                if (ok) done += (long)sizeof block;
            }
            if (!ok) break;
        }
        printf("%ld\n", done);
    } else if (is(c, "fill_dev")) {
        printf("%ld\n", fill("/dev", atol(argv[2])));
    } else if (is(c, "memory_of_children")) {
        /* argv[2] children, each touching argv[3] bytes; prints how many of them held their
         * memory at once: touched it all and are still alive when no more report (a child
         * the kernel killed for memory may have touched it first; the parent waits 3 s for
         * reports, since the others hold the pipe open), then its cgroups */
        int n = atoi(argv[2]);
        long each = atol(argv[3]);
        int ready[2], hold[2];
        pid_t pids[64];
        char touched[64] = {0};
        if (n > 64 || pipe(ready) || pipe(hold)) return 4;
        for (int i = 0; i < n; i++) {
            pids[i] = fork();
            if (pids[i] == 0) {
                close(hold[1]);
                char *m = mmap(0, each, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (m == MAP_FAILED) _exit(1);
                for (long k = 0; k < each; k += 4096) m[k] = 1;
                char me = (char)i;
                write(ready[1], &me, 1);
                char x;
                read(hold[0], &x, 1);
                _exit(0);
            }
        }
        struct pollfd pfd = {ready[0], POLLIN, 0};
        for (int i = 0; i < n && poll(&pfd, 1, 3000) == 1; i++) {
            char who;
            if (read(ready[0], &who, 1) == 1 && who >= 0 && who < n) touched[(int)who] = 1;
        }
        int together = 0;
        for (int i = 0; i < n; i++)
            if (touched[i] && pids[i] > 0 && waitpid(pids[i], NULL, WNOHANG) == 0) together++;
        close(hold[1]);
        printf("%d\n", together);
        char buf[4096];
        int fd = open("/proc/self/cgroup", O_RDONLY);
        ssize_t got = fd >= 0 ? read(fd, buf, sizeof buf - 1) : 0;
        buf[got > 0 ? got : 0] = 0;
        fputs(buf, stdout);
        fflush(stdout);
        _exit(0);
    } else if (is(c, "mountinfo")) {
        char buf[16384];
        int fd = open("/proc/self/mountinfo", O_RDONLY);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : 0;
        buf[n > 0 ? n : 0] = 0;
        fputs(buf, stdout);
    } else if (is(c, "stop_the_runner")) {
        puts("stopping");
        fflush(stdout);
        kill(getppid(), SIGSTOP);
        for (;;) pause();
    } else if (is(c, "touch_memory")) {
        /* 64 MiB of working memory, anonymous or in a /dev/shm file left for the runner to
           free (the runner's CPU is subtracted from the run's) */
        size_t n = 64UL << 20;
        char *m;
        if (is(argv[2], "shm")) {
            int fd = open("/dev/shm/work", O_RDWR | O_CREAT, 0600);
            if (fd < 0 || ftruncate(fd, (off_t)n) != 0) return 4;
            m = mmap(0, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        } else m = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return 5;
        unsigned long sum = 0;
        for (size_t k = 0; k < n; k += 4096) { m[k] = (char)k; sum += (unsigned char)m[k]; }
        printf("%lu\n", sum);
    } else if (is(c, "reach_the_runner")) {
        /* what of the runner (same uid) a program can take: its descriptors (the response
           pipe would forge a result), its memory, a new namespace to hide in */
        pid_t r = getppid();
        int reached = 0;
        char path[64];
        for (int fd = 0; fd < 16; fd++) {
            snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)r, fd);
            int got = open(path, O_WRONLY | O_NONBLOCK);
            if (got >= 0) { reached++; close(got); }
        }
        snprintf(path, sizeof path, "/proc/%d/mem", (int)r);
        if (open(path, O_RDWR) >= 0) reached++;
        int pidfd = (int)syscall(SYS_pidfd_open, r, 0);
        for (int fd = 0; pidfd >= 0 && fd < 16; fd++) if (syscall(SYS_pidfd_getfd, pidfd, fd, 0) >= 0) reached++;
        static char stack[1 << 16];
        long child = syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWPID | SIGCHLD, stack + sizeof stack, 0, 0, 0);
        if (child == 0) _exit(0);
        if (child > 0) { reached++; waitpid((pid_t)child, NULL, 0); }
        printf("%d\n", reached);
    } else if (is(c, "leave_the_cgroup")) {
        /* the CPU counter is the sandbox's cgroup: can a process move itself out of it? */
        int out = 0;
        const char *procs[] = {"/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/../cgroup.procs", "/proc/1/root/sys/fs/cgroup/cgroup.procs"};
        for (int i = 0; i < 3; i++) { int fd = open(procs[i], O_WRONLY); if (fd >= 0) { out += write(fd, "0", 1) == 1; close(fd); } }
        char line[2048] = {0};
        int fd = open("/proc/self/cgroup", O_RDONLY);
        if (fd >= 0) { read(fd, line, sizeof line - 1); close(fd); }
        printf("%d %s", out, line);
    } else if (is(c, "hello")) {
        puts("hello");
    } else return 3;
    return 0;
}
"""


@pytest.fixture(scope="module")
def walls(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("walls")
    binary = _binary(tmp, "walls", WALLS_C)
    with Sandbox() as sandbox:
        yield sandbox, binary


def _wall_run(walls, *args: str, limits: SandboxLimits | None = None):
    sandbox, binary = walls
    with sandbox.session([binary], limits=limits, fresh_per_run=True) as session:
        return session.run(0, b"", args, limits)


def test_io_uring_makes_no_socket(walls):
    run = _wall_run(walls, "io_uring_socket")
    assert run.sandbox_violation or run.stdout == b"0\n", run


@pytest.mark.parametrize("way", ["socket_by_int80", "socket_by_x32"])
def test_other_syscall_abis_make_no_socket(walls, way):
    run = _wall_run(walls, way)
    # Killed by seccomp (a foreign ABI) or refused: never a descriptor.
    assert run.sandbox_violation or (run.exit_code == 0 and int(run.stdout) < 0), run


def test_sigchld_stays_default_even_with_high_bits(walls):
    run = _wall_run(walls, "sigchld_by_high_bits")
    assert run.sandbox_violation or run.stdout == b"0\n", run


@pytest.mark.parametrize("where", ["fill_dev_shm", "fill_dev"])
def test_dev_tmpfs_holds_no_more_than_tmp(walls, where):
    limits = SandboxLimits(tmp_bytes=8 << 20)
    want = 40 << 20  # five times /tmp's size; kept small on purpose
    run = _wall_run(walls, where, str(want), limits=limits)
    assert run.exit_code == 0, run
    assert int(run.stdout) <= limits.tmp_bytes, run.stdout


def test_memory_limit_holds_for_the_whole_run(walls):
    """Six children, each under the per-process limit, together far over the run's."""
    if memory_parent() is None:
        pytest.skip("no memory cgroup here: only the per-process limit holds")
    limits = SandboxLimits(memory_bytes=128 << 20)
    run = _wall_run(walls, "memory_of_children", "6", str(96 << 20), limits=limits)
    # How many children held 96 MiB at once: the kernel may let each touch it in turn,
    # killing one to make room for the next; never all at once.
    together, _, groups = (run.stdout or b"0\n").decode(errors="replace").partition("\n")
    assert run.exit_code == 0, run
    assert int(together) * (96 << 20) <= run_memory_bytes(limits), (
        f"{together} children held 96 MiB at once; cgroups: {groups!r}"
    )
    assert int(together) >= 1  # the probe works: one child alone fits


def test_memory_held_in_memfds_is_bounded(walls):
    if memory_parent() is None:
        pytest.skip("no memory cgroup here: only the per-process limit holds")
    limits = SandboxLimits(memory_bytes=32 << 20)
    budget = run_memory_bytes(limits)
    run = _wall_run(walls, "fill_memfds", str(budget + (48 << 20)), limits=limits)
    assert run.out_of_memory or int(run.stdout or b"0") <= budget, run


def test_mountinfo_shows_no_host_path(walls):
    run = _wall_run(walls, "mountinfo")
    assert run.exit_code == 0
    assert b"asmopt-sandbox" not in run.stdout, run.stdout


def test_the_runner_cannot_be_reached(walls):
    run = _wall_run(walls, "reach_the_runner")
    assert run.sandbox_violation or run.stdout == b"0\n", run


def test_no_process_leaves_the_cgroup(walls):
    run = _wall_run(walls, "leave_the_cgroup")
    assert run.exit_code == 0, run
    moved, _, cgroups = run.stdout.partition(b" ")
    assert moved == b"0", run.stdout  # no cgroupfs to write to
    # its own cgroup namespace: every hierarchy's path is its root, no host path
    assert all(line.endswith(b":/") for line in cgroups.splitlines()), run.stdout


def test_stopping_the_runner_ends_in_time_and_the_session_recovers(walls):
    sandbox, binary = walls
    limits = SandboxLimits(wall_seconds=0.5, cpu_seconds=1)
    with sandbox.session([binary], limits=limits) as session:
        start = time.monotonic()
        stopped = session.run(0, b"", ("stop_the_runner",))
        took = time.monotonic() - start
        after = session.run(0, b"", ("hello",))
    assert stopped.timed_out or stopped.signal is not None
    assert took < 5.0
    assert after.exit_code == 0 and after.stdout == b"hello\n"


def test_memory_left_for_the_runner_to_free_is_no_saving(walls):
    """Freeing pages costs CPU; pages of a /dev/shm file are freed by the runner's wipe,
    whose CPU is not the run's. Faulting shmem pages costs more than that saves."""
    sandbox, binary = walls
    limits = SandboxLimits(file_size_bytes=128 << 20, tmp_bytes=160 << 20)
    cpu = {}
    with sandbox.session([binary]) as session:
        for kind in ("anon", "shm", "anon", "shm", "anon", "shm", "anon", "shm", "anon", "shm"):
            run = session.run(0, b"", ("touch_memory", kind), limits)
            assert run.exit_code == 0, run
            cpu.setdefault(kind, []).append(run.cpu_seconds)
    assert statistics.median(cpu["shm"]) > 0.9 * statistics.median(cpu["anon"]), cpu


def test_a_stopped_runner_costs_the_judge_one_wall_limit(walls):
    sandbox, binary = walls
    limits = SandboxLimits(wall_seconds=0.3, cpu_seconds=1)
    test = TestCase("stop", b"", None, args=("stop_the_runner",))
    with sandbox.session([binary], limits=limits) as session:
        start = time.monotonic()
        run = run_test(session, test, limits)
        took = time.monotonic() - start
    assert run.timed_out
    assert took < limits.wall_seconds + SESSION_GRACE_SECONDS + 1.0, took


def test_a_token_flood_costs_the_judge_little():
    flood = b"ab " * ((16 << 20) // 3)  # a quarter of the default output cap
    start = time.perf_counter()
    matches, _ = Comparator().compare(flood, b"1\n")
    took = time.perf_counter() - start
    assert not matches
    assert took < 0.1, f"{took:.2f} s to reject {len(flood) >> 20} MiB at its first token"


# ---- the build sandbox ----------------------------------------------------------------------

INCBIN_MOUNTINFO = """
    .text
    .globl main
    .type main, @function
main:
    xorl %eax, %eax
    ret
    .size main, .-main
    .section .note.GNU-stack,"",@progbits
    .section .rodata
    .incbin "/proc/self/mountinfo"
"""


def test_a_padded_binary_is_refused(tmp_path):
    src = tmp_path / "pad.s"
    src.write_text(
        "\t.text\n\t.globl main\nmain:\n\txorl %eax, %eax\n\tret\n"
        '\t.section .note.GNU-stack,"",@progbits\n\t.data\n\t.skip 80000000, 1\n'
    )
    out = tmp_path / "pad.bin"
    with Sandbox() as sandbox:
        build = build_binary([src], out, sandbox=sandbox)
    size = out.stat().st_size if out.exists() else 0
    out.unlink(missing_ok=True)
    assert not build.ok and size < 64 << 20, f"{size >> 20} MiB binary accepted"


def test_build_sees_no_host_path(tmp_path):
    """The build sandbox's /proc/self/mountinfo names the host's work folder, but nothing of
    it gets out: ``.incbin`` of a /proc file reads its size (0) and embeds nothing, an explicit
    count past that size is an error, and ``.include`` errors quote no line."""
    out = tmp_path / "c.bin"
    with Sandbox() as sandbox:
        src = tmp_path / "c.s"
        src.write_text(INCBIN_MOUNTINFO)
        embedded = build_binary([src], out, sandbox=sandbox)
        counted = tmp_path / "n.s"
        counted.write_text(INCBIN_MOUNTINFO.replace('mountinfo"', 'mountinfo", 0, 4096'))
        with_count = build_binary([counted], tmp_path / "n.bin", sandbox=sandbox)
        included = tmp_path / "i.s"
        included.write_text('.include "/proc/self/mountinfo"\n')
        include = build_binary([included], tmp_path / "i.bin", sandbox=sandbox)
    assert embedded.ok, embedded.stderr
    assert b"asmopt-sandbox" not in out.read_bytes()
    assert not with_count.ok
    assert not include.ok
    for build in (embedded, with_count, include):
        assert "asmopt-sandbox" not in build.stderr + repr(build.diagnostics)
