"""Function symbols, disassembly and C-line-to-instruction maps of real gcc -O3 -g builds."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest

from asmopt.executor.elf import (
    ElfInspectionError,
    disassemble,
    functions,
    instructions_for_line,
    line_map,
)

SOURCE = """\
#include <stdio.h>
__attribute__((noinline)) int checksum(const int *a, int n) {
    int s = 0;
    for (int i = 0; i < n; i++)
        s += a[i] >> 3;
    return s;
}
static int data[1000];
int main(void) {
    // a comment line: no code
    for (int i = 0; i < 1000; i++) data[i] = i;
    printf("%d\\n", checksum(data, 1000));
    return 0;
}
"""
LOOP_BODY_LINE = 5  # s += a[i] >> 3;
COMMENT_LINE = 10


def _gcc(tmp: Path, out: str, *flags: str) -> Path:
    source = tmp / "prog.c"
    if not source.exists():
        source.write_text(SOURCE)
    subprocess.run(["gcc", *flags, str(source), "-o", str(tmp / out)], check=True)
    return tmp / out


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory holding prog.c and its builds: DWARF 5 (gcc 12's default), DWARF 4, no -g."""
    tmp = tmp_path_factory.mktemp("elf")
    _gcc(tmp, "prog", "-O3", "-g")
    _gcc(tmp, "prog4", "-O3", "-gdwarf-4")
    _gcc(tmp, "nodebug", "-O3")
    _gcc(tmp, "prog.o", "-O3", "-g", "-c")
    return tmp


def test_functions_lists_defined_functions_by_address(build: Path) -> None:
    found = functions(build / "prog")
    names = [f.name for f in found]
    assert {"main", "checksum"} <= set(names)
    assert [f.address for f in found] == sorted(f.address for f in found)
    assert all(f.size > 0 for f in found)
    assert "printf" not in names  # imported, not defined here


def test_disassemble_gives_the_whole_function_in_att_syntax(build: Path) -> None:
    checksum = next(f for f in functions(build / "prog") if f.name == "checksum")
    code = disassemble(build / "prog", "checksum")
    assert code[0].address == checksum.address
    assert sum(i.size for i in code) == checksum.size
    assert any(i.mnemonic.startswith("ret") for i in code)
    assert any("%rdi" in i.op_str for i in code)  # AT&T register names
    assert all(len(i.bytes_hex) == 2 * i.size for i in code)


def test_disassemble_works_on_object_files(build: Path) -> None:
    code = disassemble(build / "prog.o", "checksum")
    assert (
        code[0].address
        == next(f for f in functions(build / "prog.o") if f.name == "checksum").address
    )
    assert any(i.mnemonic.startswith("ret") for i in code)


def test_line_map_covers_the_source_lines(build: Path) -> None:
    rows = line_map(build / "prog")
    ours = [r for r in rows if r.file.endswith("prog.c")]
    assert ours and ours[0].file == str(build / "prog.c")  # absolute, joined with its directory
    assert {LOOP_BODY_LINE, 12} <= {r.line for r in ours}
    assert all(r.end_address > r.address for r in rows)
    assert COMMENT_LINE not in {r.line for r in ours}


def test_loop_line_maps_to_the_instructions_of_its_body(build: Path) -> None:
    code = instructions_for_line(build / "prog", "prog.c", LOOP_BODY_LINE)
    mnemonics = [i.mnemonic for i in code]
    # gcc -O3 vectorises the loop (paddd) and keeps a scalar tail (addl): both are the add
    # of this line, and so are the shifts, though the loop's code is not contiguous.
    assert any("add" in m for m in mnemonics), mnemonics
    assert any(m.startswith(("sar", "psra", "vpsra")) for m in mnemonics), mnemonics
    gaps = [b.address - (a.address + a.size) for a, b in itertools.pairwise(code)]
    assert any(gap > 0 for gap in gaps)
    assert [i.address for i in code] == sorted({i.address for i in code})
    # The same line asked by absolute path gives the same instructions.
    assert instructions_for_line(build / "prog", build / "prog.c", LOOP_BODY_LINE) == code


def test_dwarf4_and_dwarf5_give_the_same_lines(build: Path) -> None:
    def lines(binary: Path) -> set[tuple[str, int]]:
        return {(r.file, r.line) for r in line_map(binary) if r.file.endswith("prog.c")}

    assert lines(build / "prog") == lines(build / "prog4")


def test_a_line_without_code_has_no_instructions(build: Path) -> None:
    assert instructions_for_line(build / "prog", "prog.c", COMMENT_LINE) == []
    assert instructions_for_line(build / "prog", "other.c", LOOP_BODY_LINE) == []


def test_clear_errors_for_bad_inputs(build: Path) -> None:
    with pytest.raises(ElfInspectionError, match="not an ELF file"):
        functions(build / "prog.c")
    with pytest.raises(ElfInspectionError, match="build it with -g"):
        line_map(build / "nodebug")
    with pytest.raises(ElfInspectionError, match=r"'nosuch' is not in .*checksum"):
        disassemble(build / "prog", "nosuch")
    with pytest.raises(ElfInspectionError, match="does not exist"):
        line_map(build / "missing")
