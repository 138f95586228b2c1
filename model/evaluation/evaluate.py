"""``asmopt bench``: generate, verify and benchmark every row of a data set, resumably.

Each row is judged in a temporary directory of its own: the baseline is assembled from the
row's ``unoptimized_assembly`` (never its precompiled binary: every candidate and the baseline
are linked the same way here), the tests are the row's first ``max_tests`` inputs and outputs,
and each of the policy's samples goes through :func:`asmopt.executor.verify.verify_candidate`
(sandboxed tests, then the interleaved benchmark for those that pass).

Where the work runs:

- generation: in the verification workers for policies that are cheap to build and CPU-bound
  (``compiler``, ``baseline``); in this process for LLM policies (one model, not one per
  worker), overlapping with verification;
- verification: a process pool (``workers``; 1 runs everything in this process), or Ray tasks
  with ``ray_address``.

Resuming: every finished row is stored in a :class:`~asmopt.executor.store.ResultStore` under
the output directory, keyed by the row's content, the policy settings and the verification
options; a second run with the same arguments skips those rows. Rows that failed for a
reason outside the candidate (an exception in the harness) are not stored and run again.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from asmopt.model.evaluation.dataset import DataSet, Problem
from asmopt.model.evaluation.farms import Farm, InlineFarm, make_farm
from asmopt.model.evaluation.records import (
    BenchError,
    BenchInterrupted,
    BenchOptions,
    BenchResult,
    RowResult,
    SampleRecord,
    row_key,
)
from asmopt.model.evaluation.rows import PolicyFactory, evaluate_row, generate
from asmopt.model.search.policy import (
    Candidate,
    Policy,
    PolicyError,
    Proposal,
    Request,
)

__all__ = [
    "CALIBRATION_POLICIES",
    "BaselineCopyPolicy",
    "BenchError",
    "BenchInterrupted",
    "BenchOptions",
    "BenchResult",
    "PolicySpec",
    "RowResult",
    "SampleRecord",
    "evaluate_row",
    "row_key",
    "run_bench",
]


# --------------------------------------------------------------------------- policies


@dataclass
class BaselineCopyPolicy:
    """Proposes the baseline itself: an A/A check of the harness. The paper's metrics count
    it as passing; honest metrics show it as ~1.00x and never significantly faster."""

    name: str = "baseline"

    def propose(self, request: Request, n: int = 1) -> list[Proposal]:
        return [
            Candidate(asm=request.baseline_asm, policy=self.name, label="copy of the baseline")
            for _ in range(max(0, n))
        ]


# Bench-only policies (no model, no compiler): calibration of the measurement itself.
CALIBRATION_POLICIES = {"baseline": BaselineCopyPolicy}
# Policies that are cheap to build and CPU-bound: they run inside the verification workers.
_WORKER_POLICIES = {"compiler", *CALIBRATION_POLICIES}


@dataclass(frozen=True)
class PolicySpec:
    """The policies to bench, by name (``compiler``, ``transformers``, ``openai``, ``vllm``,
    ``baseline``): picklable, so that worker processes and Ray tasks can build them."""

    names: tuple[str, ...] = ("compiler",)
    model: str | None = None
    endpoint: str | None = None
    temperature: float = 0.5
    max_new_tokens: int = 2000

    def __call__(self) -> list[Policy]:
        from asmopt.model.search.optimizer import make_policies
        from asmopt.model.settings import Settings, SettingsError

        policies: list[Policy] = [
            CALIBRATION_POLICIES[n]() for n in self.names if n in CALIBRATION_POLICIES
        ]
        others = tuple(n for n in self.names if n not in CALIBRATION_POLICIES)
        if others:
            try:
                settings = Settings().replace(
                    policies=list(others),
                    model=self.model,
                    endpoint=self.endpoint,
                    temperature=self.temperature,
                    max_new_tokens=self.max_new_tokens,
                )
            except SettingsError as err:
                raise BenchError(str(err)) from err
            # Settings.effective_policies adds an LLM back-end to a lone "compiler" when a
            # model or endpoint is set; the bench runs exactly what was named.
            made = make_policies(settings)
            names = settings.effective_policies()
            policies.extend(p for n, p in zip(names, made, strict=False) if n in others)
        return policies

    @property
    def label(self) -> str:
        return "+".join(self.names)

    @property
    def runs_in_workers(self) -> bool:
        return set(self.names) <= _WORKER_POLICIES

    def key(self) -> str:
        return repr((self.names, self.model, self.endpoint, self.temperature, self.max_new_tokens))


# --------------------------------------------------------------------------- the run


def running_jobs(*jobs: dict[Any, int]) -> list[Future[Any]]:
    """The futures of several job tables, to wait on or cancel together."""
    return [future for table in jobs for future in table]


def run_bench(
    dataset: DataSet | Sequence[Problem],
    policies: PolicySpec | PolicyFactory,
    out_dir: Path,
    options: BenchOptions | None = None,
    *,
    on_row: Callable[[RowResult, int, int], None] | None = None,
    generate_in_workers: bool | None = None,
) -> BenchResult:
    """Bench every problem, reusing rows already stored under ``out_dir``.

    ``policies`` is a :class:`PolicySpec` or any picklable factory returning policies (a
    process pool or Ray needs to pickle it; with ``workers=1`` anything goes).
    ``on_row(result, done, total)`` is called for every row as it finishes (cached rows
    first). Raises :class:`BenchInterrupted` on Ctrl-C (finished rows stay stored) and
    :class:`BenchError` when a policy cannot run at all.
    """
    from asmopt.executor.store import ResultStore

    opts = options or BenchOptions()
    problems = list(dataset.problems if isinstance(dataset, DataSet) else dataset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    label = (
        policies.label
        if isinstance(policies, PolicySpec)
        else getattr(policies, "__name__", type(policies).__name__)
    )
    in_workers = (
        generate_in_workers
        if generate_in_workers is not None
        else (isinstance(policies, PolicySpec) and policies.runs_in_workers)
    )
    started = time.monotonic()
    with ResultStore(out_dir) as store:
        run = _BenchRun(problems, policies, opts, store, label, on_row)
        pending = run.load_stored()
        if pending:
            run.judge(pending, in_workers)
    return _finish(problems, run.results, run.total, label, started)


class _BenchRun:
    """The state of one :func:`run_bench`: the rows' keys, their results so far, the store
    they go to, and the jobs in flight."""

    def __init__(
        self,
        problems: list[Problem],
        policies: PolicySpec | PolicyFactory,
        opts: BenchOptions,
        store: Any,
        label: str,
        on_row: Callable[[RowResult, int, int], None] | None,
    ) -> None:
        self.problems, self.policies, self.opts = problems, policies, opts
        self.store, self.label, self.on_row = store, label, on_row
        spec_key = _factory_key(policies)
        self.keys = [row_key(p, spec_key, opts) for p in problems]
        self.results: dict[int, RowResult] = {}
        self.total = len(problems)
        self.verifying: dict[Future[RowResult], int] = {}
        self.generating: dict[Future[list[tuple[str, Proposal]]], int] = {}

    def load_stored(self) -> list[int]:
        """Take the rows already in the store; return the indices of those still to judge."""
        for i, key in enumerate(self.keys):
            record = self.store.get(key)
            if record is not None and "row" in record:
                stored = RowResult.from_dict(record["row"], cached=True)
                # The same content may sit under another name or position in this data set.
                problem = self.problems[i]
                self.results[i] = replace(stored, name=problem.name, row=problem.row)
                if self.on_row:
                    self.on_row(self.results[i], len(self.results), self.total)
        return [i for i in range(self.total) if i not in self.results]

    def record(self, i: int, result: RowResult) -> None:
        """Keep row ``i``'s result, store it unless the harness failed, and report it."""
        self.results[i] = result
        if result.status != "error":
            self.store.put(
                self.keys[i],
                {
                    "kind": "bench-row",
                    "target": result.name,
                    "policy": self.label,
                    "verdict": result.status,
                    "row": result.to_dict(),
                },
            )
        if self.on_row:
            self.on_row(result, len(self.results), self.total)

    def judge(self, pending: list[int], in_workers: bool) -> None:
        """Generate (here or in the workers) and verify the ``pending`` rows."""
        farm = make_farm(self.opts)
        generator: ThreadPoolExecutor | None = None
        made: list[Policy] = []
        if not in_workers:
            made = list(self.policies())
            generator = ThreadPoolExecutor(max_workers=max(1, self.opts.generation_workers))
        queue = deque(pending)
        # Jobs are handed out a few at a time, not all at once: results are stored as they
        # come, Ctrl-C stops quickly, and a Ray cluster is not flooded.
        capacity = 1 if isinstance(farm, InlineFarm) else 2 * self.opts.effective_workers()

        def refill() -> None:
            while queue and len(self.verifying) + len(self.generating) < capacity:
                i = queue.popleft()
                problem = self.problems[i]
                if generator is None:
                    job = farm.submit(evaluate_row, problem, None, self.policies, self.opts)
                    self.verifying[job] = i
                else:
                    samples = self.opts.samples
                    self.generating[generator.submit(generate, problem, made, samples)] = i

        try:
            refill()
            while self.verifying or self.generating:
                running = running_jobs(self.verifying, self.generating)
                done, _ = wait_futures(running, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    self._collect(future, farm)
                refill()
        except KeyboardInterrupt:
            for left in running_jobs(self.verifying, self.generating):
                left.cancel()
            _shut_down(farm, generator, cancel=True)
            raise BenchInterrupted(len(self.results), self.total) from None
        except BaseException:
            _shut_down(farm, generator, cancel=True)
            raise
        _shut_down(farm, generator, cancel=False)

    def _collect(self, future: Future[Any], farm: Farm) -> None:
        """Take a finished job: proposals go on to be verified, a verified row is recorded."""
        generated = future in self.generating
        i = self.generating.pop(future) if generated else self.verifying.pop(future)
        try:
            done = future.result()
        except PolicyError as err:
            raise BenchError(f"the policy cannot run: {err}") from err
        except Exception as err:
            self.record(i, _error_row(self.problems[i], err))
            return
        if generated:
            job = farm.submit(evaluate_row, self.problems[i], done, None, self.opts)
            self.verifying[job] = i
        else:
            self.record(i, done)


def _shut_down(farm: Farm, generator: ThreadPoolExecutor | None, *, cancel: bool) -> None:
    farm.shutdown(cancel=cancel)
    if generator is not None:
        if cancel:
            generator.shutdown(wait=False, cancel_futures=True)
        else:
            generator.shutdown()


def _factory_key(factory: PolicySpec | PolicyFactory) -> str:
    """A key for the policies that is the same in every run (a function's repr holds its
    address, which is not)."""
    if isinstance(factory, PolicySpec):
        return factory.key()
    qualname = getattr(factory, "__qualname__", None)
    if qualname is not None:
        return f"{getattr(factory, '__module__', '')}.{qualname}"
    return repr(factory)


def _error_row(problem: Problem, err: BaseException) -> RowResult:
    return RowResult(problem.name, problem.row, "error", f"{type(err).__name__}: {err}")


def _finish(
    problems: Sequence[Problem],
    results: dict[int, RowResult],
    total: int,
    label: str,
    started: float,
) -> BenchResult:
    rows = tuple(results[i] for i in range(len(problems)) if i in results)
    return BenchResult(rows, total, label, time.monotonic() - started)


def describe(result: BenchResult) -> str:
    """One line for the terminal."""
    counts: dict[str, int] = {}
    for row in result.rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"{len(result.rows)}/{result.total} rows ({parts}) in {result.seconds:.1f} s"


def options_summary(options: BenchOptions) -> dict[str, Any]:
    """The settings a report records, so that a figure can be traced to how it was taken."""
    v = options.verify
    return {
        "samples": options.samples,
        "workers": options.effective_workers() if not options.ray_address else None,
        "ray": options.ray_address,
        "sandbox": options.sandbox,
        "compare": v.comparator.mode,
        "timeout_seconds": v.limits.wall_seconds,
        "bench": json.loads(json.dumps(replace(v.bench).__dict__)),
    }
