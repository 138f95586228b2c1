# Over 500 lines: the steps of one verdict, in the order they run, read top to bottom.
"""The whole verdict on one candidate: build, run every test in the sandbox, benchmark.

``prepare_baseline`` builds the ``gcc -O3`` reference once (assembly, binary, expected
outputs); ``verify_candidate`` then judges any number of candidate assembly files against it.
Results are remembered in the workspace store so that the same candidate is never verified
twice.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from asmopt.executor.benchmark import (
    WITHDRAWN,
    BenchmarkError,
    BenchmarkOptions,
    InconsistentRun,
    RaceLane,
    Shared,
    benchmark,
    run_test,
)
from asmopt.executor.cohort import Cohort, Seat
from asmopt.executor.elf import same_machine_code
from asmopt.executor.intervals import MIN_CI_SAMPLES
from asmopt.executor.results import (
    BuildResult,
    RunResult,
    SpeedupEstimate,
    TestStatus,
    TestVerdict,
    Verdict,
    VerificationResult,
)
from asmopt.executor.sandbox import RunSession, Sandbox, SandboxLimits
from asmopt.executor.store import ResultStore, candidate_key
from asmopt.executor.testcases import Comparator, TestCase, judge, tests_digest
from asmopt.executor.toolchain import build_binary, compile_to_asm, toolchain_fingerprint

Progress = Callable[[str], None]
# Called with a candidate's binary once it is built: a verdict to return instead of testing
# and timing it (its machine code was judged already), or None to go on.
SameCode = Callable[[Path], "VerificationResult | None"]


class BaselineError(RuntimeError):
    """The reference build cannot serve as a baseline; the message says why, ``stage`` where
    it failed ("compile", "link", "test"; None for anything else)."""

    def __init__(self, message: str, *, stage: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass(frozen=True)
class VerifyOptions:
    """Everything that changes a verdict; part of the result-store key."""

    comparator: Comparator = field(default_factory=Comparator)
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    bench: BenchmarkOptions = field(default_factory=BenchmarkOptions)
    measure: bool = True  # benchmark candidates that pass every test
    timed_tests: tuple[str, ...] | None = None  # None: time every test
    timeout_factor: float = 10.0  # a test may take this many times the baseline's wall time
    min_timeout: float = 2.0
    # "faster" needs the CI's lower bound above 1 + min_gain: on identical binaries a bare
    # "above 1" still fires about 2% of the time (bench/aa_precision.py), and a gain under 1%
    # is not worth offering.
    min_gain: float = 0.01
    linker: str = "gcc"
    ldflags: tuple[str, ...] = ("-lm",)
    extra_inputs: tuple[Path, ...] = ()  # other sources/objects linked into every binary
    # Command tests (command_tests.py): what every run executes instead of the program
    # (/bin/sh), and the folder every run sees read-only, less ``hide`` (Sandbox.session).
    launcher: str | None = None
    files: Path | None = None
    hide: tuple[str, ...] = ()

    def session_options(self) -> dict[str, Any]:
        """The keyword arguments of every ``Sandbox.session`` that runs a program."""
        # Every run in a sandbox of its own: nothing of a test run reaches a timed run.
        return {
            "launcher": self.launcher,
            "files": self.files,
            "hide": self.hide,
            "fresh_per_run": True,
        }

    def key(self) -> str:
        commands = (self.launcher, str(self.files)) if self.launcher or self.files else ()
        return repr(
            (
                self.comparator,
                self.timed_tests,
                self.linker,
                self.ldflags,
                tuple(str(p) for p in self.extra_inputs),
                self.measure,
                self.bench.target_rel_ci,
                self.bench.ci_method,
                self.min_gain,
                *commands,
            )
        )


@dataclass(frozen=True)
class Baseline:
    """The ``gcc -O3`` reference a candidate must match and beat."""

    source: Path
    asm: str
    binary: Path
    tests: tuple[TestCase, ...]
    expected: dict[str, bytes]  # test name -> expected stdout
    wall_seconds: dict[str, float]  # test name -> the baseline's wall time
    build: BuildResult
    compiler: str = "gcc"
    cflags: tuple[str, ...] = ("-O3",)

    @property
    def asm_hash(self) -> str:
        return hashlib.sha256(self.asm.encode()).hexdigest()


def _run_limits(baseline: Baseline, tests: Sequence[TestCase], options: VerifyOptions):
    """The limits of every run of a candidate, test run or timed run alike (a program can
    read its limits, so they must not differ): the wall limit is ``timeout_factor`` times the
    baseline's slowest test, at least ``min_timeout``, at most the configured limit."""
    base = max(baseline.wall_seconds.get(t.name, options.limits.wall_seconds) for t in tests)
    wall = min(options.limits.wall_seconds, max(options.min_timeout, options.timeout_factor * base))
    return replace(options.limits, wall_seconds=wall)


def prepare_baseline(
    source: Path,
    tests: Sequence[TestCase],
    workdir: Path,
    sandbox: Sandbox,
    *,
    compiler: str = "gcc",
    cflags: Sequence[str] = ("-O3",),
    options: VerifyOptions | None = None,
    progress: Progress | None = None,
    trusted_source: bool = True,
) -> Baseline:
    """Build the reference from a C file (``compiler -S cflags``) or take a ``.s`` as is, link
    it as every candidate will be linked, and run every test to learn expected outputs.

    A baseline that fails one of its own tests (wrong output, crash, timeout) is refused: a
    candidate can't be judged against it. ``trusted_source=False`` (C that is not the user's
    own, such as a data set's row) compiles it in the sandbox too, from a copy of the file
    alone; the user's own C compiles on the host, with its includes beside it.
    """
    opts = options or VerifyOptions()
    source = Path(source)
    if not source.exists():
        raise BaselineError(f"{source} does not exist")
    if not tests:
        raise BaselineError("no tests: a candidate can't be verified without any")
    workdir.mkdir(parents=True, exist_ok=True)
    asm_path = workdir / "baseline.s"
    build = _baseline_assembly(
        source, asm_path, compiler, cflags, None if trusted_source else sandbox, progress
    )
    binary = workdir / "baseline.bin"
    link = _link(asm_path, binary, opts, sandbox)
    if not link.ok:
        raise BaselineError(
            f"the baseline does not link: {link.stderr.strip()[:500]}", stage="link"
        )
    if progress:
        progress(f"baseline: running {len(tests)} tests")
    expected, walls = _expected_outputs(binary, tests, sandbox, opts)
    return Baseline(
        source=source,
        asm=asm_path.read_text(errors="replace"),
        binary=binary,
        tests=tuple(tests),
        expected=expected,
        wall_seconds=walls,
        build=build,
        compiler=compiler,
        cflags=tuple(cflags),
    )


def _baseline_assembly(
    source: Path,
    asm_path: Path,
    compiler: str,
    cflags: Sequence[str],
    sandbox: Sandbox | None,
    progress: Progress | None,
) -> BuildResult:
    """The baseline's assembly at ``asm_path``: ``source`` itself when it is assembly, else
    compiled with ``compiler -S cflags`` (in ``sandbox`` when one is given)."""
    if source.suffix in (".s", ".S", ".asm"):
        shutil.copyfile(source, asm_path)
        return BuildResult(ok=True, output=str(asm_path), command=())
    if progress:
        progress(f"baseline: {compiler} {' '.join(cflags)} -S {source.name}")
    build = compile_to_asm(
        source, asm_path, compiler=compiler, flags=tuple(cflags), sandbox=sandbox
    )
    if not build.ok:
        raise BaselineError(
            f"{source.name} does not compile: {_first_error(build)}", stage="compile"
        )
    return build


def _expected_outputs(
    binary: Path, tests: Sequence[TestCase], sandbox: Sandbox, opts: VerifyOptions
) -> tuple[dict[str, bytes], dict[str, float]]:
    """Run the baseline on every test: each test's expected stdout and the baseline's wall
    time; raises ``BaselineError`` when the baseline fails a test of its own."""
    expected: dict[str, bytes] = {}
    walls: dict[str, float] = {}
    with sandbox.session([binary], limits=opts.limits, **opts.session_options()) as session:
        for test in tests:
            run = run_test(session, test, opts.limits)
            reference = test.expected if test.expected is not None else run.stdout
            verdict = judge(test, run, opts.comparator, expected=reference)
            if not verdict.passed:
                raise BaselineError(
                    f"the baseline fails its own test {test.name}: {verdict.status.value}"
                    f"{' — ' + verdict.detail if verdict.detail else ''}",
                    stage="test",
                )
            expected[test.name] = reference
            walls[test.name] = run.wall_seconds
    return expected, walls


def _link(
    asm_path: Path,
    binary: Path,
    opts: VerifyOptions,
    sandbox: Sandbox,
    cancel: threading.Event | None = None,
) -> BuildResult:
    """Assemble and link ``asm_path`` with the other inputs into ``binary``, in the sandbox,
    as every baseline and candidate is linked."""
    return build_binary(
        [asm_path, *opts.extra_inputs],
        binary,
        linker=opts.linker,
        ldflags=opts.ldflags,
        sandbox=sandbox,
        cancel=cancel,
    )


def _first_error(build: BuildResult) -> str:
    return build.diagnostics[0].message if build.diagnostics else build.stderr[:300]


def candidate_hash(asm: str) -> str:
    return hashlib.sha256(asm.encode()).hexdigest()[:16]


def store_key(asm: str, baseline: Baseline, options: VerifyOptions) -> str:
    digest = tests_digest(
        [replace(t, expected=baseline.expected.get(t.name, t.expected)) for t in baseline.tests]
    )
    return candidate_key(
        asm,
        digest,
        tuple(options.ldflags),
        toolchain_fingerprint(options.linker),
        extra=baseline.asm_hash + options.key(),
    )


def verify_candidate(
    asm: str,
    baseline: Baseline,
    sandbox: Sandbox,
    options: VerifyOptions | None = None,
    *,
    store: ResultStore | None = None,
    meta: dict[str, Any] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    race: RaceLane | None = None,
    same_code: SameCode | None = None,
    cohort: Cohort | Seat | None = None,
) -> VerificationResult:
    """Assemble and link ``asm`` like the baseline, run every test, benchmark if all pass.

    ``race`` lets the benchmark stop early when the candidate cannot win (see
    ``benchmark.Race``); such a result is stored with the reason, and reused only by a job
    that races too (one that does not times the candidate again). ``same_code`` sees the
    built binary first and may answer for it (a candidate whose machine code was judged
    already); that answer is not stored: its caller stores the verdict it stands for.
    With a ``cohort`` (``executor.cohort``), every process of the candidate (its build,
    tests and timed runs) takes the cohort's turns, and its timed runs pair with baseline
    runs other members made when they may (the candidate's name there is its hash). A
    :class:`Seat` (named by the hash) may move the candidate to another cohort between steps.
    """
    opts = options or VerifyOptions()
    try:
        asm.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate, from JSON or a model's tokens
        return VerificationResult(
            Verdict.BUILD_FAILED,
            candidate_hash(asm.encode("utf-8", "replace").decode()),
            None,
            message=f"the candidate is not valid text (character {err.start} cannot be "
            "written as UTF-8)",
        )
    chash = candidate_hash(asm)
    key = store_key(asm, baseline, opts) if store is not None else ""
    if store is not None:
        cached = store.get(key)
        if cached is not None:
            found = VerificationResult.from_dict(cached)
            if race is not None or found.speedup is None or not found.speedup.stopped_early:
                return found
    result = _verify_uncached(
        asm, chash, baseline, sandbox, opts, progress, cancel, race, same_code, cohort
    )
    if meta:
        result = replace(result, meta={**dict(meta), **result.meta})
    if store is not None and not result.meta.get("same_code_as") and not withdrawn(result):
        record = result.to_dict()
        record.update(meta or {})
        store.put(key, record)
    return result


def withdrawn(result: VerificationResult) -> bool:
    """Whether ``result`` is of a measurement its job withdrew (its race lane said
    ``WITHDRAWN``): it says nothing of the candidate, and is never stored."""
    return result.speedup is not None and result.speedup.stopped_early.startswith(WITHDRAWN)


def _verify_uncached(
    asm: str,
    chash: str,
    baseline: Baseline,
    sandbox: Sandbox,
    opts: VerifyOptions,
    progress: Progress | None,
    cancel: threading.Event | None,
    race: RaceLane | None = None,
    same_code: SameCode | None = None,
    cohort: Cohort | Seat | None = None,
) -> VerificationResult:
    identical = asm == baseline.asm
    seat = Seat(cohort, chash) if isinstance(cohort, Cohort) else cohort
    with tempfile.TemporaryDirectory(prefix="asmopt-cand-") as tmp:
        src = Path(tmp) / "candidate.s"
        src.write_text(asm)
        binary = Path(tmp) / "candidate.bin"
        if progress:
            progress("build")
        # Candidate text is hostile: assembled and linked in the sandbox, which sees the
        # candidate and the other inputs of the link, never the workspace or the tests.
        if seat is not None:
            seat.between_rounds()
        with seat.cohort.turn() if seat is not None else nullcontext():
            build = _link(src, binary, opts, sandbox, cancel)
        if not build.ok:
            build = _relative_to_candidate(build, src)
            return VerificationResult(
                Verdict.BUILD_FAILED,
                chash,
                build,
                identical_to_baseline=identical,
                message=f"does not assemble or link: {_first_error(build)}",
            )
        if same_code is not None:
            answer = same_code(binary)
            if answer is not None:
                return replace(answer, candidate_hash=chash, build=build, cached=False)
        # Text that differs only in comments, labels or blank lines is the same program: it
        # must not be measured as a new one (a policy could draw the A/A noise again).
        identical = identical or same_machine_code(binary, baseline.binary)
        tested = _Tested(chash, build, identical)
        return _test_and_time(binary, baseline, sandbox, opts, tested, progress, cancel, race, seat)


@dataclass(frozen=True)
class _Tested:
    """What every verdict after the build says of the candidate: its hash, its build, and
    whether it is the baseline's code."""

    chash: str
    build: BuildResult
    identical: bool

    def verdict(
        self, verdict: Verdict, message: str, tests: Sequence[TestVerdict]
    ) -> VerificationResult:
        return VerificationResult(
            verdict, self.chash, self.build, tuple(tests), identical_to_baseline=self.identical,
            message=message,
        )  # fmt: skip


def _test_and_time(
    binary: Path,
    baseline: Baseline,
    sandbox: Sandbox,
    opts: VerifyOptions,
    tested: _Tested,
    progress: Progress | None,
    cancel: threading.Event | None,
    race: RaceLane | None,
    member: Shared | None,
) -> VerificationResult:
    """Run every test on the built candidate, then time it against the baseline in the very
    sessions the tests ran in, when every test passed."""
    limits = _run_limits(baseline, baseline.tests, opts)

    def session(program: Path) -> RunSession:
        return sandbox.session([program], limits=limits, **opts.session_options())

    with session(binary) as cand_session, session(baseline.binary) as base_session:

        def check(test: TestCase, run: RunResult) -> TestVerdict:
            return judge(test, run, opts.comparator, expected=baseline.expected[test.name])

        verdicts: list[TestVerdict] = []
        for i, test in enumerate(baseline.tests):
            if progress:
                progress(f"test {i + 1}/{len(baseline.tests)}")
            if member is not None:
                member.between_rounds()
            with member.cohort.turn() if member is not None else nullcontext():
                run = run_test(cand_session, test, limits, cancel)
            verdicts.append(check(test, run))
        passed = sum(1 for v in verdicts if v.passed)
        if passed < len(verdicts):
            failed = next(v for v in verdicts if not v.passed)
            return tested.verdict(
                Verdict.TESTS_FAILED,
                f"{len(verdicts) - passed} of {len(verdicts)} tests failed "
                f"(first: {failed.name}, {failed.status.value})",
                verdicts,
            )
        if not opts.measure:
            return tested.verdict(Verdict.NOT_FASTER, "all tests pass (not measured)", verdicts)
        timed = [
            t for t in baseline.tests if opts.timed_tests is None or t.name in opts.timed_tests
        ]
        if progress:
            progress("benchmark")
        try:
            # Timed through the sessions the tests ran through (their runs were the
            # warm-up), every run in a sandbox of its own, every run checked as a test is.
            speedup = benchmark(
                sandbox,
                baseline.binary,
                binary,
                timed,
                replace(opts.bench, warmup_rounds=0),
                limits=limits,
                cancel=cancel,
                check=check,
                sessions=(base_session, cand_session),
                race=race,
                shared=member,
                spare=lambda: (session(baseline.binary), session(binary)),
            )
        except InconsistentRun as err:
            if err.side == "baseline":
                return tested.verdict(
                    Verdict.NOT_FASTER,
                    f"cannot be timed: {err} (the baseline's output is not deterministic)",
                    verdicts,
                )
            # The test that differed is marked, so it counts as failed wherever tests
            # are counted.
            return tested.verdict(
                Verdict.INCONSISTENT, f"inconsistent: {err}", _marked(verdicts, err)
            )
        except BenchmarkError as err:
            return tested.verdict(Verdict.TESTS_FAILED, str(err), verdicts)
    return _timed_verdict(speedup, opts, tested, verdicts)


def _timed_verdict(
    speedup: SpeedupEstimate, opts: VerifyOptions, tested: _Tested, verdicts: list[TestVerdict]
) -> VerificationResult:
    """FASTER or NOT_FASTER from the timing, with the message that says why."""
    identical = tested.identical
    wall_disagrees = speedup.wall_ci_high is not None and speedup.wall_ci_high <= 1.0
    # Fewer rounds than MIN_CI_SAMPLES (a race's early stop, a cancel, max_rounds) have no
    # 95% interval: their extremes cover the median 50% (2 rounds) to 94% (5) of the time.
    few = speedup.runs < MIN_CI_SAMPLES
    clear = speedup.ci_low > 1.0 + opts.min_gain
    faster = clear and not few and not identical and not wall_disagrees
    if faster:
        message = f"{speedup.median:.2f}x faster [{speedup.ci_low:.2f}–{speedup.ci_high:.2f}]"
    elif identical:
        message = "identical to the baseline"
    elif clear and few:
        message = (
            f"not measurably faster: {speedup.median:.2f}x over {speedup.runs} rounds, too "
            f"few for a 95% CI (at least {MIN_CI_SAMPLES})"
        )
    elif wall_disagrees and clear:
        message = (
            f"not faster: {speedup.median:.2f}x less CPU, but its wall time is not shorter "
            f"({speedup.wall_median:.2f}x [{speedup.wall_ci_low:.2f}–{speedup.wall_ci_high:.2f}])"
        )
    else:
        message = (
            f"not measurably faster: {speedup.median:.2f}x "
            f"[{speedup.ci_low:.2f}–{speedup.ci_high:.2f}]"
        )
    if speedup.stopped_early:
        message += f" (timing stopped after {speedup.runs} rounds: {speedup.stopped_early})"
    return VerificationResult(
        Verdict.FASTER if faster else Verdict.NOT_FASTER,
        tested.chash,
        tested.build,
        tuple(verdicts),
        speedup,
        identical_to_baseline=identical,
        message=message,
    )


def _marked(verdicts: list[TestVerdict], err: InconsistentRun) -> list[TestVerdict]:
    """``verdicts`` with the test that differed in a timed run marked inconsistent."""
    return [
        TestVerdict(v.name, TestStatus.INCONSISTENT, str(err)[:300], v.cpu_seconds)
        if v.name == err.test.name
        else v
        for v in verdicts
    ]


def _relative_to_candidate(build: BuildResult, src: Path) -> BuildResult:
    """Messages name ``candidate.s`` rather than a temporary path that no longer exists."""
    tmp = str(src)
    diagnostics = tuple(
        replace(d, file="candidate.s") if d.file in (tmp, src.name) else d
        for d in build.diagnostics
    )
    return replace(build, diagnostics=diagnostics, stderr=build.stderr.replace(tmp, "candidate.s"))


def instruction_counts(
    asm: str, baseline: Baseline, sandbox: Sandbox, options: VerifyOptions | None = None
) -> dict[str, Any]:
    """callgrind instruction counts (the program's own code) of baseline and candidate on every
    timed test: a deterministic second metric, reported as instructions, never as time.

    Raises ``CallgrindError`` (``UnsupportedInstructionError`` for AVX-512 code) when valgrind
    cannot count.
    """
    from asmopt.executor.callgrind import count_instructions_sandboxed

    opts = options or VerifyOptions()
    timed = [t for t in baseline.tests if opts.timed_tests is None or t.name in opts.timed_tests]
    with tempfile.TemporaryDirectory(prefix="asmopt-ir-") as tmp:
        src = Path(tmp) / "candidate.s"
        src.write_text(asm)
        binary = Path(tmp) / "candidate.bin"
        build = _link(src, binary, opts, sandbox)
        if not build.ok:
            raise BaselineError(f"the candidate does not build: {build.stderr.strip()[:300]}")
        per_test = {}
        for test in timed:
            base = count_instructions_sandboxed(sandbox, baseline.binary, test.stdin, test.args)
            cand = count_instructions_sandboxed(sandbox, binary, test.stdin, test.args)
            per_test[test.name] = {"baseline": base.program, "candidate": cand.program}
    total_base = sum(v["baseline"] for v in per_test.values())
    total_cand = sum(v["candidate"] for v in per_test.values())
    return {
        "metric": "instructions executed in the program's own code (callgrind); not time",
        "baseline": total_base,
        "candidate": total_cand,
        "ratio": total_base / total_cand if total_cand else None,
        "per_test": per_test,
    }
