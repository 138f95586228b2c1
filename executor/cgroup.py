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


class Cgroup:
    """One sandbox's cgroup: its CPU counter, a kill switch, removal."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls) -> Cgroup | None:
        """A fresh, empty cgroup, or None where cgroups cannot be used."""
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
        return cls(path)

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def usage_us(self) -> int:
        """CPU time (user + system) of every process that ever ran in the cgroup, in µs."""
        with open(self.path / "cpu.stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"usage_usec "):
                    return int(line.split()[1])
        raise OSError(f"{self.path}/cpu.stat has no usage_usec")

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (``cgroup.kill``, Linux >= 5.14)."""
        with contextlib.suppress(OSError):
            (self.path / "cgroup.kill").write_text("1")

    def remove(self, timeout: float = 2.0) -> None:
        """Kill what is left and remove the cgroup (it must be empty first)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    log.warning("cgroup %s is not empty; left in place", self.path)
                    return
                self.kill()
                time.sleep(0.001)
