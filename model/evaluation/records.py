"""What a bench run keeps and returns: one record per sample and per row, the options, the
store key of a row, and the errors that stop a run.

:mod:`asmopt.model.evaluation.evaluate` re-exports all of them; they live here so that the
run loop, the worker farms and the report read one definition.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, fields
from typing import Any

from asmopt.executor.verify import VerifyOptions
from asmopt.model.evaluation.dataset import Problem
from asmopt.model.evaluation.metrics import SampleOutcome

__all__ = [
    "BenchError",
    "BenchInterrupted",
    "BenchOptions",
    "BenchResult",
    "RowResult",
    "SampleRecord",
    "row_key",
]


class BenchError(RuntimeError):
    """The benchmark cannot run (a policy that cannot start, Ray unreachable, ...)."""


class BenchInterrupted(BenchError):
    """The run was stopped before every row was done; finished rows are stored."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(
            f"interrupted with {done} of {total} rows done; the finished rows are stored: run "
            "the same command again to continue"
        )
        self.done = done
        self.total = total


@dataclass(frozen=True)
class SampleRecord:
    """One sample of one row: who proposed it, what happened, and the numbers."""

    index: int
    policy: str
    label: str
    verdict: str  # a Verdict value, or "no-candidate"
    message: str
    outcome: SampleOutcome
    candidate_hash: str = ""
    asm: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _fields_dict(self, outcome=self.outcome.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleRecord:
        return cls(
            index=int(data["index"]),
            policy=data.get("policy", ""),
            label=data.get("label", ""),
            verdict=data.get("verdict", ""),
            message=data.get("message", ""),
            outcome=SampleOutcome.from_dict(data["outcome"]),
            candidate_hash=data.get("candidate_hash", ""),
            asm=data.get("asm"),
        )


@dataclass(frozen=True)
class RowResult:
    """Everything about one row. ``status``: ``done`` (its samples were judged),
    ``baseline-failed`` (its own baseline does not assemble or fails its tests: excluded
    from the metrics, listed in the report), or ``error`` (the harness failed; not stored)."""

    name: str
    row: int
    status: str
    message: str = ""
    samples: tuple[SampleRecord, ...] = ()
    seconds: float = 0.0
    cached: bool = False

    def outcomes(self) -> list[SampleOutcome]:
        return [s.outcome for s in self.samples]

    def to_dict(self) -> dict[str, Any]:
        # ``cached`` says where this copy came from, not what the row is: never stored.
        return _fields_dict(self, skip=("cached",), samples=[s.to_dict() for s in self.samples])

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, cached: bool = False) -> RowResult:
        return cls(
            name=data["name"],
            row=int(data["row"]),
            status=data["status"],
            message=data.get("message", ""),
            samples=tuple(SampleRecord.from_dict(s) for s in data.get("samples", ())),
            seconds=float(data.get("seconds", 0.0)),
            cached=cached,
        )


@dataclass(frozen=True)
class BenchOptions:
    """How the bench runs. ``workers`` 0 means one per core; 1 runs in this process."""

    samples: int = 1
    workers: int = 0
    ray_address: str | None = None
    verify: VerifyOptions = field(default_factory=VerifyOptions)
    sandbox: bool = True
    generation_workers: int = 1  # concurrent generation requests (LLM policies, this process)
    keep_asm: bool = True  # store each candidate's assembly with its result

    def effective_workers(self) -> int:
        return self.workers if self.workers > 0 else max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class BenchResult:
    rows: tuple[RowResult, ...]  # in data-set order; only rows that finished
    total: int
    policy: str
    seconds: float

    @property
    def complete(self) -> bool:
        return len(self.rows) == self.total and all(r.status != "error" for r in self.rows)


def row_key(problem: Problem, policy_key: str, options: BenchOptions) -> str:
    """The store key of one row's result: its content, the policies, the sample count and
    everything that changes a verdict."""
    digest = hashlib.sha256(b"asmopt-bench-row-v1\0")
    for part in (
        problem.content_key(),
        policy_key,
        str(options.samples),
        options.verify.key(),
        repr(options.verify.bench),
        repr(options.verify.limits),
        str(options.sandbox),
    ):
        data = part.encode()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _fields_dict(record: Any, skip: tuple[str, ...] = (), **converted: Any) -> dict[str, Any]:
    """A dataclass record as a JSON-ready dict: its fields in declaration order, ``converted``
    values in place of the raw ones, ``skip`` left out."""
    return {
        f.name: converted[f.name] if f.name in converted else getattr(record, f.name)
        for f in fields(record)
        if f.name not in skip
    }
