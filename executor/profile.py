"""Where a program's work goes: instructions per function, from valgrind on its tests.

:func:`profile_binary` runs the program under valgrind's cachegrind with its cache and
branch simulation off (inside the sandbox, as every run of a program is) on some of its tests
and adds up, per function, the instructions executed in that function's own code: the same
counts as callgrind's self cost, about three times sooner, since no call graph is kept. The
figures are instructions, never time: they say which functions do the work, not how long it
takes (see ``callgrind.py``). valgrind still runs code 10-15 times slower than the CPU, so
the tests profiled are the quickest ones that fit a time budget, and the profile says which.

A program whose own functions execute only a small share of its instructions spends its run
in process start-up, the dynamic loader and libc (``Profile.own_share``): making its code
faster cannot make it much faster (at most ``1 / (1 - own_share)`` by instruction count).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asmopt.executor.callgrind import count_instructions_sandboxed
from asmopt.executor.elf import ElfInspectionError, functions
from asmopt.executor.results import InstructionCount
from asmopt.executor.sandbox import Sandbox
from asmopt.executor.testcases import TestCase

__all__ = ["FunctionShare", "Profile", "profile_binary", "select_tests"]

# Functions the C runtime links into every program: start-up, not the user's code.
_CRT = frozenset(
    {
        "_start",
        "_init",
        "_fini",
        "deregister_tm_clones",
        "register_tm_clones",
        "__do_global_dtors_aux",
        "frame_dummy",
        "__libc_csu_init",
        "__libc_csu_fini",
        "_dl_relocate_static_pie",
    }
)
# valgrind is about this many times slower than the program alone (cachegrind counting
# instructions only: 12x on examples/align, 15x on examples/dispatch; callgrind took 32x and
# 50x), plus its own start of about a second; used to choose how many tests fit the budget.
SLOWDOWN = 15.0
VALGRIND_START = 1.0
# Below this share of instructions in its own functions, a program's run is start-up and
# libc: the job says so instead of optimizing (unless asked to go on).
OWN_SHARE_FLOOR = 0.2


@dataclass(frozen=True)
class FunctionShare:
    """A function's own instructions (self cost, not its callees') over the profiled tests."""

    name: str
    instructions: int
    share: float  # of every instruction the process executed, start-up and libc included

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "instructions": self.instructions, "share": self.share}


@dataclass(frozen=True)
class Profile:
    """Instructions per function of one program, summed over the tests profiled."""

    total: int  # every instruction of the processes: loader, libc, start-up, the program
    own: int  # in the program's own functions
    functions: tuple[FunctionShare, ...]  # the program's own functions, most first
    elsewhere: tuple[FunctionShare, ...] = ()  # libc, loader and C runtime, most first
    tests: tuple[str, ...] = ()  # the tests profiled
    skipped: tuple[str, ...] = ()  # tests left out to keep within the time budget
    seconds: float = 0.0
    metric: str = field(default="instructions (valgrind Ir); not time", repr=False)

    @property
    def own_share(self) -> float:
        """The share of all instructions executed in the program's own functions."""
        return self.own / self.total if self.total else 0.0

    def share(self, function: str) -> float | None:
        """``function``'s share of all instructions, or None when it never ran."""
        for f in self.functions:
            if f.name == function:
                return f.share
        return None

    def startup_bound(self, floor: float = OWN_SHARE_FLOOR) -> str:
        """One line saying the run is start-up and libc when the program's own functions
        execute less than ``floor`` of its instructions, else ""."""
        if self.total == 0 or self.own_share >= floor:
            return ""
        limit = 1.0 / max(1e-9, 1.0 - self.own_share)
        return (
            f"only {self.own_share:.0%} of the instructions it executes are its own code (the "
            f"rest is process start-up, the loader and libc): even infinitely fast code would "
            f"make it at most {limit:.2f}x faster by instruction count"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "total": self.total,
            "own": self.own,
            "own_share": self.own_share,
            "functions": [f.to_dict() for f in self.functions],
            "elsewhere": [f.to_dict() for f in self.elsewhere],
            "tests": list(self.tests),
            "skipped_tests": list(self.skipped),
            "seconds": self.seconds,
        }


def select_tests(
    tests: Sequence[TestCase], wall_seconds: Mapping[str, float], budget: float, workers: int
) -> tuple[list[TestCase], list[TestCase]]:
    """The quickest tests whose estimated valgrind time fits ``budget`` seconds on
    ``workers`` cores (always at least one), and the others."""
    order = sorted(tests, key=lambda t: wall_seconds.get(t.name, 0.0))
    chosen: list[TestCase] = []
    cost = 0.0
    for test in order:
        estimate = VALGRIND_START + SLOWDOWN * wall_seconds.get(test.name, 0.0)
        if chosen and (cost + estimate) / max(1, workers) > budget:
            break
        chosen.append(test)
        cost += estimate
    return chosen, [t for t in tests if t not in chosen]


def profile_binary(
    sandbox: Sandbox,
    binary: Path,
    tests: Sequence[TestCase],
    *,
    wall_seconds: Mapping[str, float] | None = None,
    budget: float = 8.0,
    workers: int = 2,
    timeout: float = 120.0,
) -> Profile:
    """Profile ``binary`` on the quickest of ``tests`` that fit ``budget`` seconds (by the
    tests' ``wall_seconds`` at full speed; every test when they are unknown), ``workers``
    valgrinds at once. Raises ``CallgrindError`` when valgrind cannot count (AVX-512 code,
    a timeout)."""
    started = time.monotonic()
    if wall_seconds is None:
        chosen, skipped = list(tests), list[TestCase]()
    else:
        chosen, skipped = select_tests(tests, wall_seconds, budget, workers)
    try:
        own_names = {f.name for f in functions(binary)} - _CRT
    except ElfInspectionError:
        own_names = set()

    def count(test: TestCase) -> InstructionCount:
        return count_instructions_sandboxed(
            sandbox, binary, test.stdin, test.args, timeout, tool="cachegrind"
        )

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        counts = list(pool.map(count, chosen))
    total = sum(c.total for c in counts)
    per_function: dict[str, int] = {}
    for c in counts:
        for name, n in c.per_function.items():
            per_function[name] = per_function.get(name, 0) + n
    own = {n: v for n, v in per_function.items() if n in own_names}
    other = {n: v for n, v in per_function.items() if n not in own_names}

    def shares(table: dict[str, int], limit: int | None = None) -> tuple[FunctionShare, ...]:
        ranked = sorted(table.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return tuple(FunctionShare(n, v, v / total if total else 0.0) for n, v in ranked if v)

    return Profile(
        total=total,
        own=sum(own.values()),
        functions=shares(own),
        elsewhere=shares(other, 10),
        tests=tuple(t.name for t in chosen),
        skipped=tuple(t.name for t in skipped),
        seconds=time.monotonic() - started,
    )
