"""The "Optimize function" job as one call, shared by `asmopt optimize` and the language server.

``optimize(OptimizeRequest(...))`` resolves the target (``asmopt.toml`` or the defaults),
loads its tests, builds the ``gcc -O3`` baseline in the sandbox, asks every configured policy
for candidates, verifies and benchmarks them (``portfolio.optimize``), and returns the ranked
result. Everything a user can get wrong ends in an ``OptimizeError`` whose message says what
to do; nothing is written outside the workspace's ``.asmopt/`` store.

LLM policies run as :class:`~asmopt.model.search.refine.RefiningPolicy`: once the baseline is built,
each answer is verified and the findings go back to the model for ``refine_rounds``
revisions; every answer of every round is ranked with the other candidates, and every raw
answer is kept in :attr:`OptimizeOutcome.answers`.

A project's sources are compiled with their own flags from its ``compile_commands.json``
(``compile_db.py``); a target's tests may be commands (``test_command``, ``bench_command``)
run in the sandbox with the target's folder read-only; a library file (no ``main``) is
optimized through the target whose program calls it, and a program that never calls the
function is refused with a message (its tests pass with the function made to trap).
"""

from __future__ import annotations

import difflib
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmopt.executor.asmfile import parse_functions, referenced_symbols
from asmopt.executor.benchmark import BenchmarkOptions
from asmopt.executor.command_tests import (
    CommandSpec,
    CommandTestError,
    CommandTests,
    command_tests,
)
from asmopt.executor.judge import Judge
from asmopt.executor.results import Verdict
from asmopt.executor.sandbox import MiB, Sandbox, SandboxError, SandboxLimits
from asmopt.executor.store import ResultStore
from asmopt.executor.testcases import Comparator, TestCase, TestSetError, load_tests
from asmopt.executor.toolchain import compile_to_asm
from asmopt.executor.verify import (
    Baseline,
    BaselineError,
    VerificationResult,
    VerifyOptions,
    prepare_baseline,
)
from asmopt.model.search.compile_db import (
    CompileDb,
    CompileDbError,
    absolute_paths,
    find_compile_db,
    load_compile_db,
)
from asmopt.model.search.policy import Candidate, Policy, PolicyError, Request
from asmopt.model.search.refine import ModelAnswer, RefiningPolicy
from asmopt.model.settings import (
    CONFIG_FILE,
    Config,
    Settings,
    SettingsError,
    Target,
    config_root,
    has_main,
    load_config,
    starter_target,
)

if TYPE_CHECKING:
    from asmopt.executor.profile import Profile
    from asmopt.model.search.portfolio import SoFar

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
    answers: tuple[ModelAnswer, ...] = ()  # every raw answer of the LLM policies, by round
    # How the target was chosen and built (which of several, sources without flags of their
    # own in compile_commands.json): shown with the result.
    target_notes: tuple[str, ...] = ()

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
            "answers": [a.to_dict() for a in self.answers],
            "target_notes": list(self.target_notes),
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
            answers=tuple(ModelAnswer.from_dict(a) for a in data.get("answers", ())),
            target_notes=tuple(data.get("target_notes", ())),
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
    return _resolve(request)[0]


def _resolve(request: OptimizeRequest) -> tuple[Target, Config]:
    """The target that builds the request's file and the ``asmopt.toml`` it comes from (the
    nearest one upwards from the file, within the workspace)."""
    source = request.source.resolve()
    root = config_root(source, request.workspace)
    try:
        config = load_config(root)
    except SettingsError as err:
        raise OptimizeError(str(err)) from err
    if request.target is not None:
        return request.target, config
    target = config.target_for(source)
    assert target is not None  # target_for always falls back to the default target
    return target, config


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
    from asmopt.model.search import portfolio

    settings = request.settings
    source = request.source.resolve()
    say: Progress = progress or (lambda _stage, _msg: None)
    if not source.exists():
        raise OptimizeError(f"{source} does not exist")
    if source.suffix not in (".c", ".s", ".S", ".asm"):
        raise OptimizeError(f"{source.name}: asmopt optimizes C (.c) and assembly (.s) files")
    target, config = _resolve(request)
    chosen_note: tuple[str, ...] = ()
    containing = config.targets_containing(source)
    if request.target is None and len(containing) > 1:
        names = ", ".join(t.name for t in containing)
        chosen_note = (
            f"{source.name} is in targets {names}; used {target.name} (choose with --target)",
        )
    c_source = source.read_text(errors="replace") if source.suffix == ".c" else None
    other_sources = [s for s in target.sources if s.resolve() != source]
    missing = [s for s in other_sources if not s.exists()]
    if missing:
        raise OptimizeError(
            f"target {target.name!r} in {config.root / CONFIG_FILE} lists {missing[0]}, which "
            "does not exist; fix its sources"
        )
    main_elsewhere = any(
        s.suffix == ".c" and has_main(s.read_text(errors="replace")) for s in other_sources
    )
    if c_source is not None and not has_main(c_source) and not main_elsewhere:
        raise OptimizeError(_no_program_message(source, target, config))
    options = verify_options(settings, target)
    commands: CommandTests | None = None
    if target.has_commands:
        plain = _load_tests(target.tests) if target.tests is not None else []
        commands, options = _command_tests(target, config, options, plain)
        tests = list(commands.tests)
    elif target.tests is None:
        raise OptimizeError(
            f"no tests found for {source.name}: put NAME.in (and optionally NAME.out) files in "
            f"a tests/ folder beside it, or name a tests directory in asmopt.toml ([[target]] "
            f"tests = ...), or give the target a test_command"
        )
    else:
        tests = _load_tests(target.tests)

    compiler = target.compiler or settings.compiler
    project = _ProjectFlags(config, target, settings)
    cflags = project.flags_for(source)
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
            extra = _build_other_sources(other_sources, work, compiler, project)
            if extra:
                options = _with_extra_inputs(options, extra)
            say(
                "baseline",
                f"{compiler} {' '.join(_shown(cflags))}: building and running {len(tests)} "
                f"test{'s' if len(tests) != 1 else ''}",
            )
            try:
                baseline = prepare_baseline(
                    source, tests, work / "baseline", sandbox, compiler=compiler,
                    cflags=cflags, options=options,
                )  # fmt: skip
            except BaselineError as err:
                message = str(err)
                if err.stage == "compile":
                    message = project.explain(source, message)
                if commands is not None and err.stage == "test":
                    message += (
                        f"\nThe gcc -O3 build must pass the commands of [[target]] {target.name} "
                        f"in {config.root / CONFIG_FILE}: fix test_command / bench_command (they "
                        f"run in the sandbox, in {target.root or config.root} made read-only, "
                        "with the built program as {bin})"
                    )
                raise OptimizeError(message) from err
            others = [p.read_text(errors="replace") for p in extra if p.suffix in (".s", ".S")]
            if request.function is not None:
                _check_function(baseline.asm, request.function, c_source, others)
            if "main" not in {f.name for f in parse_functions(baseline.asm)}:
                say("baseline", "checking that the tests call the code of this file")
                _check_tests_call(baseline, request.function, target, sandbox, options, cancel)
            # Command tests run the program through a shell: no single run to profile.
            if not settings.go_on and commands is None:
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
                if lowered.startswith(("asking", "generating")):
                    say("generate", message)
                elif "benchmark" in lowered:
                    say("benchmark", message)
                else:
                    say("verify", message)

            chosen = _with_refinement(
                chosen, settings, baseline, sandbox, options, store, report, cancel,
                {"target": target.name, "source": str(source)},
            )  # fmt: skip

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
        target_notes=chosen_note + tuple(project.notes),
        cancelled=result.cancelled,
        answers=tuple(a for p in chosen if isinstance(p, RefiningPolicy) for a in p.answers),
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
    target, config = _resolve(request)
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


def _with_refinement(
    policies: list[Policy],
    settings: Settings,
    baseline: Any,
    sandbox: Sandbox,
    options: VerifyOptions,
    store: ResultStore | None,
    report: Callable[[str], None],
    cancel: threading.Event | None,
    record: dict[str, str],
) -> list[Policy]:
    """LLM policies wrapped to verify and revise their answers (``settings.refine_rounds``
    times; 0 still records the raw answers), reporting tokens and rounds to ``report``."""
    from asmopt.model.search.llm_policy import LLMPolicy

    judge = Judge(baseline, sandbox, options, store)

    def verify(candidate: Candidate) -> VerificationResult:
        meta = {"policy": candidate.policy, "label": candidate.label,
                "function": candidate.function, "kind": "candidate",
                "portable": candidate.portable, **record}  # fmt: skip
        return judge.judge(candidate.asm, meta=meta, cancel=cancel)

    wrapped: list[Policy] = []
    for policy in policies:
        if isinstance(policy, LLMPolicy):
            name = policy.name
            policy.progress = lambda m, name=name: report(f"generating ({name}): {m}")
            policy = RefiningPolicy(
                policy, settings.refine_rounds, verify, baseline=baseline, progress=report,
                workers=settings.workers or os.cpu_count() or 1, cancel=cancel,
            )  # fmt: skip
        wrapped.append(policy)
    return wrapped


def _check_function(asm: str, name: str, c_source: str | None, others: Sequence[str] = ()) -> None:
    """Refuse a function that has no code of its own or that nothing in the program calls;
    ``others`` are the assembly texts of the program's other sources."""
    functions = parse_functions(asm)
    names = [f.name for f in functions]
    if name in names:
        if any(name in referenced_symbols(text) for text in others):
            return
        if name != "main" and not _called_elsewhere(asm, name, functions):
            if c_source is not None and not has_main(c_source):
                raise OptimizeError(
                    f"nothing in the target's program calls `{name}`: neither this file nor "
                    "the other sources of the target (its test runner or benchmark) refer to "
                    f"it, so a faster `{name}` cannot make the program faster. Add the file "
                    "that calls it to the target's sources in asmopt.toml"
                )
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
    sources: list[Path], work: Path, compiler: str, project: _ProjectFlags
) -> list[Path]:
    """The target's other C sources, compiled once to assembly, each with its own flags (see
    :class:`_ProjectFlags`), and linked unchanged into the baseline and every candidate."""
    built = []
    for i, src in enumerate(sources):
        if src.suffix in (".s", ".S", ".o"):
            built.append(src)
            continue
        out = work / f"extra{i}-{src.stem}.s"
        result = compile_to_asm(src, out, compiler=compiler, flags=project.flags_for(src))
        if not result.ok:
            raise OptimizeError(
                project.explain(src, f"{src.name} does not compile: {result.stderr.strip()[:300]}")
            )
        built.append(out)
    return built


class _ProjectFlags:
    """Each source's flags: its own from the project's ``compile_commands.json`` (when there
    is one and it lists the source) with the optimization flags of the target or settings
    (``-O3``), else those flags alone; ``notes`` says which sources had no entry."""

    def __init__(self, config: Config, target: Target, settings: Settings) -> None:
        # A target's cflags are written relative to its asmopt.toml: -Iinclude works from
        # wherever asmopt runs.
        self.optimization = absolute_paths(target.cflags or settings.cflags, config.root)
        self.root = config.root
        self.notes: list[str] = []
        self.db: CompileDb | None = None
        try:
            path = find_compile_db(config.root, settings.compile_commands)
            self.db = load_compile_db(path) if path is not None else None
        except CompileDbError as err:
            raise OptimizeError(str(err)) from err
        self._missing: set[Path] = set()

    def flags_for(self, source: Path) -> tuple[str, ...]:
        if self.db is None:
            return self.optimization
        try:
            own = self.db.flags_for(source)
        except CompileDbError as err:
            raise OptimizeError(f"{self.db.path}: {err}") from err
        if own is not None:
            return (*own, *self.optimization)
        if source not in self._missing:
            self._missing.add(source)
            self.notes.append(
                f"{self.db.path} has no entry for {source}: built with "
                f"{' '.join(self.optimization)} alone"
            )
        return self.optimization

    def explain(self, source: Path, message: str) -> str:
        """``message`` about a failed build of ``source``, with what to change when the
        compilation database is the likely cause."""
        if self.db is None:
            return (
                f"{message}\nNo compile_commands.json was found in {self.root} or "
                f"{self.root / 'build'}, so {source.name} was built with "
                f"{' '.join(self.optimization)} alone: build the project with compile commands "
                "exported (cmake -DCMAKE_EXPORT_COMPILE_COMMANDS=ON, meson, bear -- make) and "
                "set compile_commands in asmopt.toml to its folder, or give the target cflags"
            )
        if self.db.entry_for(source) is not None:
            return message
        stale = [e.file for e in self.db.entries if not e.file.exists()]
        if self.db.entries and len(stale) == len(self.db.entries):
            why = (
                f"{self.db.path} names only files that do not exist (such as {stale[0]}): it "
                "was made for another checkout; build the project again to regenerate it"
            )
        else:
            why = (
                f"{self.db.path} has no entry for {source}, so it was built without the "
                "project's include paths and defines; add it to the build (CMake, Meson, "
                "Make with bear) and regenerate compile_commands.json"
            )
        return f"{message}\n{why}"


def _shown(flags: Sequence[str], limit: int = 8) -> list[str]:
    """Flags for a progress line: the first few, then how many more."""
    flags = list(flags)
    return flags if len(flags) <= limit else [*flags[:limit], f"(+{len(flags) - limit} more)"]


def _load_tests(folder: Path) -> list[TestCase]:
    try:
        return load_tests(folder)
    except TestSetError as err:
        raise OptimizeError(str(err)) from err


def _command_tests(
    target: Target, config: Config, options: VerifyOptions, plain: list[TestCase]
) -> tuple[CommandTests, VerifyOptions]:
    """The target's test and benchmark commands as tests (after the ``plain`` tests of its
    test folder), and the options that run them in the sandbox with the target's folder
    read-only (less the result store and the files of expected output)."""
    from dataclasses import replace

    root = target.root or config.root
    where = f"[[target]] {target.name} in {config.root / CONFIG_FILE}"
    specs: list[CommandSpec] = []
    hide = [".asmopt"]  # earlier verdicts
    if target.tests is not None and target.tests.resolve().is_relative_to(root):
        hide.append(target.tests.resolve().relative_to(root).as_posix())  # their answers
    for kind, command, output in (
        ("test", target.test_command, target.test_output),
        ("bench", target.bench_command, target.bench_output),
    ):
        if command is None:
            continue
        same = (command, output) == (target.test_command, target.test_output)
        if kind == "bench" and specs and same:
            break  # the same command: its test run is the timed one
        expected = None
        if output is not None and output != "ignore":
            path = (root / output).resolve()
            if not path.is_file():
                raise OptimizeError(
                    f"{where}: {kind}_output = {output!r} names no file ({path}); give the "
                    f'file of the expected output, or "ignore" to check the exit status only'
                )
            expected = path.read_bytes()
            if path.is_relative_to(root):
                hide.append(path.relative_to(root).as_posix())
        specs.append(CommandSpec(f"{kind}_command", command, expected, output == "ignore"))
    try:
        made = command_tests(specs, plain)
    except CommandTestError as err:
        raise OptimizeError(f"{where}: {err}") from err
    timed = ("bench_command",) if any(s.name == "bench_command" for s in specs) else None
    return made, replace(
        options,
        launcher=made.launcher,
        files=root,
        hide=tuple(hide),
        timed_tests=timed if timed is not None else options.timed_tests,
    )


def _no_program_message(source: Path, target: Target, config: Config) -> str:
    """What to do about a file without ``main`` that no configured program includes."""
    try:
        shown = source.relative_to(config.root)
    except ValueError:
        shown = source
    if target.root is None:  # no [[target]] lists the file
        return (
            f"{shown} has no main() and no [[target]] in {config.root / CONFIG_FILE} lists it: "
            "asmopt optimizes a library function through a program that calls it (your test "
            "runner or benchmark). Declare one in asmopt.toml, for example:\n\n"
            + starter_target(source, config.root)
        )
    return (
        f"{shown} has no main() and neither has any other source of target {target.name!r}: "
        "add the file that holds main (the test runner or benchmark that calls it) to the "
        f"target's sources in {config.root / CONFIG_FILE}"
    )


def _check_tests_call(
    baseline: Baseline,
    function: str | None,
    target: Target,
    sandbox: Sandbox,
    options: VerifyOptions,
    cancel: threading.Event | None,
) -> None:
    """Refuse a program whose tests never run ``function`` (or, for a whole file, any of its
    functions): built with that code trapping on entry (``ud2``), every test still passes."""
    functions = parse_functions(baseline.asm)
    if function is not None:
        chosen = [f for f in functions if function in (f.name, f.parent)]
    else:
        chosen = [f for f in functions if f.section.startswith(".text")]
    if not chosen:
        return
    lines = baseline.asm.splitlines(keepends=True)
    for f in sorted(chosen, key=lambda f: f.label_line, reverse=True):
        lines.insert(f.label_line + 1, "\tud2\n")
    trapped = "".join(lines)
    tests_only = Judge(baseline, sandbox, options).with_options(measure=False)
    result = tests_only.judge(trapped, cancel=cancel)
    if result.verdict is Verdict.BUILD_FAILED or not result.all_passed:
        return
    what = f"`{function}`" if function else f"any function of {baseline.source.name}"
    raise OptimizeError(
        f"the tests of target {target.name!r} never call {what}: they pass even when it "
        "crashes on entry, so they can neither check a faster version nor time it. Make the "
        "test or bench command run the program that calls it ({bin}), or list the file that "
        "calls it in the target's sources"
    )


def _with_extra_inputs(options: VerifyOptions, extra: list[Path]) -> VerifyOptions:
    from dataclasses import replace

    return replace(options, extra_inputs=tuple(extra))
