"""The judge: one baseline, verdicts on candidates against it, remembered in the store."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from asmopt.executor.benchmark import BenchmarkOptions
from asmopt.executor.judge import Judge
from asmopt.executor.results import TestStatus, Verdict
from asmopt.executor.sandbox import Sandbox, SandboxLimits
from asmopt.executor.store import ResultStore
from asmopt.executor.testcases import TestCase
from asmopt.executor.verify import BaselineError, VerifyOptions

# A loop whose -O0 build is several times slower than its -O2 build: a known, large effect.
SUM = r"""
#include <stdio.h>
static unsigned a[1 << 16];
int main(void) {
    long n; if (scanf("%ld", &n) != 1) return 1;
    for (long r = 0; r <= n >> 16; r++)
        for (int i = 0; i < (1 << 16); i++) a[i] = a[i] * 3u + (unsigned)i;
    unsigned long acc = 0;
    for (int i = 0; i < (1 << 16); i++) acc += a[i] ^ (acc >> 3);
    printf("%lu\n", acc);
    return 0;
}
"""

OPTIONS = VerifyOptions(
    bench=BenchmarkOptions(min_rounds=6, budget_seconds=8, target_rel_ci=0.03),
    limits=SandboxLimits(wall_seconds=20, cpu_seconds=20),
)


def _asm(tmp: Path, code: str, *flags: str) -> str:
    src = tmp / "p.c"
    src.write_text(code)
    out = tmp / "p.s"
    subprocess.run(["gcc", *flags, "-S", str(src), "-o", str(out)], check=True)
    return out.read_text()


@pytest.fixture(scope="module")
def judge(tmp_path_factory: pytest.TempPathFactory):
    """A judge whose baseline is the -O0 build, remembering verdicts in a store."""
    root = tmp_path_factory.mktemp("judge")
    src = root / "sum.c"
    src.write_text(SUM)
    tests = [TestCase("small", b"1000\n", None), TestCase("big", b"20000000\n", None)]
    with Sandbox(OPTIONS.limits) as sandbox:
        yield Judge.prepare(
            src, tests, root / "work", sandbox, OPTIONS, store=ResultStore(root), cflags=["-O0"]
        )


def test_prepare_builds_the_baseline_once(judge: Judge) -> None:
    assert judge.baseline.cflags == ("-O0",)
    assert judge.baseline.binary.exists()
    assert set(judge.baseline.expected) == {"small", "big"}
    assert judge.options is OPTIONS


def test_an_honest_faster_candidate_is_faster(judge: Judge, tmp_path: Path) -> None:
    result = judge.judge(_asm(tmp_path, SUM, "-O2"), meta={"policy": "test"})
    assert result.verdict is Verdict.FASTER, result.message
    assert result.all_passed
    assert result.speedup is not None and result.speedup.ci_low > 1.0
    assert result.meta["policy"] == "test"


def test_a_wrong_candidate_fails_its_tests(judge: Judge, tmp_path: Path) -> None:
    wrong = SUM.replace("a[i] * 3u", "a[i] * 5u")
    result = judge.judge(_asm(tmp_path, wrong, "-O2"))
    assert result.verdict is Verdict.TESTS_FAILED
    assert any(t.status is TestStatus.WRONG_OUTPUT for t in result.tests)
    assert result.speedup is None


def test_the_same_text_twice_comes_from_the_store(judge: Judge, tmp_path: Path) -> None:
    asm = _asm(tmp_path, SUM, "-O1")
    stages: list[str] = []
    first = judge.judge(asm, progress=stages.append)
    assert not first.cached and "build" in stages
    stages.clear()
    again = judge.judge(asm, progress=stages.append)
    assert again.cached and stages == []  # nothing built, run or timed
    assert again.verdict is first.verdict
    assert again.to_dict()["tests"] == first.to_dict()["tests"]
    assert judge.store is not None and judge.store.get(judge.store_key(asm)) is not None


def test_tests_only_judge_does_not_time(judge: Judge) -> None:
    result = judge.with_options(measure=False).judge(judge.baseline.asm)
    assert result.all_passed and result.speedup is None
    assert result.verdict is Verdict.NOT_FASTER
    assert judge.options.measure  # the original judge is unchanged


def test_a_baseline_that_fails_its_own_test_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "bad.c"
    src.write_text("int main(void) { return 3; }\n")
    with Sandbox(OPTIONS.limits) as sandbox, pytest.raises(BaselineError) as err:
        Judge.prepare(src, [TestCase("t", b"", None)], tmp_path / "w", sandbox, OPTIONS)
    assert err.value.stage == "test"
