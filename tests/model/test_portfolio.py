"""The portfolio: ranking, a winner that passes every test, losers that fail, and mixing
functions from two sources; and the register-clobber check that keeps mixes correct."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from asmopt.executor.benchmark import WITHDRAWN, BenchmarkOptions, RacingRule
from asmopt.executor.racing import BEATEN
from asmopt.executor.results import SpeedupEstimate, TestStatus, TestVerdict, Verdict
from asmopt.executor.sandbox import Sandbox
from asmopt.executor.store import ResultStore
from asmopt.executor.testcases import load_tests
from asmopt.executor.toolchain import compile_to_asm
from asmopt.executor.verify import VerificationResult, VerifyOptions, prepare_baseline
from asmopt.model.search.policy import Candidate, NoCandidate, PolicyError, Proposal, Request
from asmopt.model.search.portfolio import (
    Trial,
    optimize,
    rank,
)

# f and g each waste time in a double loop; each prints, so gcc's callers assume nothing about
# the registers they use. FAST_F / FAST_G compute the same sums in closed form.
SLOW_F = """__attribute__((noinline)) void f(long n) {
    long s = 0;
    for (long i = 0; i < n; i++)
        for (long j = 0; j < 200; j++) s += (i ^ j) & 7;
    printf("%ld\\n", s);
}
"""
SLOW_G = """__attribute__((noinline)) void g(long n) {
    long s = 0;
    for (long i = 0; i < n; i++)
        for (long j = 0; j < 200; j++) s += (i * j) % 5;
    printf("%ld\\n", s);
}
"""
FAST_F = """__attribute__((noinline)) void f(long n) { printf("%ld\\n", 700 * n); }
"""
FAST_G = """__attribute__((noinline)) void g(long n) { printf("%ld\\n", 400 * (n - (n + 4) / 5)); }
"""
WRONG_F = """__attribute__((noinline)) void f(long n) { printf("%ld\\n", 700 * n + 1); }
"""
MAIN = """int main(void) {
    long n;
    if (scanf("%ld", &n) != 1) return 1;
    f(n);
    g(n);
    return 0;
}
"""


def _program(f: str, g: str) -> str:
    return "#include <stdio.h>\n" + f + g + MAIN


OPTIONS = VerifyOptions(bench=BenchmarkOptions(min_rounds=3, budget_seconds=1.0, max_rounds=12))


@dataclass
class FixedPolicy:
    """Proposes fixed assembly texts (made by compiling C variants) under fixed labels."""

    name: str
    proposals: list[tuple[str, str]]  # (label, asm)

    def propose(self, request: Request, n: int = 1) -> list[Proposal]:
        return [Candidate(asm=a, policy=self.name, label=label) for label, a in self.proposals][:n]


@dataclass
class BrokenPolicy:
    name: str = "broken"

    def propose(self, request: Request, n: int = 1) -> list[Proposal]:
        raise PolicyError("model missing: download it first")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("portfolio")
    tests = root / "tests"
    tests.mkdir()
    (tests / "small.in").write_text("100000\n")
    (tests / "big.in").write_text("160000\n")

    def asm(name: str, text: str) -> str:
        src = root / f"{name}.c"
        src.write_text(text)
        out = root / f"{name}.s"
        assert compile_to_asm(src, out).ok
        return out.read_text()

    source = root / "prog.c"
    source.write_text(_program(SLOW_F, SLOW_G))
    variants = {
        "fast f": asm("fast_f", _program(FAST_F, SLOW_G)),
        "fast g": asm("fast_g", _program(SLOW_F, FAST_G)),
        "wrong f": asm("wrong_f", _program(WRONG_F, FAST_G)),
    }
    with Sandbox() as sandbox:
        baseline = prepare_baseline(
            source, load_tests(tests), root / "base", sandbox, options=OPTIONS
        )
        yield root, source, tests, baseline, sandbox, variants


def _verdict(median: float, low: float, high: float, passed: bool = True) -> VerificationResult:
    status = TestStatus.PASSED if passed else TestStatus.WRONG_OUTPUT
    return VerificationResult(
        verdict=Verdict.FASTER if passed and low > 1 else Verdict.NOT_FASTER,
        candidate_hash=f"{median}-{low}",
        build=None,
        tests=(TestVerdict("t1", status),),
        speedup=SpeedupEstimate(median, low, high, 10, 1.0, 1.0 / median),
    )


def _trial(label: str, result: VerificationResult) -> Trial:
    return Trial(Candidate(asm=label, policy="test", label=label), result)


def test_rank_puts_the_ci_lower_bound_first():
    trials = [
        _trial("wide but high median", _verdict(1.40, 0.98, 1.80)),
        _trial("narrow", _verdict(1.20, 1.15, 1.25)),
        _trial("narrow, same low, higher median", _verdict(1.22, 1.15, 1.29)),
        _trial("failing but fast", _verdict(3.0, 2.9, 3.1, passed=False)),
        _trial("slower", _verdict(0.9, 0.88, 0.92)),
    ]
    assert [t.label for t in rank(trials)] == [
        "narrow, same low, higher median",
        "narrow",
        "wide but high median",
        "slower",
        "failing but fast",
    ]


def test_winner_passes_and_wrong_or_garbage_candidates_lose(setup, tmp_path):
    _, source, tests, baseline, sandbox, variants = setup
    request = Request(baseline_asm=baseline.asm, source_path=source, tests_dir=tests)
    policies = [
        FixedPolicy("wrong", [("wrong f", variants["wrong f"])]),
        FixedPolicy("garbage", [("garbage", "this is not assembly\n\tfrobnicate %rax\n")]),
        FixedPolicy("good", [("fast g", variants["fast g"]), ("copy", baseline.asm)]),
        BrokenPolicy(),
    ]
    with ResultStore(tmp_path) as store:
        result = optimize(
            request, policies, baseline, sandbox, OPTIONS, store=store, workers=2, mix=False
        )
        stored = store.path.exists()
    by_label = {t.label: t for t in result.trials}
    assert by_label["wrong f"].result.verdict is Verdict.TESTS_FAILED
    assert by_label["garbage"].result.verdict is Verdict.BUILD_FAILED
    assert "copy" not in by_label  # a copy of the baseline is never verified
    assert any("same assembly as the baseline" in note for note in result.notes)
    assert any("model missing" in u.reason for u in result.unusable)
    assert result.winner is not None and result.winner.label == "fast g"
    assert result.winner.passed and result.winner.confirmed
    assert all(t.passed for t in result.trials[:1])
    assert stored


def test_mixing_takes_each_function_from_its_fastest_source(setup):
    _, source, tests, baseline, sandbox, variants = setup
    request = Request(baseline_asm=baseline.asm, source_path=source, tests_dir=tests)
    policy = FixedPolicy("two", [("fast f", variants["fast f"]), ("fast g", variants["fast g"])])
    # fast f (1.2x) needs more than OPTIONS' 1 s: in ~6 rounds on a loaded machine, one
    # outlier round puts 1.0 inside its CI, and a tie lends nothing. Given 3 s, it converges
    # or the race stops it as slower than fast g, and lends its f all the same.
    options = replace(OPTIONS, bench=replace(OPTIONS.bench, budget_seconds=3.0))
    result = optimize(request, [policy], baseline, sandbox, options, workers=2)
    assert result.mix is not None, result.notes
    # f and g come from the variant that made each fast; main is the same code in every
    # variant, so where it comes from is up to measurement noise.
    assert result.mix.sources["f"] == "fast f" and result.mix.sources["g"] == "fast g"
    assert result.mix.passed
    assert result.winner is not None and result.winner.passed
    assert result.winner.kind == "mix"
    single = max(t.result.speedup.median for t in result.trials if t.kind == "candidate")
    assert result.winner.result.speedup.median > single


def test_no_winner_when_nothing_is_faster(setup):
    _, source, tests, baseline, sandbox, variants = setup
    request = Request(baseline_asm=baseline.asm, source_path=source, tests_dir=tests)
    policy = FixedPolicy("bad", [("wrong f", variants["wrong f"])])
    result = optimize(request, [policy], baseline, sandbox, OPTIONS, workers=1)
    assert result.winner is None and not result.faster
    assert "none of 1 candidates passes every test" in result.message


def _file(*functions: str) -> str:
    return "\t.text\n" + "".join(
        f"\t.globl\t{body.split(':')[0]}\n\t.type\t{body.split(':')[0]}, @function\n{body}"
        for body in functions
    )


def test_policy_noise_is_reported_not_raised(setup):
    _, source, _, baseline, sandbox, _ = setup

    @dataclass
    class Exploding:
        name: str = "exploding"

        def propose(self, request: Request, n: int = 1) -> list[Proposal]:
            raise ValueError("bug")

    request = Request(baseline_asm=baseline.asm, source_path=Path(source))
    result = optimize(request, [Exploding()], baseline, sandbox, OPTIONS, workers=1)
    assert result.trials == () and result.winner is None
    assert isinstance(result.unusable[0], NoCandidate)
    assert "ValueError: bug" in result.unusable[0].reason


def test_cancelled_before_verifying_returns_at_once(setup):
    _, source, tests, baseline, sandbox, variants = setup
    request = Request(baseline_asm=baseline.asm, source_path=source, tests_dir=tests)
    cancel = threading.Event()
    cancel.set()
    policy = FixedPolicy("good", [("fast g", variants["fast g"])])
    result = optimize(request, [policy], baseline, sandbox, OPTIONS, cancel=cancel)
    assert result.cancelled and result.winner is None and result.trials == ()


def test_same_machine_code_is_judged_once_and_streamed(setup):
    _, source, tests, baseline, sandbox, variants = setup
    request = Request(baseline_asm=baseline.asm, source_path=source, tests_dir=tests)
    # Other text, same bytes once assembled: a comment changes nothing a CPU runs.
    twin = variants["fast g"].replace("\tret\n", "\tret\t# the same instruction\n", 1)
    copy = "# a comment\n" + baseline.asm
    policy = FixedPolicy("good", [("fast g", variants["fast g"]), ("twin", twin), ("copy", copy)])
    updates = []
    result = optimize(
        request, [policy], baseline, sandbox, OPTIONS, workers=1, mix=False,
        on_update=updates.append,
    )  # fmt: skip
    by_label = {t.label: t for t in result.trials}
    assert by_label["twin"].same_code_as == "fast g"
    assert by_label["twin"].result.speedup is by_label["fast g"].result.speedup
    assert by_label["twin"].result.message.startswith("same machine code as fast g")
    assert by_label["copy"].result.identical_to_baseline
    assert by_label["copy"].result.verdict is Verdict.NOT_FASTER
    assert by_label["copy"].result.speedup is None  # never timed
    assert any("same machine code" in note for note in result.notes)
    final = [u for u in updates if u.final]
    assert final and final[0].label == "fast g" and "faster" in final[0].text


def test_stopping_keeps_what_was_verified(setup):
    _, source, tests, baseline, sandbox, variants = setup
    request = Request(baseline_asm=baseline.asm, source_path=source, tests_dir=tests)
    cancel = threading.Event()

    def on_update(update) -> None:
        if update.final:
            cancel.set()  # the user stops as soon as a verified speed-up is shown

    policy = FixedPolicy("two", [("fast g", variants["fast g"]), ("fast f", variants["fast f"])])
    result = optimize(
        request, [policy], baseline, sandbox, OPTIONS, workers=1, cancel=cancel,
        on_update=on_update,
    )  # fmt: skip
    assert result.cancelled
    assert result.winner is not None and result.winner.label == "fast g"
    assert result.winner.faster and result.winner.passed


# --- which splices the mix times, and how the best is measured again -------------------------
# Without a sandbox: a stand-in verifier says what each function trial measures.

MAIN_CALLS = "main:\n\tcall f\n\tcall g\n\tcall h\n\tret\n"
BASE_F, BASE_G, BASE_H = (f"{n}:\n\tmovl $1, %eax\n\tret\n" for n in "fgh")


def _variant(f: bool = False, g: bool = False, h: bool = False) -> str:
    """The baseline's file with f, g and/or h changed."""
    return _file(
        MAIN_CALLS,
        "f:\n\tmovl $2, %eax\n\tret\n" if f else BASE_F,
        "g:\n\tmovl $3, %eax\n\tret\n" if g else BASE_G,
        "h:\n\tmovl $4, %eax\n\tret\n" if h else BASE_H,
    )


def _whole(label: str, asm: str, median: float, low: float, high: float, stopped: str = ""):
    speedup = SpeedupEstimate(median, low, high, 6, 1.0, 1.0 / median, stopped_early=stopped)
    result = VerificationResult(
        verdict=Verdict.FASTER if low > 1 else Verdict.NOT_FASTER,
        candidate_hash=label,
        build=None,
        tests=(TestVerdict("t1", TestStatus.PASSED),),
        speedup=speedup,
    )
    return Trial(Candidate(asm=asm, policy="test", label=label), result)


class _Pool:
    """A stand-in for racing.Verifier: a function trial of ``label: function f`` measures
    ``figures[label]`` (default 1.2x)."""

    def __init__(self, figures: dict[str, float] | None = None) -> None:
        self.figures = figures or {}
        self.options = OPTIONS
        self.rule = None
        self.cancelled = False
        self.asked: list[tuple[list[str], object]] = []
        self.restored: list[str] = []

    def verify(self, jobs, options=None, **_):
        jobs = list(jobs)
        self.asked.append(([c.label for c, _, _ in jobs], options))
        out = []
        for c, kind, sources in jobs:
            m = self.figures.get(c.label, 1.2)
            trial = _whole(c.label, c.asm, m, m - 0.01, m + 0.01)
            out.append(Trial(c, trial.result, kind, sources))
        return out

    def resolve(self, trials, store_as=None):
        return trials

    def restore(self, trial):
        self.restored.append(trial.label)


def _mix(trials, pool, notes, profile=None):
    from types import SimpleNamespace

    from asmopt.model.search.mixing import mix

    baseline = SimpleNamespace(asm=_variant())
    return mix(baseline, trials, pool, {}, notes, 6, lambda *_: None, profile=profile)  # type: ignore[arg-type]


def _profile(shares: dict[str, float], elsewhere: float = 0.0):
    """An instruction profile of 1,000,000 instructions: each function's share of them, and
    the share executed outside the program's own code (libc, loader, start-up)."""
    from asmopt.executor.profile import FunctionShare, Profile

    total = 1_000_000
    functions = tuple(FunctionShare(n, int(v * total), v) for n, v in shares.items())
    own = sum(f.instructions for f in functions)
    assert own + int(elsewhere * total) <= total
    return Profile(
        total=total, own=total - int(elsewhere * total), functions=functions, tests=("t1",)
    )


def test_no_splice_is_timed_when_one_function_does_all_the_work():
    """A mix needs two functions that can each gain 1%; when the profile leaves one unit of
    work, every donor's version of it was timed with the donor, and nothing is spliced."""
    from asmopt.model.search.mixing import one_unit_of_work

    trials = [
        _whole("fast f", _variant(f=True, g=True), 1.30, 1.28, 1.32),
        _whole("fast g", _variant(g=True, h=True), 1.30, 1.29, 1.31),
    ]
    pool, notes = _Pool(), []
    extra, mixed = _mix(trials, pool, notes, _profile({"f": 0.995, "g": 0.004, "h": 0.001}))
    assert (extra, mixed, pool.asked) == ([], None, [])
    assert any(n.startswith("no mix: `f` executes 99.50%") for n in notes), notes
    # Two functions that can each gain 1%, or one and libc (a function may inline its work):
    # the splices are timed as without a profile.
    for shares, elsewhere in (({"f": 0.5, "g": 0.49}, 0.0), ({"f": 0.97}, 0.02)):
        assert one_unit_of_work(_profile(shares, elsewhere)) is None
        pool = _Pool()
        _mix(trials, pool, [], _profile(shares, elsewhere))
        assert pool.asked
    assert one_unit_of_work(None) is None
    assert one_unit_of_work(_profile({"f": 0.005, "g": 0.005}, 0.0)) is not None


def test_the_mix_skips_splices_that_ties_make_redundant():
    trials = [
        _whole("A", _variant(f=True), 1.64, 1.63, 1.65),
        _whole("B ties A", _variant(f=True, g=True), 1.64, 1.62, 1.66),
        _whole("C as fast as the baseline", _variant(h=True), 1.00, 0.99, 1.01),
        _whole("C2 within 1% of it", _variant(g=True, h=True), 0.995, 0.992, 0.996),
        _whole("D stopped", _variant(h=True), 0.8, 0.7, 0.9, stopped="slower than A"),
        _whole("E slower, does not tie", _variant(f=True, h=True), 1.30, 1.29, 1.31),
    ]
    pool, notes = _Pool(), []
    _mix(trials, pool, notes)
    timed = pool.asked[0][0]
    # A's f is A again (A differs from the baseline in f alone): not timed, A's verdict
    # stands for it; B only lends g (A left g alone; where both changed f, A's stands for
    # both); C and D lend nothing; E does not tie with A, so it lends its h (its f, the same
    # text as A's, makes the same file as A's f: not judged twice).
    assert timed == ["B ties A: function g", "E slower, does not tie: function h"]
    assert "A: `f` is A again (not timed)" in notes
    # The mix still takes f from A, on A's verdict.
    assert pool.asked[1][0] == ["mix: f from A, g from B ties A, h from E slower, does not tie"]
    assert any("ties with A's" in n for n in notes)
    assert any("C as fast as the baseline: not mixed" in n for n in notes)


def test_two_tied_donors_that_improve_different_functions_are_mixed():
    trials = [
        _whole("fast f", _variant(f=True), 1.30, 1.28, 1.32),
        _whole("fast g", _variant(g=True), 1.30, 1.29, 1.31),
    ]
    pool, notes = _Pool({"fast f: function f": 1.3, "fast g: function g": 1.3}), []
    _, mixed = _mix(trials, pool, notes)
    assert mixed is not None and mixed.sources == {"f": "fast f", "g": "fast g"}


def test_a_donor_that_a_rival_stopped_still_lends_its_faster_functions():
    """The race stops a candidate that is slower than another as a whole; each of its
    functions may still be the fastest there is, which is the case mixing is for."""
    trials = [
        _whole("fast g", _variant(g=True), 5.0, 4.8, 5.2),
        _whole("fast f", _variant(f=True, h=True), 1.2, 0.95, 1.4, stopped=f"{BEATEN}fast g"),
        _whole("beaten, no gain", _variant(h=True), 1.005, 0.9, 1.1, stopped=f"{BEATEN}fast g"),
        _whole("below 1.01x", _variant(h=True), 1.05, 0.9, 1.1, stopped="not faster than"),
    ]
    pool, notes = _Pool({"fast f: function f": 1.2, "fast f: function h": 0.99}), []
    _, mixed = _mix(trials, pool, notes)
    assert pool.asked[0][0] == ["fast f: function f", "fast f: function h"]
    assert mixed is not None and mixed.sources == {"f": "fast f", "g": "fast g"}


def test_a_mix_that_is_one_donor_again_is_not_timed():
    whole = _whole("A", _variant(f=True, g=True), 1.50, 1.49, 1.51)
    pool, notes = _Pool(), []
    _, mixed = _mix([whole], pool, notes)
    assert mixed is None and len(pool.asked) == 1  # the function trials only
    assert any("every function's fastest source is A" in n for n in notes)
    # When the donor also changed a function that gains nothing, the mix leaves it out: that
    # is not the donor again, so it is timed.
    whole = _whole("A", _variant(f=True, g=True, h=True), 1.50, 1.49, 1.51)
    pool = _Pool({"A: function h": 0.9})
    _, mixed = _mix([whole], pool, [])
    assert mixed is not None and mixed.sources == {"f": "A", "g": "A"}


def test_a_racing_job_measures_the_best_again_at_its_own_precision():
    from asmopt.executor.benchmark import RacingRule
    from asmopt.model.search.portfolio import _confirm

    trials = [
        _whole("best", _variant(f=True), 1.64, 1.63, 1.65),
        _whole("tie", _variant(g=True), 1.63, 1.62, 1.65),
    ]
    pool = _Pool({"best": 1.64})
    pool.rule = RacingRule()
    out = _confirm(trials, pool, OPTIONS, 3, lambda *_: None)  # type: ignore[arg-type]
    labels, options = pool.asked[0]
    assert labels == ["best"]  # the tie is not measured again: it is within the best's CI
    assert options.bench == replace(OPTIONS.bench, seed=OPTIONS.bench.seed + 1)
    assert [t.confirmed for t in out] == [True, False]
    # Without racing, the best few are measured with twice the budget, half the CI target.
    pool = _Pool()
    _confirm(trials, pool, OPTIONS, 3, lambda *_: None)  # type: ignore[arg-type]
    labels, options = pool.asked[0]
    assert labels == ["best", "tie"]
    assert options.bench.min_rounds == 2 * OPTIONS.bench.min_rounds
    assert options.bench.target_rel_ci == OPTIONS.bench.target_rel_ci / 2


def test_a_noisy_candidate_with_the_higher_median_is_measured_again_beside_the_steady_best():
    """The best by CI lower bound can be a steady, slower candidate when the faster one's
    rounds spread more (seen on examples/dispatch: clang -O3 1.16x [1.12-1.19] against
    clang -O3 PGO, 1.2x with a wider CI): the best by median is measured again too when its
    median is higher, though it lies within the first's CI. A lower median is a tie."""
    from asmopt.model.search.portfolio import _promising

    steady = _whole("steady", _variant(f=True), 1.16, 1.12, 1.19)
    noisy = _whole("noisy", _variant(g=True), 1.18, 1.08, 1.31)
    lower = _whole("lower", _variant(h=True), 1.15, 1.10, 1.22)
    assert [t.label for t in _promising([steady, noisy, lower], True, 3)] == ["steady", "noisy"]
    assert [t.label for t in _promising([steady, lower], True, 3)] == ["steady"]
    assert [t.label for t in _promising([steady, noisy], True, 1)] == ["steady"]


def test_a_racing_job_confirms_while_it_mixes_and_then_what_may_beat_the_best():
    from types import SimpleNamespace

    from asmopt.executor.benchmark import RacingRule
    from asmopt.model.search.portfolio import _after_screening

    whole = _whole("W", _variant(f=True, g=True), 1.50, 1.49, 1.51)
    # W's f alone measures above W's fresh CI: it may be better, so it is measured again;
    # W's g alone ties with W: it is not.
    pool = _Pool({"W": 1.50, "W: function f": 1.60, "W: function g": 1.50})
    pool.rule = RacingRule()
    baseline = SimpleNamespace(asm=_variant())
    with ThreadPoolExecutor(1) as background:
        trials, mixed = _after_screening(
            baseline, [whole], pool, OPTIONS, mix=True, mix_sources=6, confirm=3,  # type: ignore[arg-type]
            seen={}, notes=[], say=lambda *_: None, background=background,
        )  # fmt: skip
    confirmed = sorted(t.label for t in trials if t.confirmed)
    assert confirmed == ["W", "W: function f"]
    assert sorted(labels[0] for labels, _ in pool.asked) == [
        "W",
        "W: function f",
        "W: function f",
    ]  # screening of f and g, W again (at once), then f again
    assert mixed is None  # f and g both from W, and W changed nothing else: W again


def test_the_race_counts_the_proposals_each_policy_will_make():
    """The racing rule's union bound counts every candidate a job may time: all of compiler
    search's variants when it tries every one, at most ``n`` of them when asked for ``n``."""
    from asmopt.model.search.compiler_search import CompilerSearchPolicy
    from asmopt.model.search.optimizer import _EveryVariant
    from asmopt.model.search.portfolio import _planned

    class Variants:
        name = "compiler"
        planned = CompilerSearchPolicy.planned

        def variants_for(self, request):
            return ["a", "b", "c", "d", "e"]

    class Plain:
        name = "llm"

    assert _planned(_EveryVariant(Variants()), None, 2) == 5
    assert _planned(Variants(), None, 2) == 2
    assert _planned(Variants(), None, 16) == 5
    assert _planned(Plain(), None, 4) == 4


def test_candidates_timed_together_never_run_beside_each_other(setup, judge_runs):
    """With one worker, every candidate of the job is in one cohort (executor.cohort): its
    tests and timed runs take turns, so no candidate ever runs while the baseline run its
    ratio divides runs (it could slow it down)."""
    _, source, tests, baseline, sandbox, variants = setup
    request = Request(baseline_asm=baseline.asm, source_path=source, tests_dir=tests)
    policy = FixedPolicy("fixed", [(k, variants[k]) for k in ("fast f", "fast g", "wrong f")])
    result = optimize(request, [policy], baseline, sandbox, OPTIONS, workers=1, mix=False)
    assert result.winner is not None
    spans = sorted(judge_runs, key=lambda s: s.start)
    assert len(spans) > 10
    overlaps = [(a, b) for a, b in itertools.pairwise(spans) if b.start < a.end]
    assert not overlaps


def test_a_candidate_moves_to_a_cohort_whose_core_would_idle():
    """Between steps, a candidate leaves a cohort that has at least two members more than
    another (whose core would otherwise idle while its own members take turns)."""
    from asmopt.executor.cohort import Seat
    from asmopt.model.search.stages import quiet
    from asmopt.model.search.verifier import Verifier

    pool = Verifier(None, None, OPTIONS, None, 2, quiet, None)  # type: ignore[arg-type]
    try:
        busy, free = pool.cohorts
        pool._first_done = True
        busy.members, free.members = 2, 0
        seat = Seat(busy, "x", pool._rebalance)
        seat.between_rounds()
        assert seat.cohort is free and (busy.members, free.members) == (1, 1)
        seat.between_rounds()  # balanced: it stays
        assert seat.cohort is free and pool.moves == 1
        busy.members = 2  # one more than its own: moving would not help
        seat.between_rounds()
        assert seat.cohort is free
    finally:
        pool.close()


def test_a_candidate_alone_is_lent_the_idle_cohort_for_a_round(monkeypatch):
    """The last candidate timed (typically the winner's second measurement) would leave a
    core idle: alone in its cohort while another has no member, it takes its next round two
    wide (executor.cohort.Seat.widen). The lent cohort counts it as a member until given
    back, so no other candidate is lent it meanwhile; nothing is lent while another cohort
    has members or its own cohort has others."""
    import asmopt.model.search.verifier as verifier_module
    from asmopt.executor.cohort import Seat
    from asmopt.model.search.stages import quiet
    from asmopt.model.search.verifier import Verifier

    pool = Verifier(None, None, OPTIONS, None, 2, quiet, None)  # type: ignore[arg-type]
    try:
        mine, other = pool.cohorts
        mine.members = 1
        seat = Seat(mine, "x", pool._rebalance, widen=pool._widen, give_back=pool._give_back)
        with seat.widened() as lent:
            assert lent is other and other.members == 1
            with Seat(other, "y", widen=pool._widen).widened() as second:
                assert second is None  # no cohort idles while it is lent
        assert other.members == 0 and seat.moved_at > 0
        other.members = 1
        with seat.widened() as lent:
            assert lent is None
        other.members, mine.members = 0, 2
        with seat.widened() as lent:
            assert lent is None
        mine.members = 1
        monkeypatch.setattr(verifier_module, "WIDE_WHEN_ALONE", False)
        with seat.widened() as lent:
            assert lent is None
    finally:
        pool.close()


def test_the_first_candidate_goes_two_wide_until_the_first_verdict(monkeypatch):
    """Until the job's first verdict, its first candidate is lent the other core for its
    rounds even while candidates are timed there (they wait a round at a time), so the first
    figure comes sooner; any other candidate, and the first one after a verdict, is lent
    only an idle core."""
    import asmopt.model.search.verifier as verifier_module
    from asmopt.executor.cohort import Seat
    from asmopt.model.search.stages import quiet
    from asmopt.model.search.verifier import Verifier

    pool = Verifier(None, None, OPTIONS, None, 2, quiet, None)  # type: ignore[arg-type]
    try:
        first = pool._join(0)
        assert first is not None
        busy = pool._join(1)
        assert busy is not None and busy is not first and busy.members == 1
        seat = Seat(first, "a", widen=pool._widen, give_back=pool._give_back)
        with seat.widened() as lent:
            assert lent is busy and busy.members == 2
        assert busy.members == 1
        with Seat(busy, "b", widen=pool._widen).widened() as lent:
            assert lent is None  # not the first: the other core is not idle
        monkeypatch.setattr(verifier_module, "FIRST_GOES_WIDE", False)
        with seat.widened() as lent:
            assert lent is None
        monkeypatch.setattr(verifier_module, "FIRST_GOES_WIDE", True)
        pool._leave(busy)  # a verdict: the job's first
        busy.members += 1
        with seat.widened() as lent:
            assert lent is None
    finally:
        pool.close()


def test_functions_compare_by_code_not_by_label_numbers():
    """Two builds of one function that differ only in how their labels are numbered are the
    same code (the mix does not time a splice that is its donor again); a constant they name
    counts by its contents."""
    from asmopt.executor.asmfile import comparable_code

    def build(loop: str, const: str, text: str) -> str:
        return (
            f'\t.section .rodata.str1.1\n{const}:\n\t.string "{text}"\n\t.text\n'
            "\t.globl main\n\t.type main, @function\nmain:\n"
            f"\tleaq {const}(%rip), %rdi  # the format\n{loop}:\n\tsubl $1, %esi\n"
            f"\tjne {loop}\n\tjmp puts@PLT\n\t.size main, .-main\n"
        )

    one = comparable_code(build(".L3", ".LC0", "%d"))["main"]
    assert one == comparable_code(build(".L17", ".LC4", "%d"))["main"]
    assert one != comparable_code(build(".L3", ".LC0", "%d!"))["main"]
    assert ".L3" not in one and "%d" in one


def test_the_best_measured_again_during_the_screening_is_not_measured_again_after_it():
    """When the screening leaves a worker idle, the best so far is measured again at once
    (``_measure_early``); the confirmation after the screening takes that measurement."""
    from types import SimpleNamespace

    from asmopt.executor.benchmark import RacingRule
    from asmopt.model.search.portfolio import _after_screening, _measure_early

    whole = _whole("W", _variant(f=True, g=True), 1.50, 1.49, 1.51)
    pool = _Pool({"W": 1.50, "W: function f": 1.50, "W: function g": 1.50})
    pool.rule = RacingRule()
    with ThreadPoolExecutor(1) as background:
        idle, early = _measure_early(pool, OPTIONS, lambda *_: None, background)  # type: ignore[arg-type]
        assert not idle([], {}) and early() is None  # nothing to measure yet: asked again later
        idle([whole], {})
        assert early() is not None
        trials, _ = _after_screening(
            SimpleNamespace(asm=_variant()), [whole], pool, OPTIONS, mix=True, mix_sources=6,  # type: ignore[arg-type]
            confirm=3, seen={}, notes=[], say=lambda *_: None, background=background,
            early=early(),
        )  # fmt: skip
    asked = [labels for labels, _ in pool.asked]
    assert asked.count(["W"]) == 1  # once, early
    assert [t.label for t in trials if t.confirmed] == ["W"]


class _WithdrawablePool(_Pool):
    """A stand-in verifier whose measurement of ``slow`` takes until its job withdraws it."""

    def __init__(self, slow: str) -> None:
        super().__init__()
        self.rule = RacingRule()
        self.slow = slow

    def verify(self, jobs, options=None, halt=None, **kwargs):
        jobs = list(jobs)
        if halt is None or jobs[0][0].label != self.slow:
            return super().verify(jobs, options, **kwargs)
        self.asked.append(([c.label for c, _, _ in jobs], options))
        for _ in range(500):
            if halt.why:
                break
            time.sleep(0.01)
        c = jobs[0][0]
        cut = _whole(c.label, c.asm, 1.35, 1.35, 1.35, stopped=f"{WITHDRAWN}{halt.why}")
        return [Trial(c, cut.result, "whole", {})]


def test_an_early_measurement_is_withdrawn_when_a_surely_faster_candidate_appears():
    """The best so far is measured again early; a later candidate whose screening CI lies
    wholly above it withdraws that measurement (the confirmation would not take it) and is
    measured again at once. A candidate that only ties with it does not."""
    from asmopt.model.search.portfolio import _measure_early

    first = _whole("A", _variant(f=True), 1.45, 1.44, 1.46)
    tie = _whole("C", _variant(h=True), 1.46, 1.40, 1.50)
    faster = _whole("B", _variant(g=True), 1.55, 1.53, 1.56)
    pool, lines = _WithdrawablePool("A"), []
    with ThreadPoolExecutor(4) as background:
        idle, early = _measure_early(pool, OPTIONS, lambda _s, line: lines.append(line), background)  # type: ignore[arg-type]
        idle([first], {})
        measuring_a = early()
        assert measuring_a is not None and measuring_a.trial.label == "A"
        idle([first, tie], {})
        assert early() is measuring_a  # a tie withdraws nothing
        idle([first, tie, faster], {})
        now = early()
        assert now is not None and now.trial.label == "B"
        assert measuring_a.future.result(timeout=10) == {}  # A's cut-short figures are dropped
        assert now.future.result(timeout=10)["B"].confirmed
    assert "A is not measured again: B is surely faster" in lines
    assert [labels for labels, _ in pool.asked] == [["A"], ["B"]]


def test_an_early_measurement_of_a_candidate_the_confirmation_does_not_choose_is_dropped():
    """What is measured again depends on the screening's figures alone, not on the order they
    came in: a measurement begun early of a candidate that, once every candidate was screened,
    is not among the best is withdrawn, and the best is measured instead."""
    from asmopt.model.search.portfolio import _measure_again, _measure_early, _promising

    first = _whole("A", _variant(f=True), 1.45, 1.40, 1.50)
    best = _whole("B", _variant(g=True), 1.46, 1.44, 1.48)  # ties A, with the higher bound
    pool = _WithdrawablePool("A")
    with ThreadPoolExecutor(4) as background:
        idle, early = _measure_early(pool, OPTIONS, lambda *_: None, background)  # type: ignore[arg-type]
        idle([first], {})  # B was screened after the last look (or past EARLY_AT_MOST)
        measuring = early()
        assert measuring is not None and measuring.trial.label == "A"
        chosen = _promising([first, best], True, 3)
        assert [t.label for t in chosen] == ["B"]
        trials = _measure_again([first, best], chosen, pool, OPTIONS, lambda *_: None, measuring)  # type: ignore[arg-type]
    assert [t.label for t in trials if t.confirmed] == ["B"]
    assert measuring.halt.why and [labels for labels, _ in pool.asked] == [["A"], ["B"]]
    assert pool.restored == ["A"]  # its twins take its screening verdict, as it shows


def test_no_early_measurement_begins_while_a_candidate_being_screened_ranks_above_the_best():
    """A candidate still being screened whose rounds so far give a higher CI lower bound than
    the best finished one would most likely take the confirmation from it: nothing is
    measured early until it ends (or until its rounds no longer rank it above). Too few
    rounds for a CI, or a lower bound below the best's, do not hold the measurement back."""
    from asmopt.model.search.portfolio import _measure_early

    best = _whole("A", _variant(f=True), 1.14, 1.10, 1.16)
    leading = [1.11, 1.25, 1.24, 1.37, 1.16, 1.16, 1.18, 1.16]  # CI [1.11, 1.37]: above A
    trailing = [1.05, 1.12, 1.09, 1.15, 1.08, 1.10, 1.07, 1.11]  # CI low 1.05: below A
    pool = _WithdrawablePool("none")
    with ThreadPoolExecutor(4) as background:
        idle, early = _measure_early(pool, OPTIONS, lambda *_: None, background)  # type: ignore[arg-type]
        assert not idle([best], {"b": (tuple(leading), "B")})
        assert early() is None and pool.asked == []
        assert not idle([best], {"b": (tuple(leading[:5]), "B"), "c": (tuple(trailing), "C")})
        measuring = early()
        assert measuring is not None and measuring.trial.label == "A"
        measuring.future.result(timeout=10)
    assert [labels for labels, _ in pool.asked] == [["A"]]


def test_the_idle_hook_hears_the_rounds_so_far_of_the_candidates_still_being_timed():
    """``Verifier.verify`` tells its idle hook the round ratios so far (from its race) of the
    candidates still being timed, and not those of the ones done."""
    from asmopt.executor.verify import candidate_hash
    from asmopt.model.search.stages import quiet
    from asmopt.model.search.verifier import Verifier

    quick, slow = _whole("Q", "quick asm", 1.1, 1.05, 1.2), _whole("S", "slow asm", 1.3, 1.2, 1.4)
    checked, release = threading.Event(), threading.Event()

    def one(candidate, kind, sources, options, race, ticket=0, halt=None):
        if candidate.label == "S":
            race.check(candidate_hash(candidate.asm), "S", [1.3] * 6)
            checked.set()
            release.wait(10)
            return slow
        race.check(candidate_hash(candidate.asm), "Q", [1.1] * 7)
        checked.wait(10)
        return quick

    heard = []

    def on_idle(done, timing):
        if not done:
            return False
        heard.append(([t.label for t in done], dict(timing)))
        release.set()
        return True

    pool = Verifier(None, None, OPTIONS, None, 1, quiet, None)  # type: ignore[arg-type]
    pool.rule = RacingRule()
    pool._one = one  # type: ignore[method-assign]
    try:
        jobs = [(slow.candidate, "whole", {}), (quick.candidate, "whole", {})]
        done = pool.verify(jobs, contenders=2, on_idle=on_idle)  # type: ignore[arg-type]
    finally:
        pool.close()
    assert sorted(t.label for t in done) == ["Q", "S"]
    assert heard == [(["Q"], {candidate_hash("slow asm"): ((1.3,) * 6, "S")})]


def test_the_early_measurement_follows_the_candidate_that_ranks_first():
    """A candidate that comes to rank first (by its CI's lower bound, as the confirmation
    chooses) takes over the early measurement, even when it only ties with the one measured."""
    from asmopt.model.search.portfolio import _measure_early

    first = _whole("A", _variant(f=True), 1.45, 1.40, 1.50)
    tie_ranked_first = _whole("B", _variant(g=True), 1.46, 1.44, 1.48)
    pool, lines = _WithdrawablePool("A"), []
    with ThreadPoolExecutor(4) as background:
        idle, early = _measure_early(pool, OPTIONS, lambda _s, line: lines.append(line), background)  # type: ignore[arg-type]
        idle([first], {})
        measuring_a = early()
        idle([first, tie_ranked_first], {})
        now = early()
        assert measuring_a is not None and now is not None and now.trial.label == "B"
        assert measuring_a.future.result(timeout=10) == {}
    assert any(line.startswith("A is not measured again: B now ranks first") for line in lines)
