"""The real optimizer (compiler policy, small budgets) reports its progress as typed stages,
and passes through every stage in order: baseline, generate, verify, benchmark."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from asmopt.model.search.optimizer import OptimizeRequest, Stage, optimize
from asmopt.model.settings import Settings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap"),
]

PROGRAM = """\
#include <stdio.h>

__attribute__((noinline)) long sum_to(long n)
{
    long s = 0;
    for (long i = 1; i <= n; i++)
        s += i * i % 7;
    return s;
}

int main(void)
{
    long n;
    if (scanf("%ld", &n) != 1)
        return 1;
    printf("%ld\\n", sum_to(n));
    return 0;
}
"""


def test_the_real_optimizer_reports_every_stage_in_order(tmp_path: Path) -> None:
    (tmp_path / "prog.c").write_text(PROGRAM)
    (tmp_path / "tests").mkdir()
    for name, n in (("small", 1000), ("big", 300000)):
        (tmp_path / "tests" / f"{name}.in").write_text(f"{n}\n")
    settings = Settings(policies=("compiler",), bench_budget=1.0, samples=1, test_timeout=5,
                        go_on=True)  # fmt: skip
    seen: list[tuple[Stage, str]] = []
    outcome = optimize(
        OptimizeRequest(tmp_path / "prog.c", "sum_to", settings),
        progress=lambda stage, message: seen.append((stage, message)),
    )
    assert all(type(stage) is Stage for stage, _ in seen), seen
    first_seen = list(dict.fromkeys(stage for stage, _ in seen))
    assert first_seen == [Stage.BASELINE, Stage.GENERATE, Stage.VERIFY, Stage.BENCHMARK], seen
    assert seen[-1][0] is Stage.BENCHMARK  # nothing is said of an earlier stage afterwards
    assert outcome.candidates  # it did verify something
    record = outcome.record()
    assert record.verdict in ("faster", "not-faster") and record.target == "prog"


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_a_whole_file_job_profiles_its_baseline_for_the_mix_from_its_first_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mix skips splices that cannot gain by the baseline's instruction profile, made
    while candidates are screened, and only from the first verdict on (until then the first
    candidate has a core to itself)."""
    import asmopt.model.search.portfolio as portfolio

    (tmp_path / "prog.c").write_text(PROGRAM)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "one.in").write_text("3000000\n")
    real = portfolio.optimize
    seen: dict[str, object] = {}

    def spy(*args, profile=None, progress=None, **kwargs):
        work = profile.__self__  # the optimizer's _WorkProfile, through its bound get
        seen["before"] = work._thread

        def told(stage, line):
            progress(stage, line)
            if stage is Stage.VERIFY and "at_first_verdict" not in seen:
                seen["at_first_verdict"] = work._thread

        result = real(*args, profile=profile, progress=told, **kwargs)
        seen["profile"] = profile()
        return result

    monkeypatch.setattr(portfolio, "optimize", spy)
    settings = Settings(policies=("compiler",), bench_budget=1.0, samples=2, test_timeout=5,
                        go_on=True)  # fmt: skip
    optimize(OptimizeRequest(tmp_path / "prog.c", None, settings), progress=lambda *_: None)
    assert seen["before"] is None and seen["at_first_verdict"] is not None
    profile = seen["profile"]
    assert profile is not None and profile.tests == ("one",)  # type: ignore[attr-defined]
    top = profile.functions[0]  # type: ignore[attr-defined]
    assert top.name.startswith("sum_to") and top.share > 0.9, profile


def _prefetching() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "asmopt-prefetch"]


def test_the_compiler_search_builds_its_variants_while_the_start_up_check_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start-up check (valgrind on the quickest test) and the compiler search's builds
    (profile-guided ones with their training runs) are independent: the first variant is
    built before the check ends. A job stopped right after the check leaves no thread
    building more."""
    import threading

    from asmopt.model.search import optimizer as optimizer_module
    from asmopt.model.search.compiler_search import CompilerSearchPolicy

    (tmp_path / "prog.c").write_text(PROGRAM)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "small.in").write_text("2000000\n")  # quick: the check profiles it
    built = threading.Event()
    real_iter = CompilerSearchPolicy.propose_iter

    def propose_iter(self, request, n=1):
        for proposal in real_iter(self, request, n):
            built.set()
            yield proposal

    checked: dict[str, bool] = {}
    real_check = optimizer_module._startup_check
    cancel = threading.Event()

    def startup_check(*args):
        result = real_check(*args)
        checked["built meanwhile"] = built.wait(20)
        cancel.set()  # nothing more is needed of this job
        return result

    monkeypatch.setattr(CompilerSearchPolicy, "propose_iter", propose_iter)
    monkeypatch.setattr(optimizer_module, "_startup_check", startup_check)
    settings = Settings(policies=("compiler",), bench_budget=1.0, samples=1, test_timeout=5)
    outcome = optimize(OptimizeRequest(tmp_path / "prog.c", None, settings), cancel=cancel)
    assert checked == {"built meanwhile": True}
    assert not outcome.startup_bound and outcome.cancelled and not _prefetching()


def test_a_start_up_bound_job_stops_the_compiler_search_it_began(tmp_path: Path) -> None:
    """A program whose run is start-up and libc ends the job after the check, with the
    variants' builds begun during it stopped (none is left running after the job)."""
    (tmp_path / "tiny.c").write_text(
        '#include <stdio.h>\nint main(void) { int a, b; if (scanf("%d %d", &a, &b) != 2) '
        'return 1; printf("%d\\n", a + b); return 0; }\n'
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t1.in").write_text("1 2\n")
    settings = Settings(policies=("compiler",), bench_budget=1.0, samples=1, test_timeout=5)
    outcome = optimize(OptimizeRequest(tmp_path / "tiny.c", None, settings))
    assert outcome.startup_bound and not outcome.candidates
    assert not _prefetching()


def test_prefetched_proposals_are_handed_over_once_and_a_second_ask_is_answered_afresh() -> None:
    from asmopt.model.search.optimizer import _EveryVariant, _Prefetched

    class Counting:
        name = "compiler"
        asked = 0

        def variants_for(self, request):
            return [1, 2]

        def propose_iter(self, request, n=1):
            Counting.asked += 1
            yield from ("a", "b")

    (policy,) = _Prefetched.start([_EveryVariant(Counting())], "request", 1)  # type: ignore[list-item, arg-type]
    assert list(policy.propose_iter("request", 1)) == ["a", "b"]
    assert list(policy.propose_iter("request", 1)) == ["a", "b"]  # not a wait on an empty queue
    _Prefetched.stop([policy])
    assert Counting.asked == 2
