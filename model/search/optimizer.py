"""The "Optimize function" job as one call, shared by `asmopt optimize` and the language server.

``optimize(OptimizeRequest(...))`` resolves the target (``asmopt.toml`` or the defaults),
loads its tests and builds the ``gcc -O3`` baseline in the sandbox (``preparation.py``), asks
every configured policy for candidates, verifies and benchmarks them (``portfolio.optimize``),
and returns the ranked :class:`~asmopt.model.search.outcome.OptimizeOutcome`, whose
``record()`` is the one result every entry point shows. Progress is reported as typed stages
(:mod:`~asmopt.model.search.stages`): baseline, generate, verify, benchmark, in that order.
Everything a user can get wrong ends in an ``OptimizeError`` whose message says what to do;
nothing is written outside the workspace's ``.asmopt/`` store.

LLM policies run as :class:`~asmopt.model.search.refine.RefiningPolicy`: once the baseline is
built, each answer is verified and the findings go back to the model for ``refine_rounds``
revisions; every answer of every round is ranked with the other candidates, and every raw
answer is kept in :attr:`OptimizeOutcome.answers`.

A project's sources are compiled with their own flags from its ``compile_commands.json``
(``compile_db.py``); a target's tests may be commands (``test_command``, ``bench_command``)
run in the sandbox with the target's folder read-only; a library file (no ``main``) is
optimized through the target whose program calls it, and a program that never calls the
function is refused with a message (its tests pass with the function made to trap).
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmopt.executor.judge import Judge
from asmopt.executor.sandbox import Sandbox, SandboxError
from asmopt.executor.store import ResultStore
from asmopt.executor.verify import (
    Baseline,
    BaselineError,
    VerificationResult,
    prepare_baseline,
)
from asmopt.model.search.outcome import OptimizeError, OptimizeOutcome, RunRecord
from asmopt.model.search.policy import Candidate, Policy, PolicyError, Request
from asmopt.model.search.preparation import (
    OptimizeRequest,
    Prepared,
    _build_other_sources,
    _load_tests,
    _ProjectFlags,
    build_baseline,
    open_sandbox,
    prepare,
    resolve,
    verify_options,
)
from asmopt.model.search.refine import RefiningPolicy
from asmopt.model.search.stages import Progress, Stage, quiet
from asmopt.model.settings import Settings

if TYPE_CHECKING:
    from asmopt.executor.profile import Profile
    from asmopt.model.search.portfolio import PortfolioResult, SoFar

__all__ = [
    "OptimizeError",
    "OptimizeOutcome",
    "OptimizeRequest",
    "Progress",
    "RunRecord",
    "Stage",
    "make_policies",
    "optimize",
    "profile_program",
    "verify_options",
]


class _EveryVariant:
    """Compiler search tries all of its variants: ``samples`` is the LLMs' sample count."""

    name = "compiler"

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def planned(self, request: Request, n: int = 1) -> int:
        """How many proposals it makes: one per variant, whatever ``n``."""
        return len(self.inner.variants_for(request))

    def propose(self, request: Request, n: int = 1) -> list[Any]:
        return self.inner.propose(request, max(n, self.planned(request)))

    def propose_iter(self, request: Request, n: int = 1) -> Any:
        return self.inner.propose_iter(request, max(n, self.planned(request)))


class _Prefetched:
    """A policy whose proposals are made in a thread of its own from the moment the job knows
    its request (:meth:`start`), so that the compiler search builds its variants, profile-
    guided ones with their training runs, while the job still checks whether the program is
    worth optimizing; :meth:`propose_iter` then hands them over as they come. Only the compiler
    search is made so: an LLM's answers wait for that verdict (its tokens cost more than a
    build), and a refining policy needs the job's verifier."""

    def __init__(self, inner: _EveryVariant, request: Request, n: int) -> None:
        self.inner = inner
        self.name = inner.name
        self._request, self._n = request, n
        self._made: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._taken = False  # the made proposals are handed over once
        self._thread = threading.Thread(target=self._make, name="asmopt-prefetch", daemon=True)
        self._thread.start()

    @staticmethod
    def start(policies: list[Policy], request: Request, n: int) -> list[Policy]:
        """``policies`` with the compiler search's proposals begun."""
        return [_Prefetched(p, request, n) if isinstance(p, _EveryVariant) else p for p in policies]

    @staticmethod
    def stop(policies: list[Policy]) -> None:
        """Make no more proposals (the variant being built is finished) and wait for that."""
        for p in policies:
            if isinstance(p, _Prefetched):
                p._stop.set()
                p._thread.join()

    def _make(self) -> None:
        try:
            for proposal in self.inner.propose_iter(self._request, self._n):
                self._made.put(("proposal", proposal))
                if self._stop.is_set():
                    break  # leaving the loop closes the generator: its files go
        except BaseException as err:  # handed to whoever takes the proposals
            self._made.put(("error", err))
        finally:
            self._made.put(("end", None))

    def planned(self, request: Request, n: int = 1) -> int:
        return self.inner.planned(request, n)

    def propose_iter(self, request: Request, n: int = 1) -> Iterator[Any]:
        if self._taken or request != self._request:  # asked again, or otherwise: afresh
            yield from self.inner.propose_iter(request, n)
            return
        self._taken = True
        while True:
            kind, item = self._made.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item

    def propose(self, request: Request, n: int = 1) -> list[Any]:
        return list(self.propose_iter(request, n))


def make_policies(settings: Settings) -> list[Policy]:
    """The policies ``settings`` asks for, ready to propose. LLM back-ends load lazily."""
    from asmopt.model.search.compiler_search import CompilerSearchPolicy

    policies: list[Policy] = []
    for name in settings.effective_policies():
        if name == "compiler":
            policies.append(_EveryVariant(CompilerSearchPolicy()))
            continue
        from asmopt.model.search.backends.factory import make_backend
        from asmopt.model.search.llm_policy import LLMPolicy

        opts: dict[str, Any] = {}
        if name == "openai":
            opts.update(timeout=settings.llm_timeout, api_key=settings.api_key)
        elif name == "vllm":
            opts.update(
                tensor_parallel_size=settings.tensor_parallel_size,
                max_model_len=settings.max_model_len,
            )
        backend = make_backend(name, settings.model, settings.endpoint, **opts)
        policies.append(
            LLMPolicy(
                backend, temperature=settings.temperature, max_new_tokens=settings.max_new_tokens
            )
        )
    return policies


def optimize(
    request: OptimizeRequest,
    *,
    store: ResultStore | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    policies: list[Policy] | None = None,
    strict: bool = True,
    on_update: Callable[[SoFar], None] | None = None,
) -> OptimizeOutcome:
    """Run the whole job; see the module docstring. ``policies`` overrides the settings'.

    With ``strict`` (the CLI), a policy that cannot run at all (model missing, endpoint down)
    fails the job with its message; without it (the editor) the other policies' results are
    kept and the failure is reported in ``unusable``. ``on_update`` hears of each verified
    speed-up as soon as it is known (``SoFar.text``: "1.66x so far, still measuring"), and
    after ``cancel`` the outcome holds what was verified until then. The job's run record
    (``outcome.record()``) is kept in ``store`` unless the job was cancelled.

    Before any candidate is verified, a program whose quickest test is short is profiled
    (valgrind instructions); when its own code executes only a small share of them, the
    job stops with one line saying so (``startup_bound``), unless ``settings.go_on``. The
    compiler search builds its variants meanwhile (:class:`_Prefetched`); LLMs are asked
    after it.
    """
    say = progress or quiet
    job = prepare(request)
    chosen = _policies(job.settings, policies)
    sandbox = open_sandbox(job)
    try:
        with tempfile.TemporaryDirectory(prefix="asmopt-opt-") as tmp:
            job, baseline = build_baseline(job, Path(tmp), sandbox, say, cancel)
            # The compiler search builds its variants while the start-up check profiles.
            chosen = _Prefetched.start(chosen, _request(job, baseline), job.settings.samples)
            try:
                outcome, known = _startup_check(job, baseline, sandbox, say)
                if outcome is None:
                    chosen = _with_refinement(chosen, job, baseline, sandbox, store, say, cancel)
                    profile = _WorkProfile.prepare(job, baseline, sandbox, known)
                    try:
                        result = _search(
                            job, baseline, chosen, sandbox, store, profile.after_first(say),
                            cancel, on_update, profile.get,
                        )  # fmt: skip
                    finally:
                        profile.join()  # before the sandbox it runs in closes
                    outcome = _outcome(job, baseline, result, chosen, strict)
            finally:
                _Prefetched.stop(chosen)  # a job that stops early leaves variants unbuilt
    finally:
        sandbox.close()
    if store is not None:  # what the editor shows of this run, whoever ran it
        outcome.record().save(store)
    return outcome


def _policies(settings: Settings, policies: list[Policy] | None) -> list[Policy]:
    try:
        return policies if policies is not None else make_policies(settings)
    except PolicyError as err:
        raise OptimizeError(str(err), stage=Stage.GENERATE) from err


def _stored_as(job: Prepared) -> dict[str, str]:
    """The fields every stored verdict of this job carries."""
    return {"target": job.target.name, "source": str(job.source)}


def _search(
    job: Prepared,
    baseline: Baseline,
    policies: list[Policy],
    sandbox: Sandbox,
    store: ResultStore | None,
    say: Progress,
    cancel: threading.Event | None,
    on_update: Callable[[SoFar], None] | None,
    profile: Callable[[], Profile | None],
) -> PortfolioResult:
    """Ask every policy, verify, mix, measure again and rank (``portfolio.optimize``)."""
    from asmopt.model.search import portfolio

    settings = job.settings
    try:
        return portfolio.optimize(
            _request(job, baseline), policies, baseline, sandbox, job.options, store=store,
            workers=settings.workers or None, proposals_per_policy=settings.samples,
            progress=say, cancel=cancel, record=_stored_as(job),
            racing=portfolio.DEFAULT_RACING if settings.racing else None,
            on_update=on_update, profile=profile,
        )  # fmt: skip
    except PolicyError as err:
        raise OptimizeError(str(err), stage=Stage.GENERATE) from err


def _request(job: Prepared, baseline: Baseline) -> Request:
    """What every policy of ``job`` is asked."""
    settings = job.settings
    return Request(
        baseline_asm=baseline.asm, c_source=job.c_source, function=job.function,
        source_path=job.source, cflags=tuple(job.cflags), tests_dir=job.target.tests,
        allow_native=settings.allow_native, march_level=settings.march_level,
    )  # fmt: skip


def _outcome(
    job: Prepared,
    baseline: Baseline,
    result: PortfolioResult,
    policies: list[Policy],
    strict: bool,
) -> OptimizeOutcome:
    broken = [u for u in result.unusable if u.unavailable]
    if strict and broken:
        raise OptimizeError(
            "; ".join(u.reason for u in broken),
            stage=Stage.GENERATE,
            unavailable=tuple(u.policy for u in broken),
        )
    return OptimizeOutcome(
        winner=result.winner,
        candidates=result.trials,
        baseline_asm=baseline.asm,
        function=job.function,
        message=result.message,
        target=job.target.name,
        unusable=tuple(f"{u.policy}: {u.reason}" for u in result.unusable),
        notes=tuple(result.notes),
        target_notes=job.target_notes + tuple(job.project.notes),
        cancelled=result.cancelled,
        answers=tuple(a for p in policies if isinstance(p, RefiningPolicy) for a in p.answers),
        source=str(job.source),
    )


# A program whose quickest test runs longer than this (at full speed) is not start-up bound,
# and profiling it would cost more than the check is worth.
STARTUP_CHECK_MAX_SECONDS = 0.1


def _startup_check(
    job: Prepared, baseline: Baseline, sandbox: Sandbox, say: Progress
) -> tuple[OptimizeOutcome | None, Profile | None]:
    """The outcome of a job that stops because its program's run is start-up and libc
    (None when it goes on: ``go_on``; command tests, which run through a shell, have no
    single run to profile), and the profile that was made to tell, if one was."""
    if job.settings.go_on or job.commands is not None:
        return None, None
    bound, profile = _startup_bound(baseline, sandbox, say)
    if not bound:
        return None, profile
    assert profile is not None
    return OptimizeOutcome(
        winner=None,
        candidates=(),
        baseline_asm=baseline.asm,
        function=job.function,
        message=f"{job.source.name}: {bound}; not optimized (--go-on to try anyway)",
        target=job.target.name,
        startup_bound=bound,
        profile=profile.to_dict(),
        source=str(job.source),
    ), profile


def _startup_bound(
    baseline: Baseline, sandbox: Sandbox, say: Progress
) -> tuple[str, Profile | None]:
    """The one line saying the run is start-up and libc, from the instruction profile of the
    quickest test, or "" (also when valgrind cannot count, or the test is long)."""
    from asmopt.executor.callgrind import CallgrindError
    from asmopt.executor.profile import profile_binary
    from asmopt.executor.toolchain import ToolNotFoundError

    quickest = min(baseline.tests, key=lambda t: baseline.wall_seconds.get(t.name, 0.0))
    if baseline.wall_seconds.get(quickest.name, 0.0) > STARTUP_CHECK_MAX_SECONDS:
        return "", None
    say(Stage.BASELINE, f"profiling test {quickest.name} (valgrind instructions)")
    try:
        profile = profile_binary(sandbox, baseline.binary, [quickest], workers=1, timeout=30)
    except (CallgrindError, ToolNotFoundError, SandboxError):
        return "", None
    return profile.startup_bound(), profile


# The mix skips splices that cannot gain, by the baseline's instruction profile on the
# quickest tests that fit this many seconds of valgrind on one core (estimated from the
# baseline's wall time, which load inflates: the budget leaves room, so that the choice
# does not flip between two runs of a test of a few hundred milliseconds); it is made while
# the candidates are screened, from the first verdict on (before it, the first candidate
# has a core to itself).
MIX_PROFILE_BUDGET = 20.0


class _WorkProfile:
    """The baseline's instruction profile for the mix, made in a thread of its own."""

    def __init__(self, known: Profile | None = None, make: Callable[[], Any] | None = None):
        self._profile = known
        self._make = make
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def prepare(
        cls, job: Prepared, baseline: Baseline, sandbox: Sandbox, known: Profile | None
    ) -> _WorkProfile:
        """What the mix will need: nothing when the job cannot mix (a function asked for,
        command tests, fewer than two functions); ``known`` (the start-up check's) when it
        covers the same tests, or when even the quickest test would take valgrind more than
        ``MIX_PROFILE_BUDGET``; else a profile to make (:meth:`begin`)."""
        from asmopt.executor.asmfile import parse_functions
        from asmopt.executor.profile import SLOWDOWN, VALGRIND_START, select_tests

        top = [f for f in parse_functions(baseline.asm) if f.parent is None]
        if job.function is not None or job.commands is not None or len(top) < 2:
            return cls()
        chosen, _ = select_tests(baseline.tests, baseline.wall_seconds, MIX_PROFILE_BUDGET, 1)
        cost = sum(VALGRIND_START + SLOWDOWN * baseline.wall_seconds.get(t.name, 0.0)
                   for t in chosen)  # fmt: skip
        if cost > MIX_PROFILE_BUDGET:
            return cls(known)  # even the quickest test is too long to profile on the side
        if known is not None and set(known.tests) == {t.name for t in chosen}:
            return cls(known)
        made = cls()
        made._make = lambda: made._run(sandbox, baseline, chosen)
        return made

    def begin(self) -> None:
        """Start making the profile, once."""
        with self._lock:
            if self._make is None or self._thread is not None:
                return
            self._thread = threading.Thread(target=self._make, name="asmopt-profile", daemon=True)
            self._thread.start()

    def after_first(self, say: Progress) -> Progress:
        """``say``, beginning the profile at the job's first verdict (its first line of the
        verify stage)."""

        def told(stage: Stage, line: str) -> None:
            if stage is Stage.VERIFY:
                self.begin()
            say(stage, line)

        return told

    def _run(self, sandbox: Sandbox, baseline: Baseline, tests: list[Any]) -> None:
        from asmopt.executor.callgrind import CallgrindError
        from asmopt.executor.profile import profile_binary
        from asmopt.executor.toolchain import ToolNotFoundError

        try:
            self._profile = profile_binary(sandbox, baseline.binary, tests, workers=1, timeout=60)
        except (CallgrindError, ToolNotFoundError, SandboxError):
            self._profile = None  # no profile: the mix splices as it would without one

    def get(self) -> Profile | None:
        """The profile, once made (None when it could not be)."""
        self.begin()
        self.join()
        return self._profile

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


def profile_program(
    request: OptimizeRequest, *, budget: float = 8.0, every_test: bool = False
) -> tuple[str, Profile]:
    """The instruction profile of ``request``'s program (its ``gcc -O3`` baseline build) on
    the quickest of its tests that fit ``budget`` seconds of valgrind (``every_test``: all);
    returns the target's name and the profile. Raises ``OptimizeError`` with what to do."""
    from asmopt.executor.callgrind import CallgrindError
    from asmopt.executor.profile import profile_binary
    from asmopt.executor.toolchain import ToolNotFoundError

    settings = request.settings
    source = request.source.resolve()
    if not source.exists():
        raise OptimizeError(f"{source} does not exist")
    target, config = resolve(request)
    if target.has_commands:
        raise OptimizeError(
            f"target {target.name!r} runs its tests as commands: asmopt profile needs NAME.in "
            "tests that run the program itself"
        )
    if target.tests is None:
        raise OptimizeError(
            f"no tests found for {source.name}: put NAME.in files in a tests/ folder beside it"
        )
    tests = _load_tests(target.tests)
    options = verify_options(settings, target)
    compiler = target.compiler or settings.compiler
    project = _ProjectFlags(config, target, settings)
    cflags = project.flags_for(source)
    try:
        sandbox = Sandbox(options.limits, enabled=settings.sandbox)
    except SandboxError as err:
        raise OptimizeError(str(err)) from err
    try:
        with tempfile.TemporaryDirectory(prefix="asmopt-profile-") as tmp:
            other = [s for s in target.sources if s.resolve() != source]
            extra = _build_other_sources(other, Path(tmp), compiler, project)
            if extra:
                options = replace(options, extra_inputs=tuple(extra))
            try:
                baseline = prepare_baseline(
                    source, tests, Path(tmp) / "baseline", sandbox, compiler=compiler,
                    cflags=cflags, options=options,
                )  # fmt: skip
                profile = profile_binary(
                    sandbox, baseline.binary, baseline.tests,
                    wall_seconds=None if every_test else baseline.wall_seconds,
                    budget=budget, workers=settings.workers or os.cpu_count() or 1,
                )  # fmt: skip
            except BaselineError as err:
                raise OptimizeError(str(err)) from err
            except (CallgrindError, ToolNotFoundError) as err:
                raise OptimizeError(f"cannot profile {source.name}: {err}") from err
    finally:
        sandbox.close()
    return target.name, profile


def _with_refinement(
    policies: list[Policy],
    job: Prepared,
    baseline: Baseline,
    sandbox: Sandbox,
    store: ResultStore | None,
    say: Progress,
    cancel: threading.Event | None,
) -> list[Policy]:
    """LLM policies wrapped to verify and revise their answers (``settings.refine_rounds``
    times; 0 still records the raw answers), reporting tokens and rounds to ``say``."""
    from asmopt.model.search.llm_policy import LLMPolicy

    settings = job.settings
    judge = Judge(baseline, sandbox, job.options, store)

    def verify(candidate: Candidate) -> VerificationResult:
        meta = {"policy": candidate.policy, "label": candidate.label,
                "function": candidate.function, "kind": "candidate",
                "portable": candidate.portable, **_stored_as(job)}  # fmt: skip
        return judge.judge(candidate.asm, meta=meta, cancel=cancel)

    wrapped: list[Policy] = []
    for policy in policies:
        if isinstance(policy, LLMPolicy):
            name = policy.name
            policy.progress = lambda m, name=name: say(Stage.GENERATE, f"generating ({name}): {m}")
            policy = RefiningPolicy(
                policy, settings.refine_rounds, verify, baseline=baseline, progress=say,
                workers=settings.workers or os.cpu_count() or 1, cancel=cancel,
            )  # fmt: skip
        wrapped.append(policy)
    return wrapped
