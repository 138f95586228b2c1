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
