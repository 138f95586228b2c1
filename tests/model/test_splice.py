"""Splicing a candidate function into real gcc -O3 output, then assembling and running it."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from asmopt.executor.asmfile import (
    function_family,
    function_text,
    local_labels,
    parse_functions,
)
from asmopt.executor.sandbox import Sandbox
from asmopt.executor.toolchain import build_binary
from asmopt.model.search.splice import SpliceError, splice_function

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

# What gcc 12 -O3 makes of this: clampsum.cold (.text.unlikely) for the unlikely branch,
# scale.constprop.0 for the constant k, and square inlined away. Each function's result is
# printed, so a wrong splice shows in the output.
C_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>

void __attribute__((cold, noinline)) report(int x) { fprintf(stderr, "odd %d\n", x); }

int clampsum(const int *a, int n) {
    int s = 0;
    for (int i = 0; i < n; i++) {
        int v = a[i];
        if (__builtin_expect(v > 1000, 0)) { report(v); v = 1000; }
        s += v;
    }
    return s;
}

static int __attribute__((noinline)) scale(int x, int k) {
    int s = 0;
    for (int i = 0; i < x; i++) s += i * k + (i ^ k);
    return s;
}

static int square(int x) { return x * x; }

int __attribute__((noinline)) answer(void) { return 41; }

int main(void) {
    int n = 0;
    if (scanf("%d", &n) != 1) return 1;
    int a[3] = {1, 2000, n};
    /* called through volatile pointers so that gcc cannot inline them into main */
    int (*volatile cs)(const int *, int) = clampsum;
    printf("%d %d %d %d\n", cs(a, 3), scale(n, 7), square(n), answer());
    return 0;
}
"""

# gcc 12 -O3 inlines heavy's early exit into its callers and leaves the loops in heavy.part.0.
PART_SOURCE = r"""
#include <stdio.h>

static int heavy(int x) {
    if (x < 10) return x;
    int s = 0;
    for (int i = 0; i < x; i++) {
        s += (i * x) ^ (s >> 3);
        if (s > 100000) s -= 77777;
        printf("%d\n", s);
    }
    for (int i = 0; i < x; i++) s += (i * i) ^ (s >> 2);
    return s;
}

int use1(int a) { return heavy(a) + 1; }
int use2(int a) { return heavy(a * 2) + 2; }

int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    printf("%d %d\n", use1(n), use2(n));
    return 0;
}
"""


def _run(sandbox: Sandbox, tmp: Path, asm: str, stdin: str = "12\n") -> str:
    """What a spliced file prints: assembled, linked and run in the sandbox, as candidates are."""
    s = tmp / "x.s"
    s.write_text(asm)
    exe = tmp / "x"
    build = build_binary([s], exe, sandbox=sandbox)
    assert build.ok, build.stderr
    run = sandbox.run(exe, stdin.encode())
    assert run.exit_code == 0, run
    return run.stdout.decode()


def _gcc_s(tmp: Path, source: str, *flags: str) -> str:
    c = tmp / "p.c"
    c.write_text(source)
    out = tmp / "p.s"
    subprocess.run(["gcc", "-O3", "-S", *flags, str(c), "-o", str(out)], check=True)
    return out.read_text()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as opened:
        yield opened


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("splice")


@pytest.fixture(scope="module")
def baseline(work: Path) -> str:
    return _gcc_s(work, C_SOURCE)


@pytest.fixture(scope="module")
def part_baseline(work: Path) -> str:
    return _gcc_s(work, PART_SOURCE)


@pytest.fixture(scope="module")
def expected(sandbox: Sandbox, work: Path, baseline: str) -> str:
    return _run(sandbox, work, baseline)


def test_gcc_made_the_parts_this_test_is_about(baseline: str) -> None:
    names = {fn.name for fn in parse_functions(baseline)}
    assert {"clampsum.cold", "scale.constprop.0"} <= names
    assert "square" not in names and "scale" not in names


@pytest.mark.parametrize(
    "name", ["clampsum", "answer", "main", "report", "scale", "scale.constprop.0"]
)
def test_round_trip_of_own_region_is_identity(baseline: str, name: str) -> None:
    family = function_family(baseline, name)
    region = function_text(baseline, family[0].name)
    assert splice_function(baseline, name, region) == baseline


def test_round_trip_of_whole_file_runs_the_same(
    sandbox: Sandbox, work: Path, baseline: str, expected: str
) -> None:
    for name in ("clampsum", "main", "scale"):
        spliced = splice_function(baseline, name, baseline)
        assert spliced == baseline
        assert _run(sandbox, work, spliced) == expected


def test_bare_answer_changes_behaviour(
    sandbox: Sandbox, work: Path, baseline: str, expected: str
) -> None:
    spliced = splice_function(baseline, "answer", "answer:\n\tmovl\t$42, %eax\n\tret\n")
    assert "\t.globl\tanswer" in spliced and "\t.type\tanswer, @function" in spliced
    out = _run(sandbox, work, spliced)
    assert out.split()[-1] == "42" and out.split()[:-1] == expected.split()[:-1]


def test_intel_answer_in_att_file(
    sandbox: Sandbox, work: Path, baseline: str, expected: str
) -> None:
    answer = ".intel_syntax noprefix\nanswer:\n\tmov\teax, 7\n\tret\n"
    spliced = splice_function(baseline, "answer", answer)
    assert _run(sandbox, work, spliced).split()[-1] == "7"
    bare = "answer:\n\tmov\teax, 8\n\tret\n"  # no directive: judged by its registers
    assert _run(sandbox, work, splice_function(baseline, "answer", bare)).split()[-1] == "8"


def test_replacing_a_function_with_a_cold_part(
    sandbox: Sandbox, work: Path, baseline: str, expected: str
) -> None:
    # a clampsum that never calls report: the cold part goes with the old code
    # reuse a label name that main also defines, so the splice must rename ours
    clash = min(local_labels(function_text(baseline, "main")) - {".LCOLDB", ".LHOTB"})
    new = (
        "clampsum:\n\txorl\t%eax, %eax\n\ttestl\t%esi, %esi\n\tjle\t.L2\n"
        f"{clash}:\n\taddl\t(%rdi), %eax\n\taddq\t$4, %rdi\n\tsubl\t$1, %esi\n"
        f"\tjne\t{clash}\n.L2:\n\tret\n"
    )
    spliced = splice_function(baseline, "clampsum", new)
    assert "clampsum.cold" not in spliced
    assert re.search(rf"^{re.escape(clash)}_\d+:", spliced, re.M)
    out = _run(sandbox, work, spliced)
    assert out.split()[0] == str(1 + 2000 + 12)
    assert out.split()[1:] == expected.split()[1:]


def test_clone_only_function_takes_a_clone(
    sandbox: Sandbox, work: Path, baseline: str, expected: str
) -> None:
    clone = function_text(baseline, "scale.constprop.0")
    assert splice_function(baseline, "scale", clone) == baseline
    # scale(12, 7) computed some other way: a changed constant shows up in the output
    new = "scale.constprop.0:\n\tmovl\t$5, %eax\n\tret\n"
    out = _run(sandbox, work, splice_function(baseline, "scale", new))
    assert out.split()[-3] == "5"
    with pytest.raises(SpliceError, match=r"specialised copies of `scale`"):
        splice_function(baseline, "scale", "scale:\n\tret\n")


def test_whole_file_candidate_brings_its_constants(
    sandbox: Sandbox, work: Path, baseline: str
) -> None:
    other = C_SOURCE.replace(
        "answer(void) { return 41; }", 'answer(void) { return puts("hello from the candidate"); }'
    )
    candidate = _gcc_s(work, other)
    spliced = splice_function(baseline, "answer", candidate)
    assert "hello from the candidate" in spliced
    out = _run(sandbox, work, spliced)
    assert out.startswith("hello from the candidate\n")


def test_part_round_trip_and_unused_part_dropped(
    sandbox: Sandbox, work: Path, part_baseline: str
) -> None:
    assert "heavy.part.0" in {fn.name for fn in parse_functions(part_baseline)}
    region = function_text(part_baseline, "heavy.part.0")
    assert splice_function(part_baseline, "heavy", region) == part_baseline
    expected = _run(sandbox, work, part_baseline, "20\n")
    first = splice_function(part_baseline, "use1", "use1:\n\tleal\t1(%rdi), %eax\n\tret\n")
    assert "heavy.part.0:" in first  # still called from use2 and main
    assert _run(sandbox, work, first, "20\n") == expected  # main has its own inlined copy
    second = splice_function(first, "use2", "use2:\n\tleal\t2(%rdi,%rdi), %eax\n\tret\n")
    assert "heavy.part.0:" in second
    new_main = (
        "\t.section\t.text.startup\nmain:\n\tsubq\t$8, %rsp\n\tmovl\t$5, %edi\n"
        "\tcall\tuse1\n\taddq\t$8, %rsp\n\tret\n"
    )
    third = splice_function(second, "main", new_main)
    assert "heavy.part.0" not in third  # nobody calls it any more
    (work / "t.s").write_text(third)
    assembled = build_binary(
        [work / "t.s"], work / "t.o", flags=("-c",), ldflags=(), sandbox=sandbox
    )
    assert assembled.ok, assembled.stderr


def test_errors_say_what_to_do(baseline: str) -> None:
    with pytest.raises(SpliceError, match=r"gcc inlined `square` into its callers at -O3"):
        splice_function(baseline, "square", "square:\n\tret\n", c_source=C_SOURCE)
    with pytest.raises(SpliceError, match=r"did you mean `clampsum`"):
        splice_function(baseline, "clampsun", "x")
    with pytest.raises(SpliceError, match=r"does not define `answer`"):
        splice_function(baseline, "answer", "\tmovl\t$1, %eax\n\tret\n")
    with pytest.raises(SpliceError, match=r"defines `other`, not `answer`"):
        splice_function(baseline, "answer", "\t.globl other\nother:\n\tret\n")
    with pytest.raises(SpliceError, match=r"\.L99"):
        splice_function(baseline, "answer", "answer:\n\tjmp\t.L99\n")


def test_static_function_stays_local(baseline: str) -> None:
    new = "\t.globl\treport\nreport:\n\tret\n"
    assert "\t.globl\treport" in splice_function(baseline, "report", new)  # it is global in C
    clone = "\t.globl\tscale.constprop.0\nscale.constprop.0:\n\tret\n"
    spliced = splice_function(baseline, "scale.constprop.0", clone)
    assert "\t.globl\tscale.constprop.0" not in spliced


STATIC_STATE = r"""
#include <stdio.h>
static unsigned long long state;
static unsigned next(void) { state = state * 6364136223846793005ULL + 1; return state >> 33; }
int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    unsigned long long acc = 0;
    for (int i = 0; i < n * 1000; i++) acc += next() % 7;
    printf("%d %llu\n", n, acc);
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("clang") is None, reason="needs clang")
def test_clang_function_with_common_state_splices_into_gcc(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """clang writes `.local state` / `.comm state` between two string constants; the splice
    copies the constant it needs, never the writable variable the baseline already has."""
    src = tmp_path / "s.c"
    src.write_text(STATIC_STATE)
    base = _gcc_s(tmp_path, STATIC_STATE, "-O3")
    subprocess.run(["clang", "-O3", "-fno-addrsig", "-S", str(src), "-o", str(tmp_path / "c.s")],
                   check=True)  # fmt: skip
    spliced = splice_function(base, "main", (tmp_path / "c.s").read_text())
    assert len(re.findall(r"\.comm\s+state", spliced)) == 1
    assert _run(sandbox, tmp_path, spliced) == _run(sandbox, tmp_path, base)
