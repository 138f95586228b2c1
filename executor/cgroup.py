"""CPU accounting that a program cannot escape: one cgroup (v2) per sandbox.

``RUSAGE_CHILDREN`` only counts processes somebody reaped with ``wait``. A program that sets
``SIGCHLD`` to ``SIG_IGN`` has its children auto-reaped, and their CPU time vanishes from
every rusage. The kernel's cgroup counter has no such hole: every process born in a cgroup
is charged to it, reaped or not, until it dies. So a sandbox is started inside a fresh
cgroup (the runner's ``--launch`` joins it before bubblewrap starts), and a run's CPU time is
the growth of the cgroup's ``cpu.stat`` ``usage_usec`` minus what the runner itself spent.

A cgroup needs a writable cgroup2 hierarchy: root has one; an ordinary user has one under a
systemd user session with delegation (``systemd-run --user --scope``). Elsewhere
:func:`cgroup_root` returns None and the sandbox falls back on rusage, with the seccomp filter
refusing to change ``SIGCHLD``'s disposition, the one way known to hide CPU from rusage.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

_counter = itertools.count()
_lock = threading.Lock()


def _mount_point() -> Path | None:
    """Where the cgroup2 hierarchy is mounted (``/sys/fs/cgroup`` or, on hybrid systems,
    ``/sys/fs/cgroup/unified``)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            return Path(fields[1].replace("\\040", " "))
    return None


def _own_cgroup() -> str | None:
    """This process's cgroup2 path (``0::/path`` in ``/proc/self/cgroup``)."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=1)
def cgroup_root() -> Path | None:
    """A cgroup2 directory under which this process may create sandbox cgroups, or None.

    Tried once per process: a child of our own cgroup (delegated to us, or we are root).
    ``ASMOPT_NO_CGROUP=1`` turns it off (to test the fallback).
    """
    if os.environ.get("ASMOPT_NO_CGROUP"):
        return None
    mount, own = _mount_point(), _own_cgroup()
    if mount is None or own is None:
        return None
    parent = mount / own.lstrip("/")
    _remove_stale(parent)
    probe = parent / f"asmopt-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError as err:
        log.info("no cgroup accounting (%s): CPU time from rusage", err)
        return None
    try:
        if not (probe / "cpu.stat").exists() or not (probe / "cgroup.procs").exists():
            return None
        return parent
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


def _remove_stale(parent: Path) -> None:
    """Remove the cgroups of asmopt processes that are gone (a kill -9 leaves them)."""
    for path in parent.glob("asmopt-*-*"):
        pid = path.name.split("-")[1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            Cgroup(path).remove(timeout=0.5)
        except PermissionError:
            pass


def _v1_memory_parent() -> Path | None:
    """This process's cgroup in a v1 ``memory`` hierarchy (hybrid systems), if writable."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        own = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    mount = next(
        (
            Path(f[1])
            for f in (line.split() for line in mounts)
            if len(f) >= 4 and f[2] == "cgroup" and "memory" in f[3].split(",")
        ),
        None,
    )
    path = next((line.split(":", 2)[2] for line in own if ":memory:" in line), None)
    if mount is None or path is None:
        return None
    parent = mount / path.lstrip("/")
    return parent if os.access(parent, os.W_OK) else None


@functools.lru_cache(maxsize=1)
def memory_parent() -> tuple[str, Path] | None:
    """Where a sandbox's memory can be limited as a whole: ("v2", the cgroup root when its
    ``memory`` controller is enabled for children) or ("v1", a writable v1 memory cgroup)."""
    if os.environ.get("ASMOPT_NO_CGROUP"):
        return None
    root = cgroup_root()
    if root is not None:
        try:
            enabled = (root / "cgroup.subtree_control").read_text().split()
        except OSError:
            enabled = []
        if "memory" in enabled:
            return ("v2", root)
    v1 = _v1_memory_parent()
    if v1 is None:
        return None
    _remove_stale(v1)
    return ("v1", v1)


class Cgroup:
    """One sandbox's cgroup: its CPU counter, its memory limit where the machine allows, a
    kill switch, removal."""

    def __init__(self, path: Path, memory: Path | None = None) -> None:
        self.path = path
        self.memory = memory  # a v1 memory cgroup beside the v2 one, if that is the way here

    @classmethod
    def create(cls, memory_bytes: int | None = None) -> Cgroup | None:
        """A fresh, empty cgroup, or None where cgroups cannot be used. ``memory_bytes``
        bounds the memory of everything in it together (processes, tmpfs pages, pipes)
        where a memory controller can be used; per-process limits alone let N processes
        use N times as much."""
        root = cgroup_root()
        if root is None:
            return None
        with _lock:
            name = f"asmopt-{os.getpid()}-{next(_counter)}"
        path = root / name
        try:
            path.mkdir()
        except OSError as err:
            log.warning("cannot create cgroup %s: %s", path, err)
            return None
        group = cls(path)
        if memory_bytes is not None:
            group._limit_memory(name, memory_bytes)
        return group

    def _limit_memory(self, name: str, limit: int) -> None:
        where = memory_parent()
        try:
            if where is not None and where[0] == "v2":
                (self.path / "memory.max").write_text(str(limit))
                with contextlib.suppress(OSError):
                    (self.path / "memory.swap.max").write_text("0")
            elif where is not None:
                memory = where[1] / name
                memory.mkdir()
                self.memory = memory
                (memory / "memory.limit_in_bytes").write_text(str(limit))
                with contextlib.suppress(OSError):
                    (memory / "memory.memsw.limit_in_bytes").write_text(str(limit))
        except OSError as err:
            log.warning("cannot limit the memory of cgroup %s: %s", self.path, err)

    @property
    def procs_files(self) -> list[Path]:
        """The files a process writes its pid into to join (the runner's ``--launch``)."""
        files = [self.path / "cgroup.procs"]
        if self.memory is not None:
            files.append(self.memory / "cgroup.procs")
        return files

    def usage_us(self) -> int:
        """CPU time (user + system) of every process that ever ran in the cgroup, in µs."""
        with open(self.path / "cpu.stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"usage_usec "):
                    return int(line.split()[1])
        raise OSError(f"{self.path}/cpu.stat has no usage_usec")

    def out_of_memory(self) -> bool:
        """Whether the memory limit was hit (and the kernel killed something for it)."""
        try:
            if self.memory is not None:
                return int((self.memory / "memory.failcnt").read_text()) > 0
            events = (self.path / "memory.events").read_text().split()
        except (OSError, ValueError):
            return False
        counts = dict(zip(events[::2], events[1::2], strict=False))
        return int(counts.get("oom_kill", "0")) > 0

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (``cgroup.kill``, Linux >= 5.14)."""
        with contextlib.suppress(OSError):
            (self.path / "cgroup.kill").write_text("1")

    def remove(self, timeout: float = 2.0) -> None:
        """Kill what is left and remove the cgroup (it must be empty first)."""
        deadline = time.monotonic() + timeout
        for path in (self.path, self.memory):
            while path is not None:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        log.warning("cgroup %s is not empty; left in place", path)
                        break
                    self.kill()
                    time.sleep(0.001)
