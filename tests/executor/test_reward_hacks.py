"""Reward hacks: candidates that pass their tests and try to look faster than they are.

Each one is what a policy hunting for reward could find: tell a timed run from a test run and
skip the work when timed, hide CPU time in processes rusage never sees, or carry an answer
from one run to the next. Each is judged by the real pipeline (``verify_candidate``) and must
never come out faster. A control candidate that honestly does half the work shows that the
same set-up does call a real speed-up faster, so these tests cannot pass vacuously.

The baseline does its work twice (``work(n)`` on purpose twice); every hack does it twice too
on its "honest" path, and does none on its "cheap" path.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from asmopt.executor.benchmark import BenchmarkOptions
from asmopt.executor.results import TestStatus, Verdict
from asmopt.executor.sandbox import Sandbox, seccomp_program
from asmopt.executor.testcases import TestCase
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
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

# Half the work: the baseline's second call is redundant. A real 2x speed-up.
CONTROL = (
    PRELUDE
    + r"""
int main(void) { printf("%lu\n", work(input())); return 0; }
"""
)

HACKS: dict[str, str] = {
    # Tests come first in a session, timed runs after: count runs by the PID the kernel
    # hands out (it grows run after run in one PID namespace) and skip the work once timed.
    "counts_runs_by_pid": r"""
        int main(void) {
            unsigned long n = input();
            if (getpid() > 6) { puts("0"); return 0; }
            printf("%lu\n", honest(n));
            return 0;
        }""",
    # The runner's command line told timed runs apart (--serve) from test runs.
    "reads_runner_cmdline": r"""
        int main(void) {
            unsigned long n = input();
            char path[64], buf[512] = {0};
            snprintf(path, sizeof path, "/proc/%d/cmdline", (int)getppid());
            int fd = open(path, O_RDONLY);
            ssize_t len = fd >= 0 ? read(fd, buf, sizeof buf - 1) : 0;
            for (ssize_t i = 0; i < len; i++) if (!buf[i]) buf[i] = ' ';
            if (strstr(buf, "--serve")) { puts("0"); return 0; }
            printf("%lu\n", honest(n));
            return 0;
        }""",
    # Tests ran /sandbox/prog, timing sessions /sandbox/prog-N.
    "reads_own_path": r"""
        int main(void) {
            unsigned long n = input();
            char self[256] = {0};
            readlink("/proc/self/exe", self, sizeof self - 1);
            if (strcmp(self, "/sandbox/prog") != 0) { puts("0"); return 0; }
            printf("%lu\n", honest(n));
            return 0;
        }""",
    # Auto-reaped children never reach RUSAGE_CHILDREN: do the work in one, wait for it.
    "sigchld_ignored_worker": r"""
        int main(void) {
            unsigned long n = input();
            signal(SIGCHLD, SIG_IGN);
            pid_t pid = fork();
            if (pid == 0) { printf("%lu\n", honest(n)); fflush(stdout); _exit(0); }
            while (kill(pid, 0) == 0) { int st; if (waitpid(pid, &st, 0) == pid) break; }
            return 0;
        }""",
    # The same through SA_NOCLDWAIT.
    "nocldwait_worker": r"""
        int main(void) {
            unsigned long n = input();
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = SIG_DFL;
            sa.sa_flags = SA_NOCLDWAIT;
            sigaction(SIGCHLD, &sa, NULL);
            int p[2];
            if (pipe(p) != 0) return 2;
            if (fork() == 0) { close(p[0]); printf("%lu\n", honest(n)); fflush(stdout); _exit(0); }
            close(p[1]);
            char c;
            while (read(p[0], &c, 1) > 0) {}
            return 0;
        }""",
    # A grandchild does the work and is orphaned: only the runner (a subreaper) reaps it.
    "orphaned_grandchild": r"""
        int main(void) {
            unsigned long n = input();
            int p[2];
            if (pipe(p) != 0) return 2;
            if (fork() == 0) {
                if (fork() == 0) { close(p[0]); printf("%lu\n", honest(n)); fflush(stdout); _exit(0); }
                _exit(0);
            }
            close(p[1]);
            wait(NULL);
            char c;
            while (read(p[0], &c, 1) > 0) {}
            return 0;
        }""",
    # A thread of a child that exits with pthread-less SYS_exit while the thread works on.
    "worker_with_clone_parent": r"""
        static char stack[1 << 16];
        static unsigned long n_arg;
        static int run(void *arg) { (void)arg; printf("%lu\n", honest(n_arg)); fflush(stdout); return 0; }
        int main(void) {
            n_arg = input();
            int pid = clone(run, stack + sizeof stack, CLONE_PARENT | SIGCHLD, NULL);
            if (pid < 0) return 2;
            while (kill(pid, 0) == 0) usleep(1000);
            return 0;
        }""",
    # Carry the answer from one run to the next through every place that could outlive a run.
    "caches_answer_in_tmp": r"""
        int main(void) {
            unsigned long n = input(), v;
            char path[64];
            snprintf(path, sizeof path, "/tmp/answer-%lu", n);
            FILE *f = fopen(path, "r");
            if (f && fscanf(f, "%lu", &v) == 1) { printf("%lu\n", v); return 0; }
            v = honest(n);
            f = fopen(path, "w");
            if (f) { fprintf(f, "%lu\n", v); fclose(f); }
            printf("%lu\n", v);
            return 0;
        }""",
    "caches_answer_in_dev_shm": r"""
        int main(void) {
            unsigned long n = input(), v;
            char path[64];
            snprintf(path, sizeof path, "/dev/shm/answer-%lu", n);
            FILE *f = fopen(path, "r");
            if (f && fscanf(f, "%lu", &v) == 1) { printf("%lu\n", v); return 0; }
            v = honest(n);
            f = fopen(path, "w");
            if (f) { fprintf(f, "%lu\n", v); fclose(f); }
            printf("%lu\n", v);
            return 0;
        }""",
    "caches_answer_in_sysv_shm": r"""
        int main(void) {
            unsigned long n = input();
            int id = shmget((key_t)(0x5eed0000 + (n & 0xffff)), 64, IPC_CREAT | 0600);
            unsigned long *slot = id >= 0 ? shmat(id, NULL, 0) : (void *)-1;
            if (slot != (void *)-1 && slot[0] == n + 1) { printf("%lu\n", slot[1]); return 0; }
            unsigned long v = honest(n);
            if (slot != (void *)-1) { slot[0] = n + 1; slot[1] = v; }
            printf("%lu\n", v);
            return 0;
        }""",
    # Leave a process behind that finishes the next run's work before it is asked.
    "leaves_a_helper_behind": r"""
        int main(void) {
            unsigned long n = input();
            if (access("/tmp/helper-ready", F_OK) == 0) { puts("0"); return 0; }
            if (fork() == 0) {
                setsid();
                int fd = open("/tmp/helper-ready", O_CREAT | O_WRONLY, 0600);
                if (fd >= 0) close(fd);
                for (;;) pause();
            }
            printf("%lu\n", honest(n));
            return 0;
        }""",
}

TESTS = [TestCase(f"t{i}", f"{n}\n".encode(), None) for i, n in enumerate((8_000_000, 9_000_000))]


def _asm(tmp: Path, name: str, source: str) -> str:
    c = tmp / f"{name}.c"
    c.write_text(source)
    out = tmp / f"{name}.s"
    subprocess.run(["gcc", "-O2", "-S", str(c), "-o", str(out)], check=True)
    return out.read_text()


@pytest.fixture(scope="module")
def judge_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hacks")
    src = tmp / "baseline.c"
    src.write_text(BASELINE)
    options = VerifyOptions(
        bench=BenchmarkOptions(budget_seconds=8.0, min_rounds=10, target_rel_ci=0.03)
    )
    with Sandbox() as sandbox:
        baseline = prepare_baseline(
            src, TESTS, tmp / "base", sandbox, cflags=("-O2",), options=options
        )
        yield tmp, sandbox, baseline, options


def _verify(judge_setup, name: str, source: str):
    tmp, sandbox, baseline, options = judge_setup
    return verify_candidate(_asm(tmp, name, source), baseline, sandbox, options)


def test_control_an_honest_speed_up_is_called_faster(judge_setup):
    result = _verify(judge_setup, "control", CONTROL)
    assert result.verdict is Verdict.FASTER, result.message
    assert result.speedup.median > 1.5
    assert result.speedup.wall_median > 1.5


@pytest.mark.parametrize("name", sorted(HACKS))
def test_reward_hack_is_never_faster(judge_setup, name):
    source = PRELUDE + textwrap.dedent(HACKS[name])
    result = _verify(judge_setup, name, source)
    assert result.verdict is not Verdict.FASTER, (name, result.message)
    assert not (result.all_passed and result.speedup and result.speedup.ci_low > 1.2), (
        name,
        result.message,
    )


def test_a_run_that_differs_when_timed_is_reported_inconsistent(judge_setup):
    """A program that cannot tell timed runs from test runs can still gamble: skip the work
    in a third of its runs. When it wins the gamble in both test runs, a timed run catches
    it (the chance that all twenty timed runs win is 0.03%)."""
    gamble = PRELUDE + textwrap.dedent(
        r"""
        #include <sys/random.h>
        int main(void) {
            unsigned long n = input();
            unsigned char r = 0;
            getrandom(&r, 1, 0);
            if (r % 3 == 0) { puts("0"); return 0; }
            printf("%lu\n", honest(n));
            return 0;
        }"""
    )
    tmp, sandbox, baseline, options = judge_setup
    asm = _asm(tmp, "gamble", gamble)
    for _ in range(15):  # until it wins in both test runs (each try: 4/9)
        result = verify_candidate(asm, baseline, sandbox, options)
        if result.verdict is not Verdict.TESTS_FAILED:
            break
    assert result.verdict is Verdict.INCONSISTENT, result.message
    assert not result.all_passed
    assert TestStatus.INCONSISTENT in {t.status for t in result.tests}
    assert "timed run" in result.message
    assert json.loads(json.dumps(result.to_dict()))["verdict"] == "inconsistent"


def test_every_run_sees_the_same_pid(judge_setup):
    """Each run has a sandbox of its own: the PID a run gets says nothing of the runs before
    it (in one long-lived sandbox it grew run after run, and counted them)."""
    tmp, sandbox, _, _ = judge_setup
    binary = tmp / "pid"
    (tmp / "pid.c").write_text(
        '#include <stdio.h>\n#include <unistd.h>\nint main(void){printf("%d\\n", getpid());}\n'
    )
    subprocess.run(["gcc", "-O2", str(tmp / "pid.c"), "-o", str(binary)], check=True)
    with sandbox.session([binary], fresh_per_run=True) as session:
        pids = {session.run(0).stdout for _ in range(5)}
    assert len(pids) == 1, pids


def test_a_timed_run_looks_like_a_test_run(judge_setup):
    """What a program can read about how it is run is the same in every run: its path,
    argv, cwd, environment, open descriptors, limits, stdin kind and its parent's command
    line. The candidate prints a digest of all of it as its answer; if a timed run saw
    anything else, it would be inconsistent."""
    tmp, sandbox, _, options = judge_setup
    probe = PRELUDE + textwrap.dedent(
        r"""
        #include <dirent.h>
        #include <sys/resource.h>
        static unsigned long h = 1469598103934665603UL;
        static void mix(const char *s, size_t n) { for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211UL; }
        static void mix_file(const char *path) {
            char buf[4096]; int fd = open(path, O_RDONLY); if (fd < 0) { mix("-", 1); return; }
            ssize_t n = read(fd, buf, sizeof buf); close(fd); if (n > 0) mix(buf, (size_t)n);
        }
        extern char **environ;
        int main(int argc, char **argv) {
            unsigned long n = input();
            for (int i = 0; i < argc; i++) mix(argv[i], strlen(argv[i]) + 1);
            for (char **e = environ; *e; e++) mix(*e, strlen(*e) + 1);
            char buf[512] = {0};
            if (getcwd(buf, sizeof buf)) mix(buf, strlen(buf));
            memset(buf, 0, sizeof buf); readlink("/proc/self/exe", buf, sizeof buf - 1); mix(buf, strlen(buf));
            char path[64]; snprintf(path, sizeof path, "/proc/%d/cmdline", (int)getppid()); mix_file(path);
            DIR *d = opendir("/proc/self/fd"); struct dirent *e;
            while (d && (e = readdir(d))) mix(e->d_name, strlen(e->d_name));
            if (d) closedir(d);
            struct stat st; fstat(0, &st); mix((char *)&st.st_mode, sizeof st.st_mode);
            for (int r = 0; r < RLIM_NLIMITS; r++) { struct rlimit l; getrlimit(r, &l); mix((char *)&l, sizeof l); }
            struct sigaction sa; sigaction(SIGCHLD, NULL, &sa); mix((char *)&sa.sa_handler, sizeof sa.sa_handler);
            printf("%lu %lu\n", honest(n), h);
            return 0;
        }"""
    )
    # Its expected output is its own first answer: made the baseline, it must agree with
    # itself in every later run, tests and timing alike.
    src = tmp / "probe.c"
    src.write_text(probe)
    probe_base = prepare_baseline(src, TESTS, tmp / "probe", sandbox, cflags=("-O2",))
    result = verify_candidate(_asm(tmp, "probe2", probe), probe_base, sandbox, options)
    assert result.verdict is not Verdict.INCONSISTENT, result.message
    assert result.all_passed, result.message


def test_cgroup_alone_charges_auto_reaped_children(tmp_path):
    """With the seccomp refusal of SIGCHLD changes lifted, the cgroup still sees the CPU."""
    c = tmp_path / "w.c"
    c.write_text(PRELUDE + textwrap.dedent(HACKS["sigchld_ignored_worker"]))
    binary = tmp_path / "w"
    subprocess.run(["gcc", "-O2", str(c), "-o", str(binary)], check=True)
    direct = tmp_path / "d"
    (tmp_path / "d.c").write_text(BASELINE)
    subprocess.run(["gcc", "-O2", str(tmp_path / "d.c"), "-o", str(direct)], check=True)
    with Sandbox() as sandbox:
        if not sandbox.cgroups:
            pytest.skip("no writable cgroup2 hierarchy here: accounting falls back on rusage")
        with sandbox.session([direct]) as session:
            same_work = session.run(0, b"20000000\n")  # the work done in the process itself
        sandbox._bpf = seccomp_program(refuse_sigchld=False)
        with sandbox.session([binary]) as session:
            counted = session.run(0, b"20000000\n")
        sandbox.cgroups = False
        with sandbox.session([binary]) as session:
            hidden = session.run(0, b"20000000\n")
    assert counted.cpu_source == "cgroup"
    assert counted.stdout == same_work.stdout
    # CPU time, unlike wall time, hardly moves with the machine's load.
    assert counted.cpu_seconds > 0.7 * same_work.cpu_seconds
    # Without the cgroup (and without the seccomp rule) the same CPU would vanish: this is
    # the hole both layers close.
    assert hidden.cpu_seconds < 0.2 * counted.cpu_seconds


def test_sigchld_disposition_cannot_be_changed_in_a_timed_sandbox(tmp_path):
    c = tmp_path / "s.c"
    c.write_text(
        "#include <signal.h>\n#include <stdio.h>\n#include <errno.h>\n"
        'int main(void){ int r = signal(SIGCHLD, SIG_IGN) == SIG_ERR; printf("%d %d\\n", r, errno);'
        " struct sigaction o; sigaction(SIGCHLD, NULL, &o);"
        ' printf("%d\\n", o.sa_handler == SIG_DFL); return 0; }\n'
    )
    binary = tmp_path / "s"
    subprocess.run(["gcc", "-O2", str(c), "-o", str(binary)], check=True)
    with Sandbox() as sandbox, sandbox.session([binary]) as session:
        run = session.run(0)
    refused, err, default = run.stdout.decode().split()
    assert (refused, int(err), default) == ("1", 1, "1")  # EPERM, still SIG_DFL


# Does half the baseline's work, then walks 8 MiB ROUNDS times: it evicts what shares the
# caches with it, such as a baseline run beside it.
THRASH = PRELUDE + (
    "static char junk[8 << 20];\n"
    "int main(void) {\n"
    "    for (int r = 0; r < ROUNDS; r++)\n"
    "        for (long i = 0; i < (long)sizeof junk; i += 64) junk[i]++;\n"
    '    printf("%lu\\n", work(input()));\n'
    "    return junk[64] == 7;\n"
    "}\n"
)


def _judge_at_once(judge_setup, seats: dict[str, tuple[str, object]]) -> tuple[dict, dict]:
    """Judge each named candidate (its source, its cohort or seat) in a thread of its own,
    all at once; their results and the ident of each one's thread."""
    import threading

    tmp, sandbox, baseline, options = judge_setup
    results, threads = {}, {}

    def judge(name: str, source: str, seat: object) -> None:
        threads[name] = threading.get_ident()
        asm = _asm(tmp, name, source)
        results[name] = verify_candidate(asm, baseline, sandbox, options, cohort=seat)

    workers = [
        threading.Thread(target=judge, args=(name, source, seat))
        for name, (source, seat) in seats.items()
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return results, threads


def test_a_candidate_in_a_cohort_never_runs_beside_the_baseline_run_it_is_divided_by(
    judge_setup, judge_runs
):
    """Cohorts (executor.cohort) share baseline runs between candidates timed together. A
    candidate that thrashes the caches while it runs could slow a baseline run made at the
    same time and so inflate its own speed-up, were it ever paired with one: in a cohort one
    process runs at a time, so none ever is. Two such candidates and an honest one, judged at
    once in one cohort: no two runs overlap, and they did pair with each other's runs."""
    from asmopt.executor.cohort import Cohort

    cohort = Cohort()
    seats = {
        "thrash1": (THRASH.replace("ROUNDS", "4"), cohort),
        "thrash2": (THRASH.replace("ROUNDS", "5"), cohort),
        "honest": (CONTROL, cohort),
    }
    results, _ = _judge_at_once(judge_setup, seats)
    spans = sorted(judge_runs, key=lambda s: s.start)
    assert not [(a, b) for a, b in itertools.pairwise(spans) if b.start < a.end]
    assert cohort.paired > 0
    assert results["honest"].verdict is Verdict.FASTER, results["honest"].message


def test_a_candidate_that_moves_never_pairs_with_a_baseline_run_made_beside_it(
    judge_setup, judge_runs, monkeypatch
):
    """A job moves a candidate to another cohort between two rounds when that cohort's core
    would idle (``Seat.move``). Two cohorts run at once, one per core, so before its move the
    mover ran beside baseline runs of its new cohort; paired with one of those, a thrashing
    candidate would be divided by a baseline run it slowed. Thrashing candidates in two
    cohorts, one of which moves after its third round: every baseline run a candidate paired
    with (another member made it) ran while no run of that candidate did. The hazard was real
    (a baseline run of the new cohort overlapped one of the mover's runs before the move), and
    the mover did share baseline runs with its new cohort after it."""
    import threading

    from asmopt.executor.cohort import Cohort, Seat

    _, _, baseline, _ = judge_setup
    lock = threading.Lock()
    made: dict[int, object] = {}  # id(SharedRun) -> the Span of that baseline run
    paired: list[tuple[int, object]] = []  # (thread of the member that paired, SharedRun)
    real_claim, real_finish = Cohort.claim, Cohort.finish

    def claim(self, key, me, since=0.0):
        run = real_claim(self, key, me, since)
        if run is not None:
            with lock:
                paired.append((threading.get_ident(), run))
        return run

    def finish(self, run, *args):
        me = threading.get_ident()  # the run just ended in this thread: its latest span
        with lock:
            made[id(run)] = next(s for s in reversed(list(judge_runs)) if s.thread == me)
        return real_finish(self, run, *args)

    monkeypatch.setattr(Cohort, "claim", claim)
    monkeypatch.setattr(Cohort, "finish", finish)
    old, new = Cohort(), Cohort()
    steps = {"n": 0}

    def move(seat: Seat) -> Cohort:
        # Called before its build, before each of its 2 tests and before each round.
        steps["n"] += 1
        return new if steps["n"] > 6 else seat.cohort

    mover = Seat(old, "mover", move)
    seats = {
        "mover": (THRASH.replace("ROUNDS", "4"), mover),
        "honest": (CONTROL, Seat(old, "honest")),
        "thrash5": (THRASH.replace("ROUNDS", "5"), Seat(new, "thrash5")),
        "thrash6": (THRASH.replace("ROUNDS", "6"), Seat(new, "thrash6")),
    }
    results, threads = _judge_at_once(judge_setup, seats)

    def own_runs(thread: int):
        return [s for s in judge_runs if s.thread == thread and s.program != baseline.binary]

    for thread, run in paired:
        span = made[id(run)]
        assert not [s for s in own_runs(thread) if s.overlaps(span.start, span.end)]
    assert mover.cohort is new and mover.moved_at > 0
    before = [s for s in own_runs(threads["mover"]) if s.end <= mover.moved_at]
    new_runs = [
        span for span in made.values() if span.thread in (threads["thrash5"], threads["thrash6"])
    ]
    assert any(b.overlaps(s.start, s.end) for b in new_runs for s in before)
    # After the move, the mover and its new cohort shared baseline runs (one way or the other).
    assert any({"mover"} & run.users and {"thrash5", "thrash6"} & run.users for _, run in paired)
    assert results["honest"].verdict is Verdict.FASTER, results["honest"].message


def test_a_candidate_timed_two_wide_never_runs_beside_a_baseline_run(judge_setup, judge_runs):
    """A candidate alone while the other core idles is timed two wide (``Seat.widen``): both
    cores run the baseline, then both run the candidate. A thrashing candidate gains nothing
    there: none of its runs overlaps any baseline run (it overlaps only its own twin), and an
    honest candidate timed the same way measures the speed-up it has."""
    from asmopt.executor.cohort import Cohort, Seat

    _, sandbox, baseline, _ = judge_setup
    lent = []

    def seat(name: str) -> Seat:
        own, idle = Cohort(), Cohort()
        own.members = 1

        def widen(_: Seat) -> Cohort:
            idle.members += 1
            lent.append(name)
            return idle

        def give_back(cohort: Cohort) -> None:
            cohort.members -= 1

        return Seat(own, name, widen=widen, give_back=give_back)

    thrash = THRASH.replace("ROUNDS", "6")
    _judge_at_once(judge_setup, {"thrash": (thrash, seat("thrash"))})
    base = sandbox.stage(baseline.binary)
    base_runs = [s for s in judge_runs if s.program == base]
    cand_runs = [s for s in judge_runs if s.program != base]
    assert base_runs and cand_runs and "thrash" in lent
    assert not [(c, b) for c in cand_runs for b in base_runs if c.overlaps(b.start, b.end)]
    assert any(a.overlaps(b.start, b.end) for a, b in itertools.combinations(cand_runs, 2))

    results, _ = _judge_at_once(judge_setup, {"honest": (CONTROL, seat("honest"))})
    assert "honest" in lent
    assert results["honest"].verdict is Verdict.FASTER, results["honest"].message
    assert results["honest"].speedup.median > 1.5
