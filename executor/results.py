"""Plain data passed between the executor's parts and up to the model and server layers.

Everything here is a frozen dataclass with JSON-friendly fields (``to_dict``), so that a
result can be stored, sent over LSP, or printed by the CLI without translation layers.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Diagnostic:
    """One compiler, assembler or linker message, located where the tool said."""

    file: str | None
    line: int | None  # 1-based, as the tools print it
    column: int | None
    severity: Severity
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "severity": self.severity.value}


@dataclass(frozen=True)
class BuildResult:
    """Outcome of one compiler / assembler / linker invocation."""

    ok: bool
    output: str | None  # path of what was produced (assembly or binary), None on failure
    command: tuple[str, ...]
    diagnostics: tuple[Diagnostic, ...] = ()
    stderr: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "output": self.output,
            "command": list(self.command),
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "stderr": self.stderr,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class RunResult:
    """One execution of a binary (normally inside the sandbox).

    ``cpu_seconds`` is user+sys time of the program's process tree as rusage reports it; the
    sandbox's own start-up is not part of it.
    """

    exit_code: int | None  # None when killed by a signal
    signal: int | None
    stdout: bytes
    stderr: bytes
    cpu_seconds: float
    wall_seconds: float
    max_rss_kib: int = 0
    timed_out: bool = False
    output_truncated: bool = False  # the program wrote more than the output cap
    out_of_memory: bool = False
    sandbox_violation: bool = False  # killed by the seccomp filter (SIGSYS)
    sandboxed: bool = True
    cpu_source: str = "rusage"  # "cgroup" when the kernel's count for the sandbox was used
    # The sandbox stopped answering (its runner was stopped or killed by the program) and
    # was killed from outside: the program's doing, never a busy machine's.
    stalled: bool = False
    # The sandbox died, or its runner could not start the run, before any answer: a program
    # can do that (kill its runner), and so can the machine.
    lost: bool = False


class TestStatus(enum.StrEnum):
    __test__ = False  # not a pytest class, despite its name

    PASSED = "passed"
    WRONG_OUTPUT = "wrong-output"
    CRASHED = "crashed"
    NONZERO_EXIT = "nonzero-exit"
    TIMED_OUT = "timed-out"
    OUT_OF_MEMORY = "out-of-memory"
    OUTPUT_TOO_LARGE = "output-too-large"
    SANDBOX_VIOLATION = "blocked-by-sandbox"
    # Passed when tested, then misbehaved in a timed run (other output, a crash): whatever
    # the reason, a program that acts differently when timed is never ranked.
    INCONSISTENT = "inconsistent"


@dataclass(frozen=True)
class TestVerdict:
    """The verdict of one test case: status plus a short human explanation."""

    __test__ = False  # not a pytest class, despite its name

    name: str
    status: TestStatus
    detail: str = ""  # a short diff, a signal name, ...
    cpu_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status is TestStatus.PASSED

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "detail": self.detail,
            "cpu_seconds": self.cpu_seconds,
        }


@dataclass(frozen=True)
class SpeedupEstimate:
    """Measured speed-up of a candidate over the baseline (>1 is faster).

    ``median`` is the median over rounds of (baseline CPU time / candidate CPU time), each
    round running every timed test once for each side, interleaved; ``ci_low``/``ci_high``
    are a distribution-free 95% confidence interval of that median (order statistics).
    """

    median: float
    ci_low: float
    ci_high: float
    runs: int  # rounds of interleaved baseline/candidate runs
    baseline_cpu_seconds: float  # median summed CPU time of one round
    candidate_cpu_seconds: float
    per_test: dict[str, float] = field(default_factory=dict)  # test -> median ratio
    samples: tuple[float, ...] = ()  # per-round ratios
    note: str = ""  # outliers, budget exhausted, ...
    converged: bool = True  # CI reached the requested precision
    # The same ratio of wall-clock times (the program's own, without the sandbox's start):
    # shown beside the CPU figure, and a candidate whose wall time says it is not faster is
    # never called faster.
    wall_median: float | None = None
    wall_ci_low: float | None = None
    wall_ci_high: float | None = None
    # Where the CPU figure comes from: "cgroup" (every process of the sandbox, by the
    # kernel) or "rusage" (the processes the runner reaped; see executor/cgroup.py).
    cpu_source: str = "rusage"
    # Why timing stopped before the CI reached its target because the candidate cannot win
    # (a race: executor/benchmark.py), or "" when it did not.
    stopped_early: str = ""

    @property
    def significant_faster(self) -> bool:
        return self.ci_low > 1.0

    @property
    def significant_slower(self) -> bool:
        return self.ci_high < 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "runs": self.runs,
            "baseline_cpu_seconds": self.baseline_cpu_seconds,
            "candidate_cpu_seconds": self.candidate_cpu_seconds,
            "per_test": dict(self.per_test),
            "note": self.note,
            "converged": self.converged,
            "wall_median": self.wall_median,
            "wall_ci_low": self.wall_ci_low,
            "wall_ci_high": self.wall_ci_high,
            "cpu_source": self.cpu_source,
            "samples": list(self.samples),
            "stopped_early": self.stopped_early,
        }


class Verdict(enum.StrEnum):
    FASTER = "faster"
    NOT_FASTER = "not-faster"
    TESTS_FAILED = "tests-failed"
    BUILD_FAILED = "build-failed"
    INCONSISTENT = "inconsistent"  # passed its tests, then did something else while timed


@dataclass(frozen=True)
class Estimate:
    """A static estimate from llvm-mca. Never a measurement; always labelled as such."""

    cycles_per_iteration: float
    instructions_per_cycle: float
    cpu: str
    instructions: int
    uops: int = 0
    block_rthroughput: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class InstructionCount:
    """Instructions executed in one run, counted by valgrind's callgrind (its "Ir" event).

    A deterministic count of instructions, never a time: it tracks CPU time poorly and says
    nothing about latency, vector width or cache misses.
    """

    total: int  # the whole process: dynamic loader, libc and the program
    program: int  # in the program's own binary (not libc or the loader)
    per_function: dict[str, int] = field(default_factory=dict)  # self count, largest first
    exit_code: int | None = None  # None when killed by a signal
    signal: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "program": self.program,
            "per_function": dict(self.per_function),
            "exit_code": self.exit_code,
            "signal": self.signal,
        }


@dataclass(frozen=True)
class VerificationResult:
    """The verdict on one candidate, in the shape ``asmopt verify --json`` prints."""

    verdict: Verdict
    candidate_hash: str
    build: BuildResult | None
    tests: tuple[TestVerdict, ...] = ()
    speedup: SpeedupEstimate | None = None
    identical_to_baseline: bool = False
    message: str = ""
    cached: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def tests_passed(self) -> int:
        return sum(1 for t in self.tests if t.passed)

    @property
    def all_passed(self) -> bool:
        return bool(self.tests) and self.tests_passed == len(self.tests)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "candidate": self.candidate_hash,
            "message": self.message,
            "identical_to_baseline": self.identical_to_baseline,
            "build": self.build.to_dict() if self.build else None,
            "tests": {
                "passed": self.tests_passed,
                "total": len(self.tests),
                "verdicts": [t.to_dict() for t in self.tests],
            },
            "speedup": self.speedup.to_dict() if self.speedup else None,
            "cached": self.cached,
            **({"meta": self.meta} if self.meta else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerificationResult:
        build = None
        if data.get("build"):
            b = data["build"]
            build = BuildResult(
                ok=b["ok"],
                output=b.get("output"),
                command=tuple(b.get("command", ())),
                diagnostics=tuple(
                    Diagnostic(
                        d.get("file"),
                        d.get("line"),
                        d.get("column"),
                        Severity(d.get("severity", "error")),
                        d.get("message", ""),
                    )
                    for d in b.get("diagnostics", ())
                ),
                stderr=b.get("stderr", ""),
                seconds=b.get("seconds", 0.0),
            )
        tests = tuple(
            TestVerdict(
                t["name"], TestStatus(t["status"]), t.get("detail", ""), t.get("cpu_seconds", 0.0)
            )
            for t in data.get("tests", {}).get("verdicts", ())
        )
        speedup = None
        if data.get("speedup"):
            s = data["speedup"]
            speedup = SpeedupEstimate(
                median=s["median"],
                ci_low=s["ci_low"],
                ci_high=s["ci_high"],
                runs=s["runs"],
                baseline_cpu_seconds=s.get("baseline_cpu_seconds", 0.0),
                candidate_cpu_seconds=s.get("candidate_cpu_seconds", 0.0),
                per_test=dict(s.get("per_test", {})),
                note=s.get("note", ""),
                converged=s.get("converged", True),
                wall_median=s.get("wall_median"),
                wall_ci_low=s.get("wall_ci_low"),
                wall_ci_high=s.get("wall_ci_high"),
                cpu_source=s.get("cpu_source", "rusage"),
                samples=tuple(s.get("samples", ())),
                stopped_early=s.get("stopped_early", ""),
            )
        return cls(
            verdict=Verdict(data["verdict"]),
            candidate_hash=data.get("candidate", ""),
            build=build,
            tests=tests,
            speedup=speedup,
            identical_to_baseline=data.get("identical_to_baseline", False),
            message=data.get("message", ""),
            cached=True,
            meta=dict(data.get("meta", {})),
        )
