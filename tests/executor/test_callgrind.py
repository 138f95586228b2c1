"""Instruction counts with valgrind's callgrind: deterministic, per function, never a time."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from asmopt.executor import callgrind
from asmopt.executor.callgrind import (
    CallgrindError,
    UnsupportedInstructionError,
    count_instructions,
    parse_callgrind_output,
)
from asmopt.executor.toolchain import ToolNotFoundError, find_tool

needs_valgrind = pytest.mark.skipif(find_tool("valgrind") is None, reason="valgrind not installed")

LOOP_C = """\
#include <stdio.h>
__attribute__((noinline)) long work(long n) {
    long s = 0;
    for (long i = 0; i < n; i++) s = s * 31 + i;
    return s;
}
int main(int argc, char **argv) {
    long n;
    if (scanf("%ld", &n) != 1) return 2;
    printf("%ld\\n", work(n));
    return argc > 1 ? 7 : 0;
}
"""

AVX512_S = """\
\t.text
\t.globl main
main:
\tvpaddd %zmm0, %zmm0, %zmm0
\txorl %eax, %eax
\tret
\t.section .note.GNU-stack,"",@progbits
"""


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("callgrind")
    (tmp / "loop.c").write_text(LOOP_C)
    (tmp / "avx512.s").write_text(AVX512_S)
    subprocess.run(["gcc", "-O2", str(tmp / "loop.c"), "-o", str(tmp / "loop")], check=True)
    subprocess.run(["gcc", str(tmp / "avx512.s"), "-o", str(tmp / "avx512")], check=True)
    return tmp


@needs_valgrind
def test_counts_grow_with_the_work_and_are_deterministic(binaries: Path) -> None:
    small = count_instructions(binaries / "loop", b"1000\n")
    large = count_instructions(binaries / "loop", b"101000\n")
    again = count_instructions(binaries / "loop", b"1000\n")
    assert again == small  # a deterministic metric: same run, same count
    # 100,000 more iterations of a loop of a few instructions, all of it in work().
    added = large.per_function["work"] - small.per_function["work"]
    assert 300_000 <= added <= 1_000_000
    assert large.program - small.program == added
    assert small.total > small.program  # the loader and libc count in the total only
    assert small.exit_code == 0 and small.signal is None


@needs_valgrind
def test_arguments_reach_the_program_and_its_exit_status_is_reported(binaries: Path) -> None:
    result = count_instructions(binaries / "loop", b"10\n", args=("x",))
    assert result.exit_code == 7


@needs_valgrind
def test_the_command_goes_through_the_wrapper(binaries: Path, tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def wrap(command: list[str]) -> list[str]:
        seen.append(command)
        return ["env", "ASMOPT_WRAPPED=1", *command]

    result = count_instructions(binaries / "loop", b"10\n", wrap=wrap, workdir=tmp_path)
    assert result.per_function["work"] > 0
    [command] = seen
    assert command[1] == "--tool=callgrind"
    assert command[2].startswith(f"--callgrind-out-file={tmp_path}/")
    assert list(tmp_path.iterdir()) == []  # the profile is removed from the caller's directory
    assert command[-1] == str((binaries / "loop").resolve())


@needs_valgrind
def test_avx512_code_is_reported_as_unsupported_by_valgrind(binaries: Path) -> None:
    with pytest.raises(UnsupportedInstructionError, match="AVX-512"):
        count_instructions(binaries / "avx512", b"")


@needs_valgrind
def test_a_wrapper_that_fails_gives_a_clear_error(binaries: Path) -> None:
    with pytest.raises(CallgrindError, match="wrote no callgrind profile"):
        count_instructions(binaries / "loop", b"", wrap=lambda c: ["sh", "-c", "exit 3"])


@needs_valgrind
def test_a_program_that_never_ends_times_out(binaries: Path) -> None:
    with pytest.raises(CallgrindError, match=r"timed out after 0\.5 s"):
        count_instructions(binaries / "loop", b"9000000000000\n", timeout=0.5)


def test_missing_inputs_and_tools_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if find_tool("valgrind"):
        with pytest.raises(CallgrindError, match="does not exist"):
            count_instructions(tmp_path / "nothing", b"")
    monkeypatch.setattr(callgrind, "require_tool", _missing)
    with pytest.raises(ToolNotFoundError, match="valgrind not found: apt-get install valgrind"):
        count_instructions(tmp_path / "nothing", b"")


def _missing(name: str) -> str:
    raise ToolNotFoundError(f"{name} not found: apt-get install {name}")


def test_parse_profile_with_name_compression_and_calls() -> None:
    profile = """\
# callgrind format
version: 1
cmd:  /tmp/prog 5
positions: line
events: Ir
summary: 1000

ob=(1) /tmp/prog
fl=(1) prog.c
fn=(1) main
4 10
+2 5
cob=(2) /lib/libc.so.6
cfn=(2) printf
calls=1 +24
* 300
* 1

ob=(2)
fn=(2)
0 300

ob=(1)
fn=(3) work
-3 7
totals: 1000
"""
    total, by_object = parse_callgrind_output(profile)
    assert total == 1000
    # The 300 after calls= is printf's inclusive cost, not main's own.
    assert by_object == {
        ("/tmp/prog", "main"): 16,
        ("/lib/libc.so.6", "printf"): 300,
        ("/tmp/prog", "work"): 7,
    }


def test_counting_inside_the_sandbox_matches_counting_outside(tmp_path: Path) -> None:
    """The sandboxed count is the real thing: same instructions in the program's own code."""
    pytest.importorskip("pyseccomp")
    from asmopt.executor.callgrind import count_instructions, count_instructions_sandboxed
    from asmopt.executor.sandbox import Sandbox

    src = tmp_path / "loop.c"
    src.write_text(
        '#include <stdio.h>\nint main(void){long n; if(scanf("%ld",&n)!=1) return 1;'
        ' unsigned long s=0; for(long i=0;i<n;i++) s+=i*i; printf("%lu\\n", s); return 0;}\n'
    )
    binary = tmp_path / "loop"
    subprocess.run(["gcc", "-O1", str(src), "-o", str(binary)], check=True)
    outside = count_instructions(binary, b"100000\n")
    with Sandbox() as box:
        inside = count_instructions_sandboxed(box, binary, b"100000\n")
    assert inside.exit_code == 0
    assert inside.program == outside.program
    assert inside.program > 100000


def test_parse_cachegrind_profile_adds_a_functions_lines_across_files() -> None:
    profile = """\
desc: I1 cache:         32768 B, 64 B, 8-way associative
cmd: /tmp/prog 5
events: Ir Dr
fl=prog.c
fn=main
4 10 2
6 5 0
fl=/usr/include/x86_64-linux-gnu/bits/stdio2.h
fn=main
12 3 1
fl=???
fn=printf@@GLIBC_2.2.5
0 300 40
fl=prog.c
fn=work
9 7 7
summary: 325 50
"""
    total, per_function = callgrind.parse_cachegrind_output(profile)
    assert total == 325
    # main's lines inlined from a header are main's own instructions too.
    assert per_function == {"main": 18, "printf@@GLIBC_2.2.5": 300, "work": 7}


@needs_valgrind
def test_cachegrind_counts_each_function_as_callgrind_does(binaries: Path) -> None:
    """Profiles count with cachegrind, which keeps no call graph: the instructions of each of
    the program's functions are callgrind's self counts, in the sandbox."""
    pytest.importorskip("pyseccomp")
    from asmopt.executor.callgrind import count_instructions_sandboxed
    from asmopt.executor.sandbox import Sandbox

    with Sandbox() as box:
        by_callgrind = count_instructions_sandboxed(box, binaries / "loop", b"20000\n")
        by_cachegrind = count_instructions_sandboxed(
            box, binaries / "loop", b"20000\n", tool="cachegrind"
        )
        with pytest.raises(ValueError, match="tool"):
            count_instructions_sandboxed(box, binaries / "loop", b"1\n", tool="memcheck")
    assert by_cachegrind.exit_code == 0
    assert by_cachegrind.per_function["work"] == by_callgrind.per_function["work"] > 20000
    # callgrind counts the PLT stubs main jumps through (scanf, printf) as main's, and the
    # binary's unnamed code as the program's; cachegrind counts its named functions alone.
    assert 0 <= by_callgrind.per_function["main"] - by_cachegrind.per_function["main"] <= 12
    assert 0 <= by_callgrind.program - by_cachegrind.program <= 100
