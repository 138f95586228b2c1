"""The "Optimize function" job as one call, shared by `asmopt optimize` and the language server.

``optimize(OptimizeRequest(...))`` resolves the target (``asmopt.toml`` or the defaults),
loads its tests, builds the ``gcc -O3`` baseline in the sandbox, asks every configured policy
for candidates, verifies and benchmarks them (``portfolio.optimize``), and returns the ranked
result. Everything a user can get wrong ends in an ``OptimizeError`` whose message says what
to do; nothing is written outside the workspace's ``.asmopt/`` store.
"""

from __future__ import annotations

import difflib
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmopt.executor.asmfile import parse_functions, referenced_symbols
from asmopt.executor.benchmark import BenchmarkOptions
from asmopt.executor.sandbox import MiB, Sandbox, SandboxError, SandboxLimits
from asmopt.executor.store import ResultStore
from asmopt.executor.testcases import Comparator, TestSetError, load_tests
from asmopt.executor.toolchain import compile_to_asm
from asmopt.executor.verify import (
    Baseline,
    BaselineError,
    VerificationResult,
    VerifyOptions,
    prepare_baseline,
)
from asmopt.model.policy import Candidate, Policy, PolicyError, Request
from asmopt.model.settings import Settings, SettingsError, Target, has_main, load_config

if TYPE_CHECKING:
    from asmopt.executor.profile import Profile
    from asmopt.model.portfolio import SoFar

# (stage, message); the stages are "baseline", "generate", "verify" and "benchmark".
Progress = Callable[[str, str], None]


class OptimizeError(RuntimeError):
    """The job cannot run; the message is for the user and says what to do."""


@dataclass(frozen=True)
class OptimizeRequest:
    """Optimize ``function`` (None: the whole file) of ``source``."""

    source: Path
    function: str | None
    settings: Settings = field(default_factory=Settings)
    target: Target | None = None
    workspace: Path | None = None


@dataclass(frozen=True)
class RankedCandidate:
    """A verified candidate, as the CLI table and the editor show it."""

    candidate: Candidate
    result: VerificationResult
    kind: str = "candidate"  # candidate | function | mix
    sources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "candidate": {
                "asm": c.asm,
                "policy": c.policy,
                "label": c.label,
                "function": c.function,
                "portable": c.portable,
            },
            "result": self.result.to_dict(),
            "kind": self.kind,
            "sources": dict(self.sources),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RankedCandidate:
        c = data["candidate"]
        candidate = Candidate(
            asm=c["asm"],
            policy=c["policy"],
            label=c.get("label", ""),
            function=c.get("function"),
            portable=c.get("portable", True),
        )
        result = VerificationResult.from_dict(data["result"])
        return cls(candidate, result, data.get("kind", "candidate"), dict(data.get("sources", {})))


@dataclass(frozen=True)
class OptimizeOutcome:
    """The ranked result of one job; ``winner`` is None unless a candidate passed every test
    and is measurably faster than the baseline."""

    winner: RankedCandidate | None
    candidates: tuple[RankedCandidate, ...]
    baseline_asm: str
    function: str | None
    message: str
    target: str = ""
    unusable: tuple[str, ...] = ()  # why some proposals were not candidates
    notes: tuple[str, ...] = ()
    cancelled: bool = False
    # Set when the job stopped before optimizing because the program's run is start-up and
    # libc (one line saying so); ``profile`` is the instruction profile that showed it.
    startup_bound: str = ""
    profile: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "startup_bound": self.startup_bound,
            "profile": self.profile,
            "winner": self.winner.to_dict() if self.winner else None,
            "candidates": [c.to_dict() for c in self.candidates],
            "baseline_asm": self.baseline_asm,
            "function": self.function,
            "message": self.message,
            "target": self.target,
            "unusable": list(self.unusable),
            "notes": list(self.notes),
            "cancelled": self.cancelled,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OptimizeOutcome:
        winner = RankedCandidate.from_dict(data["winner"]) if data.get("winner") else None
        return cls(
            winner=winner,
            candidates=tuple(RankedCandidate.from_dict(c) for c in data.get("candidates", ())),
            baseline_asm=data.get("baseline_asm", ""),
            function=data.get("function"),
            message=data.get("message", ""),
            target=data.get("target", ""),
            unusable=tuple(data.get("unusable", ())),
            notes=tuple(data.get("notes", ())),
            cancelled=data.get("cancelled", False),
            startup_bound=data.get("startup_bound", ""),
            profile=data.get("profile"),
        )


class _EveryVariant:
    """Compiler search tries all of its variants: ``samples`` is the LLMs' sample count."""

    name = "compiler"

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def propose(self, request: Request, n: int = 1) -> list[Any]:
        return self.inner.propose(request, max(n, len(self.inner.variants_for(request))))

    def propose_iter(self, request: Request, n: int = 1) -> Any:
        return self.inner.propose_iter(request, max(n, len(self.inner.variants_for(request))))


def make_policies(settings: Settings) -> list[Policy]:
    """The policies ``settings`` asks for, ready to propose. LLM back-ends load lazily."""
    from asmopt.model.compiler_search import CompilerSearchPolicy

    policies: list[Policy] = []
    for name in settings.effective_policies():
        if name == "compiler":
            policies.append(_EveryVariant(CompilerSearchPolicy()))
            continue
        from asmopt.model.backends.factory import make_backend
        from asmopt.model.llm_policy import LLMPolicy

        opts: dict[str, Any] = {}
        if name == "openai":
            opts["timeout"] = settings.llm_timeout
        backend = make_backend(name, settings.model, settings.endpoint, **opts)
        policies.append(
            LLMPolicy(
                backend, temperature=settings.temperature, max_new_tokens=settings.max_new_tokens
            )
        )
    return policies


def verify_options(settings: Settings, target: Target | None = None) -> VerifyOptions:
    """The executor's options for ``settings`` (and the target's own choices)."""
    compare = (target.compare if target and target.compare else None) or settings.compare
    return VerifyOptions(
        comparator=Comparator(mode=compare, rel_tol=settings.tolerance),  # type: ignore[arg-type]
        limits=SandboxLimits(
            wall_seconds=settings.test_timeout,
            cpu_seconds=int(settings.test_timeout) + 1,
            output_bytes=settings.max_output_mb * MiB,
            memory_bytes=settings.memory_mb * MiB,
        ),
        bench=BenchmarkOptions(
            target_rel_ci=settings.ci_target, budget_seconds=settings.bench_budget
        ),
        timed_tests=target.benchmark_tests if target else None,
        ldflags=target.ldflags if target else ("-lm",),
    )


def resolve_target(request: OptimizeRequest) -> Target:
    source = request.source.resolve()
    if request.target is not None:
        return request.target
    workspace = request.workspace or source.parent
    try:
        config = load_config(workspace)
    except SettingsError as err:
        raise OptimizeError(str(err)) from err
    target = config.target_for(source)
    assert target is not None  # target_for always falls back to the default target
    return target


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
    after ``cancel`` the outcome holds what was verified until then.

    Before asking any policy, a program whose quickest test is short is profiled
    (callgrind instructions); when its own code executes only a small share of them, the
    job stops with one line saying so (``startup_bound``), unless ``settings.go_on``.
    """
    from asmopt.model import portfolio

    settings = request.settings
    source = request.source.resolve()
    say: Progress = progress or (lambda _stage, _msg: None)
    if not source.exists():
        raise OptimizeError(f"{source} does not exist")
    if source.suffix not in (".c", ".s", ".S", ".asm"):
        raise OptimizeError(f"{source.name}: asmopt optimizes C (.c) and assembly (.s) files")
    target = resolve_target(request)
    if target.tests is None:
        raise OptimizeError(
            f"no tests found for {source.name}: put NAME.in (and optionally NAME.out) files in "
            f"a tests/ folder beside it, or name a tests directory in asmopt.toml ([[target]] "
            f"tests = ...)"
        )
    try:
        tests = load_tests(target.tests)
    except TestSetError as err:
        raise OptimizeError(str(err)) from err

    c_source = source.read_text(errors="replace") if source.suffix == ".c" else None
    other_sources = [s for s in target.sources if s.resolve() != source]
    main_elsewhere = any(
        s.suffix == ".c" and has_main(s.read_text(errors="replace")) for s in other_sources
    )
    if c_source is not None and not has_main(c_source) and not main_elsewhere:
        raise OptimizeError(
            f"{source.name} has no main(): a program with tests is needed. Add the file that "
            "holds main to the target's sources in asmopt.toml"
        )

    compiler = target.compiler or settings.compiler
    cflags = target.cflags or settings.cflags
    options = verify_options(settings, target)
    try:
        chosen = policies if policies is not None else make_policies(settings)
    except PolicyError as err:
        raise OptimizeError(str(err)) from err

    try:
        sandbox = Sandbox(options.limits, enabled=settings.sandbox)
    except SandboxError as err:
        raise OptimizeError(str(err)) from err
    try:
        with tempfile.TemporaryDirectory(prefix="asmopt-opt-") as tmp:
            work = Path(tmp)
            extra = _build_other_sources(other_sources, work, compiler, cflags)
            if extra:
                options = _with_extra_inputs(options, extra)
            say(
                "baseline",
                f"{compiler} {' '.join(cflags)}: building and running {len(tests)} tests",
            )
            try:
                baseline = prepare_baseline(
                    source, tests, work / "baseline", sandbox, compiler=compiler,
                    cflags=cflags, options=options,
                )  # fmt: skip
            except BaselineError as err:
                raise OptimizeError(str(err)) from err
            if request.function is not None:
                _check_function(baseline.asm, request.function, c_source)
            if not settings.go_on:
                bound, profile = _startup_bound(baseline, sandbox, say)
                if bound:
                    return OptimizeOutcome(
                        winner=None,
                        candidates=(),
                        baseline_asm=baseline.asm,
                        function=request.function,
                        message=f"{source.name}: {bound}; not optimized (--go-on to try anyway)",
                        target=target.name,
                        startup_bound=bound,
                        profile=profile,
                    )
            portfolio_request = Request(
                baseline_asm=baseline.asm,
                c_source=c_source,
                function=request.function,
                source_path=source,
                cflags=tuple(cflags),
                tests_dir=target.tests,
                allow_native=settings.allow_native,
                march_level=settings.march_level,
            )

            def report(message: str) -> None:
                lowered = message.lower()
                if lowered.startswith("asking"):
                    say("generate", message)
                elif "benchmark" in lowered:
                    say("benchmark", message)
                else:
                    say("verify", message)

            try:
                result = portfolio.optimize(
                    portfolio_request, chosen, baseline, sandbox, options, store=store,
                    workers=settings.workers or None, proposals_per_policy=settings.samples,
                    progress=report, cancel=cancel,
                    record={"target": target.name, "source": str(source)},
                    racing=portfolio.DEFAULT_RACING if settings.racing else None,
                    on_update=on_update,
                )  # fmt: skip
            except PolicyError as err:
                raise OptimizeError(str(err)) from err
    finally:
        sandbox.close()

    broken = [u for u in result.unusable if " cannot run: " in u.reason]
    if strict and broken:
        raise OptimizeError("; ".join(u.reason for u in broken))
    ranked = tuple(RankedCandidate(t.candidate, t.result, t.kind, dict(t.sources))
                   for t in result.trials)  # fmt: skip
    winner = None
    if result.winner is not None:
        winner = next(r for r in ranked if r.result is result.winner.result)
    return OptimizeOutcome(
        winner=winner,
        candidates=ranked,
        baseline_asm=baseline.asm,
        function=request.function,
        message=result.message,
        target=target.name,
        unusable=tuple(f"{u.policy}: {u.reason}" for u in result.unusable),
        notes=tuple(result.notes),
        cancelled=result.cancelled,
    )


# A program whose quickest test runs longer than this (at full speed) is not start-up bound,
# and profiling it would cost more than the check is worth.
STARTUP_CHECK_MAX_SECONDS = 0.1


def _startup_bound(
    baseline: Baseline, sandbox: Sandbox, say: Progress
) -> tuple[str, dict[str, Any] | None]:
    """The one line saying the run is start-up and libc, from the instruction profile of the
    quickest test, or "" (also when valgrind cannot count, or the test is long)."""
    from asmopt.executor.callgrind import CallgrindError
    from asmopt.executor.profile import profile_binary
    from asmopt.executor.toolchain import ToolNotFoundError

    quickest = min(baseline.tests, key=lambda t: baseline.wall_seconds.get(t.name, 0.0))
    if baseline.wall_seconds.get(quickest.name, 0.0) > STARTUP_CHECK_MAX_SECONDS:
        return "", None
    say("baseline", f"profiling test {quickest.name} (callgrind instructions)")
    try:
        profile = profile_binary(sandbox, baseline.binary, [quickest], workers=1, timeout=30)
    except (CallgrindError, ToolNotFoundError, SandboxError):
        return "", None
    bound = profile.startup_bound()
    return bound, profile.to_dict() if bound else None


def profile_program(
    request: OptimizeRequest, *, budget: float = 8.0, every_test: bool = False
) -> tuple[str, Profile]:
    """The instruction profile of ``request``'s program (its ``gcc -O3`` baseline build) on
    the quickest of its tests that fit ``budget`` seconds of callgrind (``every_test``: all);
    returns the target's name and the profile. Raises ``OptimizeError`` with what to do."""
    from asmopt.executor.callgrind import CallgrindError
    from asmopt.executor.profile import profile_binary
    from asmopt.executor.toolchain import ToolNotFoundError

    settings = request.settings
    source = request.source.resolve()
    if not source.exists():
        raise OptimizeError(f"{source} does not exist")
    target = resolve_target(request)
    if target.tests is None:
        raise OptimizeError(
            f"no tests found for {source.name}: put NAME.in files in a tests/ folder beside it"
        )
    try:
        tests = load_tests(target.tests)
    except TestSetError as err:
        raise OptimizeError(str(err)) from err
    options = verify_options(settings, target)
    compiler = target.compiler or settings.compiler
    cflags = target.cflags or settings.cflags
    try:
        sandbox = Sandbox(options.limits, enabled=settings.sandbox)
    except SandboxError as err:
        raise OptimizeError(str(err)) from err
    try:
        with tempfile.TemporaryDirectory(prefix="asmopt-profile-") as tmp:
            other = [s for s in target.sources if s.resolve() != source]
            extra = _build_other_sources(other, Path(tmp), compiler, cflags)
            if extra:
                options = _with_extra_inputs(options, extra)
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


def _check_function(asm: str, name: str, c_source: str | None) -> None:
    functions = parse_functions(asm)
    names = [f.name for f in functions]
    if name in names:
        if name != "main" and not _called_elsewhere(asm, name, functions):
            raise OptimizeError(
                f"gcc inlined `{name}` into its callers at -O3: its out-of-line copy is never "
                "called, so a faster version of it alone cannot make the program faster; optimize "
                "the caller or the whole file (or mark it __attribute__((noinline)))"
            )
        return
    if c_source is not None and name in c_source:
        raise OptimizeError(
            f"gcc inlined `{name}` into its callers at -O3, so it has no code of its own; "
            "optimize the caller or the whole file"
        )
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else f" Functions: {', '.join(names)}"
    raise OptimizeError(f"no function `{name}` in the program.{hint}")


def _called_elsewhere(asm: str, name: str, functions: list) -> bool:
    """Does any code outside ``name``'s own family refer to it (call, jump, address taken)?"""
    lines = asm.splitlines()
    own = [f for f in functions if f.name == name or f.parent == name]
    keep = [
        line for i, line in enumerate(lines) if not any(f.start_line <= i < f.end_line for f in own)
    ]
    return name in referenced_symbols("\n".join(keep))


def _build_other_sources(
    sources: list[Path], work: Path, compiler: str, cflags: tuple[str, ...]
) -> list[Path]:
    """The target's other C sources, compiled once to assembly with the baseline flags and
    linked unchanged into the baseline and every candidate."""
    built = []
    for i, src in enumerate(sources):
        if src.suffix in (".s", ".S", ".o"):
            built.append(src)
            continue
        out = work / f"extra{i}-{src.stem}.s"
        result = compile_to_asm(src, out, compiler=compiler, flags=cflags)
        if not result.ok:
            raise OptimizeError(f"{src.name} does not compile: {result.stderr.strip()[:300]}")
        built.append(out)
    return built


def _with_extra_inputs(options: VerifyOptions, extra: list[Path]) -> VerifyOptions:
    from dataclasses import replace

    return replace(options, extra_inputs=tuple(extra))
