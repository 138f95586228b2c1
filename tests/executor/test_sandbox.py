"""The sandbox's own promises: isolation, limits, timing, cancellation, clear errors."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from asmopt.executor import sandbox as sandbox_mod
from asmopt.executor.sandbox import Cancelled, Sandbox, SandboxLimits, SandboxUnavailable

PROBE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/resource.h>
extern char **environ;
int main(int argc, char **argv) {
    int envs = 0; for (char **e = environ; *e; e++) envs++;
    printf("uid=%d gid=%d pid=%d envs=%d argc=%d\n", getuid(), getgid(), getpid(), envs, argc);
    for (int i = 1; i < argc; i++) printf("arg=%s\n", argv[i]);
    DIR *d = opendir("/"); struct dirent *e;
    while (d && (e = readdir(d))) if (e->d_name[0] != '.') printf("root:%s\n", e->d_name);
    struct rlimit r; getrlimit(RLIMIT_CORE, &r); printf("core=%ld\n", (long)r.rlim_cur);
    char buf[64]; size_t n = fread(buf, 1, sizeof buf - 1, stdin); buf[n] = 0;
    printf("stdin=%s\n", buf);
    return 0;
}
"""

SPIN = r"""
int main(void) {
    volatile unsigned long s = 0;
    for (unsigned long i = 0; i < 200000000UL; i++) s += i;
    return 0;
}
"""


def _build(tmp: Path, name: str, code: str) -> Path:
    src = tmp / f"{name}.c"
    src.write_text(code)
    out = tmp / name
    subprocess.run(["gcc", "-O1", str(src), "-o", str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def sb():
    with Sandbox(SandboxLimits(wall_seconds=10)) as box:
        yield box


def test_program_sees_a_minimal_world(sb: Sandbox, tmp_path: Path) -> None:
    probe = _build(tmp_path, "probe", PROBE)
    run = sb.run(probe, b"hello", ["a b", "--x"])
    text = run.stdout.decode()
    assert run.exit_code == 0, run
    assert "uid=65534 gid=65534" in text  # nobody
    assert "pid=2 " in text or "pid=3 " in text  # its own PID namespace
    assert "argc=3" in text and "arg=a b" in text and "arg=--x" in text
    assert "stdin=hello" in text
    assert "core=0" in text
    roots = {line.split(":", 1)[1] for line in text.splitlines() if line.startswith("root:")}
    assert not roots & {"root", "home", "work", "var"}
    assert {"usr", "tmp", "proc", "dev"} <= roots
    envs = int(text.split("envs=")[1].split()[0])
    assert envs <= 2  # PATH and PWD only: no HOME, USER, ...


def test_cpu_time_is_the_programs_not_the_sandboxes(sb: Sandbox, tmp_path: Path) -> None:
    trivial = _build(tmp_path, "trivial", "int main(void){return 0;}")
    spin = _build(tmp_path, "spin", SPIN)
    small = min(sb.run(trivial).cpu_seconds for _ in range(5))
    assert small < 0.005  # bubblewrap's own set-up costs more than this
    long = sb.run(spin)
    assert long.cpu_seconds > 20 * small
    assert long.cpu_seconds <= long.wall_seconds + 0.05


def test_cancel_kills_the_run_within_a_second(sb: Sandbox, tmp_path: Path) -> None:
    forever = _build(tmp_path, "forever", "int main(void){for(;;);}")
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        sb.run(forever, cancel=cancel)
    assert time.monotonic() - started < 1.5


def test_kill_all_stops_concurrent_runs(tmp_path: Path) -> None:
    forever = _build(tmp_path, "forever2", "int main(void){for(;;);}")
    box = Sandbox(SandboxLimits(wall_seconds=30, cpu_seconds=30))
    results: list[object] = []

    def go() -> None:
        results.append(box.run(forever))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    started = time.monotonic()
    box.close()
    for t in threads:
        t.join(5)
    assert time.monotonic() - started < 2
    assert len(results) == 2
    assert all(r.signal is not None for r in results)  # type: ignore[attr-defined]


def test_missing_bubblewrap_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = sandbox_mod.shutil.which
    monkeypatch.setattr(
        sandbox_mod.shutil, "which", lambda name: None if name == "bwrap" else real_which(name)
    )
    with pytest.raises(SandboxUnavailable, match=r"apt-get install bubblewrap.*--no-sandbox"):
        Sandbox()


def test_unsandboxed_runs_warn_every_time(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    trivial = _build(tmp_path, "hello", '#include <stdio.h>\nint main(void){puts("hi");}')
    for _ in range(2):
        with Sandbox(enabled=False) as box:
            run = box.run(trivial)
            assert run.stdout == b"hi\n" and run.sandboxed is False
    assert capsys.readouterr().err.count("WITHOUT a sandbox") == 2


def _host_uids_of(marker: str) -> set[int]:
    uids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if marker.encode() not in cmdline or b"python" in cmdline:
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        uids.add(int(status.split("Uid:")[1].split()[0]))
    return uids


def test_every_sandbox_process_is_unprivileged_on_the_host(sb: Sandbox, tmp_path: Path):
    """Root or not, bubblewrap and the program run as an ordinary user on the host (user
    namespaces): uid 65534 inside never means root outside."""
    sleeper = _build(tmp_path, "sleeper", "#include <unistd.h>\nint main(void){sleep(1);}")
    marker = f"marker-{os.getpid()}-{time.monotonic_ns()}"
    seen: set[int] = set()

    def watch() -> None:
        deadline = time.monotonic() + 0.9
        while time.monotonic() < deadline:
            seen.update(_host_uids_of(marker))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    sb.run(sleeper, b"", [marker])
    watcher.join()
    assert seen, "no sandbox process was found"
    assert 0 not in seen
    if os.geteuid() != 0:
        assert seen == {os.geteuid()}


# -- the runner charges and ends everything a program starts ---------------------------------

# The parent hands the work to a child and exits without reaping it: at once (the child is
# still computing), or once the child has printed (it is a zombie nobody waited for). Either
# way the child's CPU must be charged to the run, or the run must fail; nothing may outlive it.
FORK_AND_LEAVE = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static double cpu(void) {
    struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
int main(int argc, char **argv) {
    int wait_for_child = argc > 1 && strcmp(argv[1], "wait") == 0;
    int fds[2]; pipe(fds);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        volatile unsigned long s = 0;
        while (cpu() < 0.3) for (int i = 0; i < 100000; i++) s += i;
        printf("done %lu\n", s & 1); fflush(stdout);
        _exit(0);  /* closes fds[1]: the parent's read returns */
    }
    close(fds[1]);
    if (wait_for_child) { char c; read(fds[0], &c, 1); }
    return 0;  /* never waits for the child */
}
"""


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and b"python" not in cmdline:
            found.append(int(pid))
    return found


def _gone(marker: str, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while _processes_with(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("mode", ["sandboxed", "no-sandbox", "session"])
def test_work_handed_to_a_child_is_charged_in_full(mode: str, tmp_path: Path) -> None:
    prog = _build(tmp_path, "fork_and_leave", FORK_AND_LEAVE)
    enabled = mode != "no-sandbox"
    with Sandbox(SandboxLimits(wall_seconds=10), enabled=enabled) as box:
        session = box.session([prog]) if mode == "session" else None
        for how in ("at-once", "wait"):
            marker = f"marker-{os.getpid()}-{time.monotonic_ns()}"
            if session is not None:
                run = session.run(0, b"", [how, marker])
            else:
                run = box.run(prog, b"", [how, marker])
            # Nothing of the run is left, not even before the session ends.
            assert not _processes_with(marker), (mode, how)
            printed = b"done" in run.stdout
            assert not printed or run.cpu_seconds >= 0.25, (mode, how, run)
            if how == "wait":
                # The child finished: its output counts, and so does its CPU.
                assert printed and run.exit_code == 0, (mode, how, run)
        if session is not None:
            session.close()


# -- sessions -------------------------------------------------------------------------------

HOSTILE = {
    "loop": "int main(void){for(;;);}",
    "flood": '#include <stdio.h>\nint main(void){for(;;) fputs("flood flood flood\\n", stdout);}',
    "fork_bomb": "#include <unistd.h>\nint main(void){for(;;) fork();}",
    "socket": "#include <sys/socket.h>\nint main(void){socket(AF_INET, SOCK_STREAM, 0); return 0;}",
    "segfault": "int main(void){*(volatile int *)16 = 1; return 0;}",
    "exit3": '#include <stdio.h>\nint main(void){puts("x"); return 3;}',
    "daemon": r"""
        #include <stdio.h>
        #include <unistd.h>
        int main(int argc, char **argv) {
            if (fork() == 0) { setsid(); if (fork() == 0) {
                char *args[] = {"/bin/sleep", "30", argv[1], 0};
                execv("/bin/sleep", args); for (;;) pause(); } _exit(0); }
            puts("42"); return 0;
        }""",
}


def _verdict_fields(run) -> tuple:
    # Past the output cap the one-shot host closes the pipes before it kills (SIGPIPE or
    # SIGKILL, whichever lands first); judge() ranks the truncation above the signal.
    return (
        run.exit_code,
        None if run.output_truncated else run.signal,
        run.timed_out,
        run.output_truncated,
        run.out_of_memory,
        run.sandbox_violation,
        run.sandboxed,
    )


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("session-hostile")
    return {name: _build(tmp, name, code) for name, code in HOSTILE.items()}


def test_session_runs_give_what_one_shot_runs_give(hostile: dict[str, Path]) -> None:
    limits = SandboxLimits(wall_seconds=1.0, cpu_seconds=5, output_bytes=1 << 20)
    names = list(hostile)
    marker = f"marker-{os.getpid()}-{time.monotonic_ns()}"
    with Sandbox(limits) as box, box.session([hostile[n] for n in names]) as session:
        for i, name in enumerate(names):
            one_shot = box.run(hostile[name], b"", [marker])
            served = session.run(i, b"", [marker])
            assert _verdict_fields(served) == _verdict_fields(one_shot), name
            if name in ("exit3", "daemon"):
                assert served.stdout == one_shot.stdout, name
            # Whatever the program started is gone when run() returns.
            assert not _processes_with(marker), name
        assert session.starts == 1  # none of these can break the session


def test_kill_everything_restarts_the_session(tmp_path: Path) -> None:
    killer = _build(
        tmp_path,
        "killer",
        '#include <signal.h>\n#include <stdio.h>\nint main(void){kill(-1, SIGKILL); puts("x");}',
    )
    trivial = _build(tmp_path, "ok", '#include <stdio.h>\nint main(void){puts("ok");}')
    with Sandbox() as box, box.session([killer, trivial]) as session:
        assert session.run(1).stdout == b"ok\n"
        one_shot = box.run(killer)
        served = session.run(0)
        assert _verdict_fields(served) == _verdict_fields(one_shot)
        assert served.signal == 9 and served.exit_code is None
        assert served.lost  # the sandbox died before answering (the program's doing here)
        assert session.run(1).stdout == b"ok\n"  # transparently restarted
        assert session.starts == 2


MEMO = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>
static void mark(const char *path) { int fd = open(path, O_WRONLY | O_CREAT, 0600);
    if (fd >= 0) { write(fd, "42", 2); close(fd); } }
int main(void) {
    const char *files[] = {"/tmp/memo", "/tmp/d/e/memo", "/dev/memo", "/dev/shm/memo",
                           "/memo", "/sandbox/memo", 0};
    for (int i = 0; files[i]; i++) if (access(files[i], F_OK) == 0) printf("found %s\n", files[i]);
    int id = shmget(0x4242, 4096, 0600);
    if (id >= 0) printf("found shm\n");
    mqd_t q = mq_open("/memo", O_RDONLY);
    if (q != (mqd_t)-1) printf("found mq\n");
    mkdir("/tmp/d", 0700); mkdir("/tmp/d/e", 0700);
    for (int i = 0; files[i]; i++) mark(files[i]);
    chmod("/tmp/d/e", 0); chmod("/tmp/d", 0500); chmod("/tmp", 0500);
    shmget(0x4242, 4096, IPC_CREAT | 0600);
    mq_open("/memo", O_CREAT | O_RDWR, 0600, 0);
    puts("end");
    return 0;
}
"""


def test_nothing_survives_from_one_session_run_to_the_next(tmp_path: Path) -> None:
    """A candidate must not memoise across runs: files, directories it locked, /dev, shared
    memory and message queues are all gone by the next run."""
    src = tmp_path / "memo.c"
    src.write_text(MEMO)
    memo = tmp_path / "memo"
    subprocess.run(["gcc", "-O1", str(src), "-o", str(memo), "-lrt"], check=True)
    with Sandbox() as box, box.session([memo]) as session:
        for _ in range(3):
            run = session.run(0)
            assert run.exit_code == 0, run
            assert run.stdout == b"end\n", run.stdout
        assert session.starts == 1


FORGE = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    char path[64]; int opened = 0;
    snprintf(path, sizeof path, "/proc/%d/fd", getppid());
    DIR *d = opendir(path); struct dirent *e;
    while (d && (e = readdir(d))) {
        char fd_path[300]; snprintf(fd_path, sizeof fd_path, "%s/%s", path, e->d_name);
        int fd = open(fd_path, O_WRONLY);
        if (fd >= 0) { opened++; dprintf(fd, "exited 0 1 0 0\n"); close(fd); }
    }
    snprintf(path, sizeof path, "/proc/%d/mem", getppid());
    if (open(path, O_RDWR) >= 0) opened++;
    printf("opened %d\n", opened);
    return 0;
}
"""


def test_program_cannot_reach_the_runners_pipes(sb: Sandbox, tmp_path: Path) -> None:
    """Same uid as the runner, but the runner is not dumpable: no forged status or response."""
    forge = _build(tmp_path, "forge", FORGE)
    assert sb.run(forge).stdout == b"opened 0\n"
    with sb.session([forge]) as session:
        run = session.run(0)
        assert run.stdout == b"opened 0\n" and run.exit_code == 0


def test_session_passes_big_input_and_output_and_reports_per_run_rss(tmp_path: Path) -> None:
    cat = _build(
        tmp_path,
        "cat",
        "#include <stdio.h>\nint main(void){char b[65536]; size_t n;"
        "while ((n = fread(b, 1, sizeof b, stdin))) fwrite(b, 1, n, stdout); return 0;}",
    )
    hog = _build(
        tmp_path,
        "hog",
        "#include <stdlib.h>\n#include <string.h>\n"
        "int main(void){char *p = malloc(200 << 20); memset(p, 1, 200 << 20);"
        "return p[rand() % (200 << 20)] - 1;}",
    )
    data = os.urandom(3 << 20)
    with Sandbox(SandboxLimits(output_bytes=8 << 20)) as box, box.session([cat, hog]) as session:
        run = session.run(0, data)
        assert run.exit_code == 0 and run.stdout == data and not run.output_truncated
        big = session.run(1)
        assert big.exit_code == 0 and big.max_rss_kib > 150_000
        small = session.run(0, b"x")
        assert small.stdout == b"x" and small.max_rss_kib < 50_000  # this run's, not the max
        assert box.run(cat, data).stdout == data


def test_session_cancel_and_kill_all_stop_it_within_a_second(tmp_path: Path) -> None:
    forever = _build(tmp_path, "forever3", "int main(void){for(;;);}")
    trivial = _build(tmp_path, "trivial3", "int main(void){return 0;}")
    box = Sandbox(SandboxLimits(wall_seconds=30, cpu_seconds=30))
    session = box.session([forever, trivial])
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        session.run(0, cancel=cancel)
    assert time.monotonic() - started < 1.3
    assert session.run(1).exit_code == 0  # a fresh sandbox after the cancellation

    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(session.run(0)))
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    box.kill_all()
    thread.join(5)
    assert time.monotonic() - started < 1.0
    assert results and results[0].signal is not None  # type: ignore[attr-defined]
    assert session.run(1).exit_code == 0
    box.kill_all()  # while no run is going: the next run simply gets a new sandbox
    time.sleep(0.2)
    assert session.run(1).exit_code == 0

    thread = threading.Thread(target=lambda: results.append(session.run(0)))
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    box.close()
    thread.join(5)
    assert time.monotonic() - started < 1.0
    assert len(results) == 2
    with pytest.raises(sandbox_mod.SandboxError, match="closed"):
        session.run(1)


def test_a_run_whose_sandbox_cannot_start_once_cancelled_is_cancelled(tmp_path: Path) -> None:
    """A job that stops sets its cancel event and kills every sandbox it has (``kill_all``),
    those still starting too: a run that then finds no sandbox is cancelled, not an error
    (found when Ctrl-C in `asmopt optimize` hit a session starting a bubblewrap)."""
    trivial = _build(tmp_path, "trivial4", "int main(void){return 0;}")
    box = Sandbox()
    session = box.session([trivial], fresh_per_run=True)
    assert session.run(0).exit_code == 0
    box.close()  # as kill_all, and for good: no sandbox can start any more
    cancel = threading.Event()
    with pytest.raises(sandbox_mod.SandboxError):
        session.run(0, cancel=cancel)
    cancel.set()
    with pytest.raises(Cancelled):
        session.run(0, cancel=cancel)


def test_a_spare_sandbox_whose_thread_ended_is_never_used(
    sb: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh-per-run session starts the next runs' bubblewraps in the thread of its last
    run, and bubblewrap dies with that thread (``--die-with-parent``). Once the thread has
    ended, those spares are dead or about to be: the kernel's signal can come just after one
    was seen ready, killing the next run under it (a wide round that ran each lane in a
    thread of its own saw "crashed: killed by SIGKILL" on 1 align job in 6). Such a spare
    is never taken: the next run starts another, and passes."""
    from asmopt.executor import session as session_mod

    trivial = _build(tmp_path, "trivial5", "int main(void){return 0;}")
    readied: list[threading.Thread | None] = []
    real_ready = session_mod.RunSession._ready

    def ready(self, slot):
        readied.append(slot.starter)
        return real_ready(self, slot)

    with sb.session([trivial], fresh_per_run=True) as session:
        worker = threading.Thread(target=lambda: session.run(0))
        worker.start()
        worker.join()
        assert session._spares and all(s.starter is worker for s in session._spares)
        monkeypatch.setattr(session_mod.RunSession, "_ready", ready)
        starts = session.starts
        for _ in range(3):
            assert session.run(0).exit_code == 0
    assert readied and set(readied) == {threading.current_thread()}  # never the dead spares
    assert session.starts > starts


def test_session_overhead_is_a_fraction_of_a_sandbox_start(sb: Sandbox, tmp_path: Path) -> None:
    """Not a timing assertion: a session run must cost well under a fresh sandbox's start."""
    trivial = _build(tmp_path, "trivial4", "int main(void){return 0;}")
    one_shot, served = [], []
    with sb.session([trivial]) as session:
        session.run(0)
        for _ in range(15):
            t0 = time.perf_counter()
            sb.run(trivial)
            one_shot.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            session.run(0)
            served.append(time.perf_counter() - t0)
    one_shot.sort()
    served.sort()
    assert served[7] < 0.5 * one_shot[7], (served[7], one_shot[7])


def test_a_session_the_program_broke_starts_afresh(tmp_path: Path) -> None:
    """A device link removed (refused: /dev is read-only) or the runner stopped: that run
    gets the verdict a one-shot run gets, and the next run a fresh sandbox."""
    unlink = _build(
        tmp_path,
        "unlink",
        "#include <stdio.h>\n#include <unistd.h>\n"
        'int main(void){printf("%d\\n", access("/dev/stdin", F_OK)); unlink("/dev/stdin");}',
    )
    stopper = _build(
        tmp_path,
        "stopper",
        "#include <signal.h>\n#include <unistd.h>\nint main(void){kill(getppid(), SIGSTOP);}",
    )
    limits = SandboxLimits(wall_seconds=0.5)
    with Sandbox(limits) as box, box.session([unlink, stopper]) as session:
        assert session.run(0).stdout == b"0\n"
        assert session.run(0).stdout == b"0\n"  # /dev is read-only: the link stays
        assert session.starts == 1
        stopped = session.run(1)
        assert _verdict_fields(stopped) == _verdict_fields(box.run(stopper))
        assert stopped.timed_out
        assert session.run(0).stdout == b"0\n"
