"""llvm-mca estimates of snippets and of the loops in gcc's assembly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from asmopt.executor import estimate as estimate_module
from asmopt.executor.estimate import (
    EstimateError,
    estimate,
    estimate_loops,
    host_cpu,
    mca_input,
)
from asmopt.executor.toolchain import ToolNotFoundError, find_tool

pytestmark = pytest.mark.skipif(find_tool("llvm-mca") is None, reason="llvm-mca not installed")


def _imul_chain(length: int) -> str:
    """A loop whose body multiplies %rax by itself ``length`` times, each waiting for the last."""
    chain = "\n".join("\timulq %rax, %rax" for _ in range(length))
    return f".L2:\n{chain}\n\tdecq %rcx\n\tjne .L2\n"


def test_a_longer_dependency_chain_costs_more_cycles() -> None:
    one = estimate(_imul_chain(1), cpu="skylake")
    four = estimate(_imul_chain(4), cpu="skylake")
    assert four.cycles_per_iteration > 3 * one.cycles_per_iteration
    assert one.cycles_per_iteration >= 3  # imul latency bounds each iteration
    assert (one.instructions, four.instructions) == (3, 6)
    assert four.cpu == "skylake"
    assert four.instructions_per_cycle < one.instructions_per_cycle


def test_independent_instructions_run_in_parallel() -> None:
    independent = "\n".join(f"\timulq %r{r}, %r{r}" for r in (8, 9, 10, 11))
    dependent = "\n".join("\timulq %rax, %rax" for _ in range(4))
    assert (
        estimate(independent, cpu="skylake").cycles_per_iteration
        < estimate(dependent, cpu="skylake").cycles_per_iteration / 2
    )


def test_default_cpu_is_this_machine() -> None:
    result = estimate("\taddq %rax, %rbx\n")
    assert result.cpu == host_cpu()
    assert result.cpu not in ("native", "(unknown)", "")
    assert result.block_rthroughput > 0 and result.uops >= 1


def test_a_whole_gcc_file_with_debug_directives_is_estimated(tmp_path: Path) -> None:
    source = tmp_path / "sum.c"
    source.write_text(
        "long sum(const long *a, long n) {\n"
        "  long s = 0;\n"
        "  for (long i = 0; i < n; i++) s += a[i] ^ 5;\n"
        "  return s;\n"
        "}\n"
    )
    subprocess.run(
        ["gcc", "-O3", "-g", "-S", str(source), "-o", str(tmp_path / "sum.s")], check=True
    )
    asm = (tmp_path / "sum.s").read_text()
    assert ".loc" in asm and ".cfi_startproc" in asm  # what raw llvm-mca rejects
    result = estimate(asm)
    assert result.instructions > 5
    loops = estimate_loops(asm)
    assert loops, "gcc's loop has a backward branch to a .L label"
    assert all(label.startswith(".L") for label, _ in loops)
    assert all(e.instructions < result.instructions for _, e in loops)


def test_estimate_loops_finds_nested_and_numeric_label_loops() -> None:
    asm = """\
outer:
1:\tmovq %rsi, %rcx
2:\timulq %rax, %rax
\tdecq %rcx
\tjnz 2b
\tdecq %rdx
\tjnz 1b
\tret
"""
    loops = estimate_loops(asm, cpu="skylake")
    assert [label for label, _ in loops] == ["1", "2"]  # outer first, in source order
    outer, inner = loops[0][1], loops[1][1]
    assert (outer.instructions, inner.instructions) == (6, 3)


def test_forward_branches_are_not_loops() -> None:
    assert estimate_loops("\ttestq %rdi, %rdi\n\tje .L5\n\tincq %rax\n.L5:\n\tret\n") == []


def test_mca_input_keeps_line_numbers_and_drops_directives() -> None:
    asm = '\t.file "x.c"\n\t.loc 1 2 3\nf:\taddl $1, %eax # one\n\t.string "a;b"\n\tret; nop\n'
    assert mca_input(asm).splitlines() == ["", "", "f: addl $1, %eax", "", "ret; nop"]


def test_invalid_instruction_is_an_error_on_its_line() -> None:
    # llvm-mca 14 prints this error but exits 0 without the instruction; we must not.
    with pytest.raises(EstimateError, match="line 3: invalid operand"):
        estimate("\tnop\n\t.p2align 4\n\taddq %eax, %rbx\n")
    with pytest.raises(EstimateError, match="line 1: invalid instruction mnemonic 'bogus'"):
        estimate("\tbogus %eax\n")


def test_unknown_cpu_and_empty_snippets_are_errors() -> None:
    with pytest.raises(EstimateError, match="does not know CPU 'pentium9000'"):
        estimate("\tnop\n", cpu="pentium9000")
    with pytest.raises(EstimateError, match="no instructions"):
        estimate("\t.text\n.L3:\n")


def test_missing_llvm_mca_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(estimate_module, "find_tool", lambda name: None)
    with pytest.raises(ToolNotFoundError, match="llvm-mca not found: apt-get install llvm"):
        estimate("\tnop\n", cpu="skylake")
