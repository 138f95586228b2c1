"""The compiler policy: its variants build, PGO really uses a profile, -march=native only when
allowed and labelled non-portable, function requests splice; and the sandbox's output dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asmopt.executor.sandbox import Sandbox
from asmopt.executor.toolchain import build_binary, compile_to_asm, find_tool
from asmopt.model.search.compiler_search import (
    DEFAULT_VARIANTS,
    CompilerSearchPolicy,
    Variant,
    _collect_profile,
    clean_clang_asm,
)
from asmopt.model.search.policy import Candidate, NoCandidate, Request

# Branchy on purpose: the profile says which branch is hot, so a PGO build lays it out (and
# unrolls, and inlines) differently from plain -O3.
BRANCHY = r"""
#include <stdio.h>
long classify(long x) {
    if (x % 7 == 3) return x * 3 + 1;
    if (x % 11 == 5) return x / 2;
    if (x % 13 == 1) return x ^ 0x55;
    return x + 1;
}
int main(void) {
    long n;
    if (scanf("%ld", &n) != 1) return 1;
    long s = 0;
    for (long i = 0; i < n; i++) s += classify(i) & 1023;
    printf("%ld\n", s);
    return 0;
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("prog")
    source = root / "prog.c"
    source.write_text(BRANCHY)
    tests = root / "tests"
    tests.mkdir()
    for name, n in (("a", 20000), ("b", 50000)):
        (tests / f"{name}.in").write_text(f"{n}\n")
    expected = sum((_classify(i) & 1023) for i in range(50000))
    return source, tests, f"{expected}\n"


def _classify(x: int) -> int:
    if x % 7 == 3:
        return x * 3 + 1
    if x % 11 == 5:
        return x // 2
    if x % 13 == 1:
        return x ^ 0x55
    return x + 1


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    with Sandbox() as opened:
        yield opened


def _baseline_asm(source: Path, tmp: Path) -> str:
    out = tmp / "baseline.s"
    assert compile_to_asm(source, out).ok
    return out.read_text()


def _run_asm(asm: str, tmp: Path, stdin: str, sandbox: Sandbox) -> str:
    """What a candidate prints, assembled, linked and run in the sandbox like any candidate."""
    src = tmp / "cand.s"
    src.write_text(asm)
    binary = tmp / "cand.bin"
    build = build_binary([src], binary, sandbox=sandbox)  # linked like the baseline
    assert build.ok, build.stderr
    run = sandbox.run(binary, stdin.encode())
    assert run.exit_code == 0, run
    return run.stdout.decode()


def test_every_variant_builds_and_runs(program, sandbox, tmp_path):
    source, tests, expected = program
    request = Request(
        baseline_asm=_baseline_asm(source, tmp_path), source_path=source, tests_dir=tests
    )
    policy = CompilerSearchPolicy(sandbox=sandbox)
    proposals = policy.propose(request, n=len(DEFAULT_VARIANTS))
    assert len(proposals) == len(policy.variants_for(request))
    candidates = [p for p in proposals if isinstance(p, Candidate)]
    reasons = [p.reason for p in proposals if isinstance(p, NoCandidate)]
    assert len(candidates) == len(proposals), reasons
    for cand in candidates:
        assert cand.policy == "compiler" and cand.portable
        assert "-march=native" not in cand.label
        assert _run_asm(cand.asm, tmp_path, "50000\n", sandbox) == expected, cand.label
    labels = [c.label for c in candidates]
    assert labels[0] == "clang -O3"  # the best bet first
    assert "gcc -O3 PGO (2 training inputs)" in labels


def test_n_limits_the_variants(program, tmp_path):
    source, _, _ = program
    request = Request(baseline_asm="", source_path=source)  # no tests: no PGO
    proposals = CompilerSearchPolicy().propose(request, n=2)
    assert [p.label for p in proposals if isinstance(p, Candidate)] == ["clang -O3", "gcc -O2"]


def test_pgo_really_uses_the_profile(program, sandbox, tmp_path):
    source, tests, expected = program
    plain = _baseline_asm(source, tmp_path)
    pgo = Variant("gcc -O3 PGO", "gcc", ("-O3",), pgo=True)
    policy = CompilerSearchPolicy(variants=(pgo,), sandbox=sandbox)
    request = Request(baseline_asm=plain, source_path=source, tests_dir=tests)
    [proposal] = policy.propose(request, n=5)
    assert isinstance(proposal, Candidate), proposal
    assert proposal.label == "gcc -O3 PGO (2 training inputs)"
    assert proposal.asm != plain
    assert _run_asm(proposal.asm, tmp_path, "50000\n", sandbox) == expected
    # The same build without the profile data: gcc warns, and the policy would refuse it.
    warn = compile_to_asm(
        source,
        tmp_path / "noprof.s",
        flags=("-O3", f"-fprofile-use={tmp_path / 'empty'}", "-Wmissing-profile"),
    )
    assert "profile count data file not found" in warn.stderr


@pytest.mark.skipif(
    find_tool("clang") is None or find_tool("llvm-profdata") is None, reason="needs clang, llvm"
)
def test_clang_pgo_assembles_with_gnu_as(program, sandbox, tmp_path):
    source, tests, expected = program
    variant = Variant("clang -O3 PGO", "clang", ("-O3",), pgo=True)
    policy = CompilerSearchPolicy(variants=(variant,), sandbox=sandbox)
    request = Request(baseline_asm="", source_path=source, tests_dir=tests)
    [proposal] = policy.propose(request, n=1)
    assert isinstance(proposal, Candidate), proposal
    assert ".cg_profile" not in proposal.asm and ".addrsig" not in proposal.asm
    assert _run_asm(proposal.asm, tmp_path, "50000\n", sandbox) == expected


def test_native_only_when_allowed_and_labelled(program, tmp_path):
    source, _, _ = program
    policy = CompilerSearchPolicy()
    request = Request(baseline_asm="", source_path=source)
    assert not any(v.native for v in policy.variants_for(request))
    allowed = Request(baseline_asm="", source_path=source, allow_native=True)
    native = [p for p in policy.propose(allowed, n=2) if isinstance(p, Candidate)]
    assert native and all(not c.portable for c in native)
    assert all(c.label.endswith("non-portable: -march=native") for c in native)


def test_function_request_is_spliced_into_the_baseline(program, sandbox, tmp_path):
    source, _, expected = program
    baseline = _baseline_asm(source, tmp_path)
    request = Request(baseline_asm=baseline, source_path=source, function="classify")
    policy = CompilerSearchPolicy(variants=(Variant("clang -O3", "clang", ("-O3",)),))
    [proposal] = policy.propose(request, n=1)
    assert isinstance(proposal, Candidate), proposal
    assert proposal.function == "classify"
    assert proposal.label == "clang -O3, function classify"
    assert proposal.asm != baseline
    assert _run_asm(proposal.asm, tmp_path, "50000\n", sandbox) == expected


def test_missing_function_is_a_reason_not_a_crash(program, tmp_path):
    source, _, _ = program
    request = Request(
        baseline_asm=_baseline_asm(source, tmp_path), source_path=source, function="nope"
    )
    [proposal] = CompilerSearchPolicy(variants=(DEFAULT_VARIANTS[3],)).propose(request, n=1)
    assert isinstance(proposal, NoCandidate)
    assert "nope" in proposal.reason


def test_clean_clang_asm_drops_only_gnu_as_unknown_directives():
    text = "\t.text\nf:\n\tret\n\t.cg_profile main, f, 10\n\t.addrsig\n\t.addrsig_sym f\n"
    assert clean_clang_asm(text) == "\t.text\nf:\n\tret\n"


def test_sandbox_output_dir_is_the_only_writable_place(sandbox, tmp_path):
    source = tmp_path / "w.c"
    source.write_text(
        '#include <stdio.h>\nint main(int c, char **v) { FILE *f = fopen(v[1], "w");'
        ' if (!f) return 3; fputs("data", f); return fclose(f) ? 4 : 0; }\n'
    )
    binary = tmp_path / "w"
    assert build_binary([source], binary).ok
    lent = sandbox.make_output_dir()
    inside = sandbox.output_path(lent) + "/x.gcda"
    run = sandbox.run(binary, b"", (inside,), output_dir=lent)
    assert run.exit_code == 0
    assert (lent / "x.gcda").read_text() == "data"
    # Without the directory lent, the same path does not exist in the sandbox.
    assert sandbox.run(binary, b"", (inside,)).exit_code == 3
    assert sandbox.run(binary, b"", ("/sandbox/runner",), output_dir=lent).exit_code == 3


def test_collect_profile_ignores_links_and_other_files(tmp_path):
    lent = tmp_path / "lent"
    (lent / "tmp" / "x").mkdir(parents=True)
    (lent / "tmp" / "x" / "prog.gcda").write_bytes(b"gcda")
    (lent / "notes.txt").write_text("no")
    secret = tmp_path / "secret.gcda"
    secret.write_text("host file")
    os.symlink(secret, lent / "evil.gcda")
    os.symlink(tmp_path, lent / "dirlink")
    os.mkfifo(lent / "stall.gcda")  # opening it for reading would wait for a writer forever
    into = tmp_path / "into"
    copied = _collect_profile(lent, into, (".gcda",))
    assert copied == [into / "tmp" / "x" / "prog.gcda"]
    assert copied[0].read_bytes() == b"gcda"
