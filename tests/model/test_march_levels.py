"""Candidates for x86-64 levels above the baseline: only when the user says the code will run
on such a CPU, labelled with what they require, and never passing by tolerance when fused
multiply-add changes a float program's output (unless the user chose a tolerance)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asmopt.executor.results import Verdict
from asmopt.executor.sandbox import Sandbox
from asmopt.executor.testcases import Comparator, TestCase
from asmopt.executor.verify import VerifyOptions, prepare_baseline, verify_candidate
from asmopt.model.search.compiler_search import (
    DEFAULT_VARIANTS,
    CompilerSearchPolicy,
    missing_cpu_features,
)
from asmopt.model.search.optimizer import verify_options
from asmopt.model.search.policy import Candidate, Request
from asmopt.model.settings import Settings, SettingsError

# x*y - z with x*y within an ulp of z: rounded twice it prints 0, fused once it does not.
FMA_PROGRAM = r"""
#include <stdio.h>
int main(void) {
    double x, y, z;
    if (scanf("%lf %lf %lf", &x, &y, &z) != 3) return 1;
    printf("%.17g\n", x * y - z);
    return 0;
}
"""
FMA_INPUT = b"1.0000000009313226 0.99999999906867743 1\n"


def test_the_portable_baseline_is_the_default_and_levels_are_checked():
    assert Settings().march_level == "x86-64"
    assert Settings().replace(march_level="x86-64-v3").march_level == "x86-64-v3"
    with pytest.raises(SettingsError, match="march_level"):
        Settings().replace(march_level="haswell")


def test_level_candidates_only_when_asked_and_first():
    policy = CompilerSearchPolicy()
    plain = policy.variants_for(Request(baseline_asm="", march_level="x86-64"))
    assert all(not v.level for v in plain)
    v3 = policy.variants_for(Request(baseline_asm="", march_level="x86-64-v3"))
    assert v3[0].level == "x86-64-v3" and "-march=x86-64-v3" in v3[0].flags
    assert [v for v in v3 if not v.level] == plain
    assert {v.label for v in DEFAULT_VARIANTS} >= {v.label for v in plain}


def test_a_cpu_without_the_level_cannot_verify_it():
    cpuinfo = "flags\t\t: fpu sse2 ssse3 cx16 sse4_1 sse4_2 popcnt lahf_lm avx\n"
    assert missing_cpu_features("x86-64-v2", cpuinfo) == []
    assert "avx2" in missing_cpu_features("x86-64-v3", cpuinfo)
    assert "avx512f" in missing_cpu_features("x86-64-v4", cpuinfo)


def test_no_tolerance_applies_unless_chosen():
    # The default comparison is token for token: a float that differs in any digit fails.
    comparator = verify_options(Settings()).comparator
    assert comparator.mode == "tokens"
    assert not comparator.compare(b"0\n", b"-8.6736173798840355e-19\n")[0]


@pytest.mark.skipif(bool(missing_cpu_features("x86-64-v3")), reason="needs an x86-64-v3 CPU")
def test_fused_multiply_add_that_changes_output_fails_its_tests(tmp_path: Path):
    source = tmp_path / "fma.c"
    source.write_text(FMA_PROGRAM)
    tests = [TestCase("t1", FMA_INPUT, None)]
    policy = CompilerSearchPolicy(variants=(), native_variants=())
    request = Request(baseline_asm="", source_path=source, march_level="x86-64-v3")
    candidates = [c for c in policy.propose(request, 8) if isinstance(c, Candidate)]
    assert candidates, "no x86-64-v3 candidate was built"
    strict = VerifyOptions(measure=False)
    tolerant = VerifyOptions(measure=False, comparator=Comparator("floats", rel_tol=1e-6))
    with Sandbox() as sandbox:
        baseline = prepare_baseline(source, tests, tmp_path / "base", sandbox, options=strict)
        assert baseline.expected["t1"].strip() == b"0"
        for c in candidates:
            assert "requires x86-64-v3" in c.label and not c.portable
            assert "fused multiply-add" in c.label, c.label
            result = verify_candidate(c.asm, baseline, sandbox, strict)
            assert result.verdict is Verdict.TESTS_FAILED, (c.label, result.message)
            # The user chose to compare floats within a tolerance: then it passes.
            chosen = verify_candidate(c.asm, baseline, sandbox, tolerant)
            assert chosen.all_passed, (c.label, chosen.message)
