"""Find and kill a process tree through /proc (Linux), without psutil.

Children that start sessions of their own (the toolchain and the sandbox do, so a timeout can
kill a whole group) leave the worker's process group, so killing the group is not enough: the
tree is found by parent pid. Every process found is stopped first, so none can fork a child
we would miss, and then killed.
"""

from __future__ import annotations

import contextlib
import os
import signal


def _parent_pids() -> dict[int, int]:
    """pid -> parent pid of every process we can see."""
    parents: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return parents
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        rest = stat[stat.rfind(b")") + 2 :].split()
        if len(rest) >= 2:
            parents[int(entry)] = int(rest[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Every living descendant of ``pid`` (children first, then theirs)."""
    children: dict[int, list[int]] = {}
    for child, parent in _parent_pids().items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    queue = [pid]
    while queue:
        current = queue.pop(0)
        for child in children.get(current, ()):
            if child not in found:
                found.append(child)
                queue.append(child)
    return found


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def kill_tree(pid: int, *, include_root: bool = True) -> list[int]:
    """SIGKILL ``pid`` (unless ``include_root`` is false) and all its descendants; returns
    the pids signalled. Stops the tree first, repeating until no new process appears."""
    stopped: list[int] = []
    if include_root:
        _signal(pid, signal.SIGSTOP)
    for _ in range(10):
        fresh = [p for p in descendants(pid) if p not in stopped]
        if not fresh:
            break
        for p in fresh:
            _signal(p, signal.SIGSTOP)
        stopped.extend(fresh)
    if include_root:
        _signal(pid, signal.SIGKILL)
    for p in stopped:
        _signal(p, signal.SIGKILL)
    return ([pid] if include_root else []) + stopped
