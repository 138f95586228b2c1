"""Finding functions in real gcc -O3 output and in hand-written assembly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from asmopt.executor.asmfile import (
    AsmStructureError,
    clone_parent,
    function_body,
    function_family,
    function_text,
    local_labels,
    parse_functions,
    referenced_symbols,
)

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

# gcc -O3 puts the unlikely branch of clampsum in clampsum.cold (.text.unlikely), makes a
# .constprop.0 clone of scale, and partially inlines heavy, leaving heavy.part.0.
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
    int n = 0;
    if (scanf("%d", &n) != 1) return 1;
    int a[3] = {1, 2000, n};
    printf("%d %d %d %d\n", clampsum(a, 3), use1(n), use2(n), scale(n, 7));
    return 0;
}
"""


def _compile(tmp: Path, source: str, *flags: str) -> str:
    c = tmp / "prog.c"
    c.write_text(source)
    s = tmp / "prog.s"
    subprocess.run(["gcc", "-O3", "-S", *flags, str(c), "-o", str(s)], check=True)
    return s.read_text()


@pytest.fixture(scope="module")
def gcc_asm(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _compile(tmp_path_factory.mktemp("att"), C_SOURCE)


@pytest.fixture(scope="module")
def gcc_intel_asm(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _compile(tmp_path_factory.mktemp("intel"), C_SOURCE, "-masm=intel")


def test_finds_functions_clones_and_cold_parts(gcc_asm: str) -> None:
    fns = {fn.name: fn for fn in parse_functions(gcc_asm)}
    assert {"report", "clampsum", "clampsum.cold", "scale.constprop.0", "heavy.part.0"} <= set(fns)
    assert {"use1", "use2", "main"} <= set(fns)
    assert not any(name.startswith(".L") for name in fns)
    assert fns["clampsum.cold"].section == ".text.unlikely"
    assert fns["clampsum.cold"].parent == "clampsum"
    assert fns["scale.constprop.0"].parent == "scale"
    assert fns["heavy.part.0"].parent == "heavy"
    assert fns["main"].section == ".text.startup"
    assert fns["clampsum"].is_global and not fns["scale.constprop.0"].is_global
    assert all(fn.has_cfi for fn in fns.values())
    starts = [fn.label_line for fn in parse_functions(gcc_asm)]
    assert starts == sorted(starts)


def test_region_lines(gcc_asm: str) -> None:
    lines = gcc_asm.splitlines()
    main = next(fn for fn in parse_functions(gcc_asm) if fn.name == "main")
    assert lines[main.label_line] == "main:"
    region = lines[main.start_line : main.label_line]
    assert '\t.section\t.text.startup,"ax",@progbits' in region
    assert "\t.globl\tmain" in region
    # gcc gave main a cold part too, so the region ends with gcc's hot/cold end markers
    assert "\t.size\tmain, .-main" in lines[main.label_line : main.end_line]
    assert lines[main.end_line].strip().startswith(".section\t.rodata")


def test_cold_part_nests_in_its_function(gcc_asm: str) -> None:
    fns = {fn.name: fn for fn in parse_functions(gcc_asm)}
    hot, cold = fns["clampsum"], fns["clampsum.cold"]
    assert hot.start_line < hot.body_end_line <= cold.start_line < cold.end_line <= hot.end_line
    text = function_text(gcc_asm, "clampsum")
    assert ".size\tclampsum, .-clampsum" in text
    assert ".size\tclampsum.cold, .-clampsum.cold" in text
    assert "clampsum.cold:" in text
    assert "\t.globl\tclampsum\n" in text


def test_family(gcc_asm: str) -> None:
    assert [fn.name for fn in function_family(gcc_asm, "clampsum")] == [
        "clampsum",
        "clampsum.cold",
    ]
    assert [fn.name for fn in function_family(gcc_asm, "scale")] == ["scale.constprop.0"]
    assert function_family(gcc_asm, "nothing") == []


def test_body_is_what_llvm_mca_needs(gcc_asm: str) -> None:
    body = function_body(gcc_asm, "clampsum")
    assert "cfi" not in body and ".size" not in body and ".p2align" not in body
    assert "clampsum.cold" not in body  # the cold part is not the hot path
    assert "\tret" in body and "\tpushq\t%rbp" in body
    assert body.splitlines()[0].startswith(".L")


def test_intel_syntax(gcc_intel_asm: str) -> None:
    fns = {fn.name: fn for fn in parse_functions(gcc_intel_asm)}
    assert {"clampsum", "clampsum.cold", "scale.constprop.0", "main"} <= set(fns)
    assert fns["clampsum"].intel_syntax
    body = function_body(gcc_intel_asm, "clampsum")
    assert body.startswith(".intel_syntax noprefix\n")
    assert "report" in referenced_symbols(function_text(gcc_intel_asm, "clampsum"))
    assert "rbx" not in referenced_symbols(gcc_intel_asm)


def test_missing_function_names_what_exists(gcc_asm: str) -> None:
    with pytest.raises(AsmStructureError, match="clampsum"):
        function_text(gcc_asm, "nope")


HAND_WRITTEN = """\
# add two numbers
    .text
    .globl add
add:
    leaq (%rdi,%rsi), %rax
    ret

    .globl twice
twice:
    call helper
loop:
    addq %rax, %rax
    ret

helper:
    movq %rdi, %rax
    ret

    .data
    .globl table
table:
    .long 1, 2, 3
"""


def test_hand_written_without_directives() -> None:
    fns = parse_functions(HAND_WRITTEN)
    assert [fn.name for fn in fns] == ["add", "twice", "helper"]
    add = fns[0]
    assert not add.has_cfi and add.is_global
    assert function_text(HAND_WRITTEN, "add") == (
        "    .text\n    .globl add\nadd:\n    leaq (%rdi,%rsi), %rax\n    ret\n"
    )
    # a non-global label inside a function (loop) is not a function
    assert "loop:" in function_text(HAND_WRITTEN, "twice")
    assert function_text(HAND_WRITTEN, "helper").rstrip().endswith("ret")
    assert "table" not in {fn.name for fn in fns}


def test_cfi_without_type() -> None:
    text = 'f:\n\t.cfi_startproc\n\tmovl $1, %eax\n\tret\n\t.cfi_endproc\n\t.ident "x"\n'
    (fn,) = parse_functions(text)
    assert fn.name == "f" and fn.has_cfi and not fn.is_global
    assert fn.end_line == 5


def test_clone_parent_names() -> None:
    assert clone_parent("f.cold") == "f"
    assert clone_parent("f.part.0") == "f"
    assert clone_parent("f.constprop.0") == "f"
    assert clone_parent("f.isra.0") == "f"
    assert clone_parent("f.constprop.0.isra.0") == "f"
    assert clone_parent("f.part.0.cold") == "f"
    assert clone_parent("f") is None
    assert clone_parent(".LC0") is None


def test_symbols_and_labels() -> None:
    text = (
        "\tleaq\t.LC0(%rip), %rdi\n\tcall\tprintf@PLT\n\tmovl\t$.LC1, %eax\n"
        "\tmovq\tstderr(%rip), %rdi\n.L3:\n\tjmp\t.L3\n\t.globl\tf\n\t.long\t.L5-.L4\n"
        "\tmov\teax, DWORD PTR counter[rip]\n\tmovl\t$1000, %eax\n"
    )
    assert referenced_symbols(text) == {
        ".LC0",
        "printf",
        ".LC1",
        "stderr",
        ".L3",
        ".L5",
        ".L4",
        "counter",
    }
    assert local_labels(text) == {".L3"}
