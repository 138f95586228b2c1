"""Everything an "Optimize" job needs before any policy runs: the request, its target and
``asmopt.toml``, its tests, each source's flags, and the ``gcc -O3`` baseline that every
candidate is judged against (:func:`prepare`, then :func:`build_baseline`).

Everything a user can get wrong here ends in an ``OptimizeError`` whose message says what to
do: a file that is not C or assembly, a library file no program calls, a target whose sources
or tests are missing, a baseline that does not build or pass its own tests (``stage``
``baseline``), a function gcc inlined or that the tests never call.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

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
from asmopt.executor.testcases import Comparator, TestCase, TestSetError, load_tests
from asmopt.executor.toolchain import compile_to_asm
from asmopt.executor.verify import (
    Baseline,
    BaselineError,
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
from asmopt.model.search.outcome import OptimizeError
from asmopt.model.search.stages import Progress, Stage
from asmopt.model.settings import (
    CONFIG_FILE,
    Config,
    Settings,
    SettingsError,
    Target,
    Workspace,
    has_main,
    starter_target,
)

SOURCE_SUFFIXES = (".c", ".s", ".S", ".asm")


@dataclass(frozen=True)
class OptimizeRequest:
    """Optimize ``function`` (None: the whole file) of ``source``.

    ``workspace`` bounds the search for ``asmopt.toml`` (the editor's folder); ``config`` is
    the ``asmopt.toml`` already read for this request (read here when None), so that it is
    parsed once."""

    source: Path
    function: str | None
    settings: Settings = field(default_factory=Settings)
    target: Target | None = None
    workspace: Path | None = None
    config: Config | None = None


@dataclass(frozen=True)
class Prepared:
    """A checked request: what to build, how, and with which tests."""

    source: Path
    function: str | None
    settings: Settings
    target: Target
    config: Config
    c_source: str | None  # the file's text when it is C
    other_sources: tuple[Path, ...]  # the target's other sources, linked unchanged
    tests: tuple[TestCase, ...]
    commands: CommandTests | None  # the target's test/bench commands, when it has any
    options: VerifyOptions
    compiler: str
    project: _ProjectFlags
    cflags: tuple[str, ...]
    target_notes: tuple[str, ...] = ()  # which of several targets was used


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


def resolve(request: OptimizeRequest) -> tuple[Target, Config]:
    """The target that builds the request's file and the ``asmopt.toml`` it comes from (the
    nearest one upwards from the file, within the workspace: :class:`Workspace`)."""
    source = request.source.resolve()
    config = request.config
    if config is None:
        try:
            config = Workspace.of(source, request.workspace).config
        except SettingsError as err:
            raise OptimizeError(str(err)) from err
    if request.target is not None:
        return request.target, config
    target = config.target_for(source)
    assert target is not None  # target_for always falls back to the default target
    return target, config


def prepare(request: OptimizeRequest) -> Prepared:
    """Check the request and gather what the job builds and runs; nothing is built yet."""
    source = request.source.resolve()
    if not source.exists():
        raise OptimizeError(f"{source} does not exist")
    if source.suffix not in SOURCE_SUFFIXES:
        raise OptimizeError(f"{source.name}: asmopt optimizes C (.c) and assembly (.s) files")
    target, config = resolve(request)
    notes: tuple[str, ...] = ()
    containing = config.targets_containing(source)
    if request.target is None and len(containing) > 1:
        names = ", ".join(t.name for t in containing)
        notes = (f"{source.name} is in targets {names}; used {target.name} (choose with --target)",)
    c_source = source.read_text(errors="replace") if source.suffix == ".c" else None
    others = tuple(s for s in target.sources if s.resolve() != source)
    missing = [s for s in others if not s.exists()]
    if missing:
        raise OptimizeError(
            f"target {target.name!r} in {config.root / CONFIG_FILE} lists {missing[0]}, which "
            "does not exist; fix its sources"
        )
    main_elsewhere = any(
        s.suffix == ".c" and has_main(s.read_text(errors="replace")) for s in others
    )
    if c_source is not None and not has_main(c_source) and not main_elsewhere:
        raise OptimizeError(_no_program_message(source, target, config))
    settings = request.settings
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
    project = _ProjectFlags(config, target, settings)
    return Prepared(
        source=source, function=request.function, settings=settings, target=target,
        config=config, c_source=c_source, other_sources=others, tests=tuple(tests),
        commands=commands, options=options, compiler=target.compiler or settings.compiler,
        project=project, cflags=project.flags_for(source), target_notes=notes,
    )  # fmt: skip


def open_sandbox(job: Prepared) -> Sandbox:
    try:
        return Sandbox(job.options.limits, enabled=job.settings.sandbox)
    except SandboxError as err:
        raise OptimizeError(str(err)) from err


def build_baseline(
    job: Prepared,
    work: Path,
    sandbox: Sandbox,
    say: Progress,
    cancel: threading.Event | None = None,
    *,
    checks: bool = True,
) -> tuple[Prepared, Baseline]:
    """Build the target's other sources and the ``gcc -O3`` baseline in ``work`` and run its
    tests; with ``checks``, refuse a function gcc inlined or the tests never call. Returns
    the job with the built sources among its inputs, and the baseline."""
    extra = _build_other_sources(list(job.other_sources), work, job.compiler, job.project)
    if extra:
        job = replace(job, options=replace(job.options, extra_inputs=tuple(extra)))
    count = len(job.tests)
    say(
        Stage.BASELINE,
        f"{job.compiler} {' '.join(_shown(job.cflags))}: building and running {count} "
        f"test{'s' if count != 1 else ''}",
    )
    try:
        baseline = prepare_baseline(
            job.source, list(job.tests), work / "baseline", sandbox, compiler=job.compiler,
            cflags=job.cflags, options=job.options,
        )  # fmt: skip
    except BaselineError as err:
        message = str(err)
        if err.stage == "compile":
            message = job.project.explain(job.source, message)
        if job.commands is not None and err.stage == "test":
            message += (
                f"\nThe gcc -O3 build must pass the commands of [[target]] {job.target.name} "
                f"in {job.config.root / CONFIG_FILE}: fix test_command / bench_command (they "
                f"run in the sandbox, in {job.target.root or job.config.root} made read-only, "
                "with the built program as {bin})"
            )
        raise OptimizeError(message, stage=Stage.BASELINE) from err
    if not checks:
        return job, baseline
    others = [p.read_text(errors="replace") for p in extra if p.suffix in (".s", ".S")]
    if job.function is not None:
        _check_function(baseline.asm, job.function, job.c_source, others)
    if "main" not in {f.name for f in parse_functions(baseline.asm)}:
        say(Stage.BASELINE, "checking that the tests call the code of this file")
        _check_tests_call(baseline, job.function, job.target, sandbox, job.options, cancel)
    return job, baseline


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
