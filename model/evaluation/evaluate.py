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

import atexit
import contextlib
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from asmopt.executor.verify import VerifyOptions
from asmopt.model.evaluation.dataset import DataSet, Problem
from asmopt.model.evaluation.metrics import SampleOutcome, same_assembly
from asmopt.model.search.policy import (
    Candidate,
    NoCandidate,
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

PolicyFactory = Callable[[], Sequence[Policy]]


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


# --------------------------------------------------------------------------- results


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
        return {
            "index": self.index,
            "policy": self.policy,
            "label": self.label,
            "verdict": self.verdict,
            "message": self.message,
            "outcome": self.outcome.to_dict(),
            "candidate_hash": self.candidate_hash,
            "asm": self.asm,
        }

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
        return {
            "name": self.name,
            "row": self.row,
            "status": self.status,
            "message": self.message,
            "samples": [s.to_dict() for s in self.samples],
            "seconds": self.seconds,
        }

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


# --------------------------------------------------------------------------- one row


@dataclass
class _WorkerState:
    sandboxes: dict[tuple[bool, Any], Any] = field(default_factory=dict)
    policies: dict[Any, Sequence[Policy]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sandbox(self, enabled: bool, limits: Any) -> Any:
        from asmopt.executor.sandbox import Sandbox

        with self.lock:
            key = (enabled, limits)
            if key not in self.sandboxes:
                self.sandboxes[key] = Sandbox(limits, enabled=enabled)
            return self.sandboxes[key]

    def close(self) -> None:
        for sandbox in self.sandboxes.values():
            sandbox.close()
        self.sandboxes.clear()


# One per process (worker processes and Ray workers are long-lived): the sandbox and the
# policies are built once, not per row.
_STATE = _WorkerState()
atexit.register(_STATE.close)


def _policies_for(factory: PolicyFactory) -> Sequence[Policy]:
    # Keyed by the factory itself (a PolicySpec compares by value, a function by identity);
    # the dict keeps it alive, so an id is never reused for another factory.
    if not _hashable(factory):
        return list(factory())
    with _STATE.lock:
        cached = _STATE.policies.get(factory)
    if cached is None:
        cached = list(factory())
        with _STATE.lock:
            _STATE.policies[factory] = cached
    return cached


def _hashable(obj: Any) -> bool:
    try:
        hash(obj)
    except TypeError:
        return False
    return True


def _ask_all(policies: Sequence[Policy], request: Request, n: int) -> list[tuple[str, Proposal]]:
    out: list[tuple[str, Proposal]] = []
    for policy in policies:
        name = getattr(policy, "name", type(policy).__name__)
        proposals = list(policy.propose(request, n))  # PolicyError propagates: can't run
        out.extend((name, p) for p in proposals[:n])
        out.extend(
            (name, NoCandidate(name, "the policy returned fewer proposals than asked for"))
            for _ in range(max(0, n - len(proposals)))
        )
    return out


def generate(problem: Problem, policies: Sequence[Policy], n: int) -> list[tuple[str, Proposal]]:
    """Ask every policy for ``n`` proposals for ``problem`` (with its C file and tests
    written to a temporary directory for policies that rebuild or profile)."""
    with tempfile.TemporaryDirectory(prefix="asmopt-gen-") as tmp:
        work = Path(tmp)
        source = None
        if problem.c_source is not None:
            source = work / "source.c"
            source.write_text(problem.c_source)
        tests_dir = problem.write_tests(work / "tests")
        return _ask_all(policies, problem.request(source, tests_dir), n)


def _outcome(result: Any, candidate: Candidate, problem: Problem) -> SampleOutcome:
    from asmopt.executor.results import Verdict

    compiled = result.build is not None and result.build.ok
    total = len(problem.tests)
    passed = result.tests_passed if compiled else 0
    if result.verdict is Verdict.TESTS_FAILED and passed == total:
        passed = total - 1  # passed its tests, then failed while being timed: not correct
    per_test: tuple[float, ...] = ()
    speedup = low = high = None
    if result.speedup is not None:
        per_test = tuple(result.speedup.per_test.get(t.name, 1.0) for t in problem.tests)
        speedup, low, high = result.speedup.median, result.speedup.ci_low, result.speedup.ci_high
    return SampleOutcome(
        compiled=compiled,
        tests_passed=passed,
        tests_total=total,
        identical=same_assembly(candidate.asm, problem.baseline_asm),
        per_test=per_test,
        speedup=speedup,
        ci_low=low,
        ci_high=high,
    )


def running_jobs(*jobs: dict[Any, int]) -> list[Future[Any]]:
    """The futures of several job tables, to wait on or cancel together."""
    return [future for table in jobs for future in table]


def evaluate_row(
    problem: Problem,
    proposals: Sequence[tuple[str, Proposal]] | None,
    factory: PolicyFactory | None,
    options: BenchOptions,
) -> RowResult:
    """Judge one row: build its baseline, get its samples (from ``proposals``, or from the
    policies ``factory`` builds), verify each. Never raises for a bad candidate or a bad
    baseline; a harness failure becomes ``status="error"``."""
    from asmopt.executor.judge import Judge
    from asmopt.executor.verify import BaselineError

    started = time.monotonic()
    try:
        sandbox = _STATE.sandbox(options.sandbox, options.verify.limits)
        with tempfile.TemporaryDirectory(prefix="asmopt-bench-") as tmp:
            work = Path(tmp)
            baseline_path = work / "baseline.s"
            baseline_path.write_text(problem.baseline_asm)
            try:
                judge = Judge.prepare(
                    baseline_path, list(problem.tests), work / "baseline", sandbox, options.verify
                )
            except BaselineError as err:
                return RowResult(
                    problem.name,
                    problem.row,
                    "baseline-failed",
                    f"the row's baseline can't be used: {err}",
                    seconds=time.monotonic() - started,
                )
            if proposals is None:
                if factory is None:
                    raise BenchError("evaluate_row needs proposals or a policy factory")
                proposals = generate(problem, _policies_for(factory), options.samples)
            samples: list[SampleRecord] = []
            for k, (policy_name, proposal) in enumerate(proposals):
                if isinstance(proposal, NoCandidate):
                    samples.append(
                        SampleRecord(
                            k,
                            proposal.policy or policy_name,
                            "",
                            "no-candidate",
                            proposal.reason,
                            SampleOutcome(compiled=False, tests_total=len(problem.tests)),
                        )
                    )
                    continue
                result = judge.judge(proposal.asm)
                samples.append(
                    SampleRecord(
                        k,
                        proposal.policy or policy_name,
                        proposal.label,
                        result.verdict.value,
                        result.message,
                        _outcome(result, proposal, problem),
                        result.candidate_hash,
                        proposal.asm if options.keep_asm else None,
                    )
                )
    except PolicyError:
        raise
    except Exception as err:  # the harness, not the candidate: report, don't store
        return RowResult(
            problem.name,
            problem.row,
            "error",
            f"{type(err).__name__}: {err}",
            seconds=time.monotonic() - started,
        )
    return RowResult(
        problem.name, problem.row, "done", "", tuple(samples), time.monotonic() - started
    )


# --------------------------------------------------------------------------- farms


class _InlineFarm:
    """Runs each job in this process when submitted (``workers=1``)."""

    def submit(self, fn: Callable[..., RowResult], *args: Any) -> Future[RowResult]:
        future: Future[RowResult] = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as err:
            future.set_exception(err)
            if isinstance(err, KeyboardInterrupt):
                raise
        return future

    def shutdown(self, cancel: bool = False) -> None:
        pass


class _ProcessFarm:
    def __init__(self, workers: int) -> None:
        import multiprocessing

        # spawn: children start clean (no inherited threads, locks or sandboxes).
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )

    def submit(self, fn: Callable[..., RowResult], *args: Any) -> Future[RowResult]:
        return self._pool.submit(fn, *args)

    def shutdown(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


class _RayFarm:
    def __init__(self, address: str, workers: int) -> None:
        try:
            import ray
        except ImportError as err:
            raise BenchError(
                "--ray needs Ray, which is not installed: pip install 'asmopt[ray]' "
                "(or run without --ray to use a local process pool)"
            ) from err
        self._ray = ray
        self._started_here = False
        if address == "local":
            # A private single-machine cluster on the loopback interface only.
            ray.init(
                address="local",
                num_cpus=workers,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                log_to_driver=False,
                configure_logging=False,
            )
            self._started_here = True
        else:
            _check_reachable(address)
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except Exception as err:  # ConnectionError, RuntimeError, ... depending on version
                raise BenchError(
                    f"cannot connect to the Ray cluster at {address}: {err}; start one with "
                    "`ray start --head` or check the address (host:port, or ray://host:10001)"
                ) from err
        self._remote = ray.remote(num_cpus=1, max_retries=0)(evaluate_row)
        self._refs: list[Any] = []

    def submit(self, fn: Callable[..., RowResult], *args: Any) -> Future[RowResult]:
        ref = self._remote.remote(*args)
        self._refs.append(ref)
        return ref.future()

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._refs:
                with contextlib.suppress(Exception):  # already finished or gone
                    self._ray.cancel(ref, force=True)
        if self._started_here:
            self._ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, with a clear message, when nothing listens at a Ray address."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise BenchError(
            f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379 or "
            "ray://10.0.0.5:10001), 'auto' or 'local'"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise BenchError(
            f"no Ray cluster answers at {address} ({err.strerror or err}); start one with "
            "`ray start --head` there, or pass --ray local for a private one on this machine"
        ) from err


def _make_farm(options: BenchOptions) -> Any:
    if options.ray_address:
        return _RayFarm(options.ray_address, options.effective_workers())
    if options.effective_workers() == 1:
        return _InlineFarm()
    return _ProcessFarm(options.effective_workers())


# --------------------------------------------------------------------------- the run


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
    spec_key = _factory_key(policies)
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
    keys = [row_key(p, spec_key, opts) for p in problems]
    results: dict[int, RowResult] = {}
    total = len(problems)
    with ResultStore(out_dir) as store:
        for i, key in enumerate(keys):
            record = store.get(key)
            if record is not None and "row" in record:
                stored = RowResult.from_dict(record["row"], cached=True)
                # The same content may sit under another name or position in this data set.
                results[i] = replace(stored, name=problems[i].name, row=problems[i].row)
                if on_row:
                    on_row(results[i], len(results), total)
        pending = [i for i in range(total) if i not in results]
        if not pending:
            return _finish(problems, results, total, label, started)

        def record(i: int, result: RowResult) -> None:
            results[i] = result
            if result.status != "error":
                store.put(
                    keys[i],
                    {
                        "kind": "bench-row",
                        "target": result.name,
                        "policy": label,
                        "verdict": result.status,
                        "row": result.to_dict(),
                    },
                )
            if on_row:
                on_row(result, len(results), total)

        farm = _make_farm(opts)
        generator: ThreadPoolExecutor | None = None
        made: list[Policy] = []
        if not in_workers:
            made = list(policies())
            generator = ThreadPoolExecutor(max_workers=max(1, opts.generation_workers))
        verifying: dict[Future[RowResult], int] = {}
        generating: dict[Future[list[tuple[str, Proposal]]], int] = {}
        queue = deque(pending)
        # Jobs are handed out a few at a time, not all at once: results are stored as they
        # come, Ctrl-C stops quickly, and a Ray cluster is not flooded.
        capacity = 1 if isinstance(farm, _InlineFarm) else 2 * opts.effective_workers()

        def refill() -> None:
            while queue and len(verifying) + len(generating) < capacity:
                i = queue.popleft()
                if generator is None:
                    verifying[farm.submit(evaluate_row, problems[i], None, policies, opts)] = i
                else:
                    generating[generator.submit(generate, problems[i], made, opts.samples)] = i

        try:
            refill()
            while verifying or generating:
                running = running_jobs(verifying, generating)
                done, _ = wait_futures(running, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    if future in generating:
                        i = generating.pop(future)  # type: ignore[arg-type]
                        try:
                            proposals = future.result()
                        except PolicyError as err:
                            raise BenchError(f"the policy cannot run: {err}") from err
                        except Exception as err:
                            record(i, _error_row(problems[i], err))
                            continue
                        verifying[farm.submit(evaluate_row, problems[i], proposals, None, opts)] = i
                    else:
                        i = verifying.pop(future)  # type: ignore[arg-type]
                        try:
                            result = future.result()
                        except PolicyError as err:
                            raise BenchError(f"the policy cannot run: {err}") from err
                        except Exception as err:
                            result = _error_row(problems[i], err)
                        record(i, result)
                refill()
        except KeyboardInterrupt:
            for left in running_jobs(verifying, generating):
                left.cancel()
            farm.shutdown(cancel=True)
            if generator is not None:
                generator.shutdown(wait=False, cancel_futures=True)
            raise BenchInterrupted(len(results), total) from None
        except BaseException:
            farm.shutdown(cancel=True)
            if generator is not None:
                generator.shutdown(wait=False, cancel_futures=True)
            raise
        farm.shutdown()
        if generator is not None:
            generator.shutdown()
    return _finish(problems, results, total, label, started)


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
