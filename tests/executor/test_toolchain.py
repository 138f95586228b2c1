"""Building with gcc/clang and reading their messages, against real tool output."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from asmopt.executor import toolchain
from asmopt.executor.results import Diagnostic, Severity
from asmopt.executor.toolchain import (
    build_binary,
    check_assembly,
    compile_to_asm,
    install_hint,
    parse_diagnostics,
    toolchain_fingerprint,
    which_compiler,
)

needs_clang = pytest.mark.skipif(which_compiler("clang") is None, reason="clang not installed")

GOOD_C = """\
#include <stdio.h>
int square(int x) { return x * x; }
int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    printf("%d\\n", square(n));
    return 0;
}
"""

BAD_C = """\
#include <stdio.h>
int main(void) {
    int x = 1
    return y;
}
"""

BAD_ASM = """\
\t.text
\t.globl f
f:
\tmovl %edi, %eax
\taddq %eax, %rbx
\tbogus %eax
\tret
\t.byte 300
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _errors(diagnostics: tuple[Diagnostic, ...]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.severity is Severity.ERROR]


@pytest.mark.parametrize(
    "compiler", ["gcc", pytest.param("clang", marks=needs_clang)], ids=["gcc", "clang"]
)
def test_compile_to_asm_writes_assembly_with_the_function(tmp_path: Path, compiler: str) -> None:
    source = _write(tmp_path / "prog.c", GOOD_C)
    result = compile_to_asm(source, tmp_path / "prog.s", compiler=compiler)
    assert result.ok, result.stderr
    assert result.output == str(tmp_path / "prog.s")
    assert "square:" in (tmp_path / "prog.s").read_text()
    assert result.command[1] == "-S" and "-O3" in result.command
    assert _errors(result.diagnostics) == []


@pytest.mark.parametrize(
    "compiler", ["gcc", pytest.param("clang", marks=needs_clang)], ids=["gcc", "clang"]
)
def test_bad_c_fails_with_an_error_on_the_right_line(tmp_path: Path, compiler: str) -> None:
    source = _write(tmp_path / "bad.c", BAD_C)
    result = compile_to_asm(source, tmp_path / "bad.s", compiler=compiler)
    assert not result.ok
    assert result.output is None
    errors = _errors(result.diagnostics)
    assert errors, result.stderr
    # gcc blames the next statement (line 4), clang the end of the declaration (line 3).
    assert errors[0].file == str(source)
    assert errors[0].line in (3, 4)
    assert errors[0].column is not None


def test_warnings_do_not_fail_a_build_and_carry_locations(tmp_path: Path) -> None:
    source = _write(tmp_path / "warn.c", "int f(void) { int unused; return 0; }\n")
    result = compile_to_asm(source, tmp_path / "warn.s", flags=("-O3", "-Wall"))
    assert result.ok
    [warning] = result.diagnostics
    assert warning.severity is Severity.WARNING
    assert (warning.line, warning.column) == (1, 19)
    assert "unused" in warning.message


def test_build_binary_links_assembly_with_c_like_the_paper(tmp_path: Path) -> None:
    source = _write(tmp_path / "prog.c", GOOD_C)
    assert compile_to_asm(source, tmp_path / "prog.s").ok
    result = build_binary([tmp_path / "prog.s"], tmp_path / "prog")
    assert result.ok, result.stderr
    assert result.command[-1] == "-lm"  # libraries after the objects that need them
    run = subprocess.run([tmp_path / "prog"], input=b"12\n", capture_output=True, check=True)
    assert run.stdout == b"144\n"


def test_undefined_reference_is_an_error_naming_the_symbol(tmp_path: Path) -> None:
    source = _write(tmp_path / "undef.c", "int foo(int);\nint main(void) { return foo(3); }\n")
    result = build_binary([source], tmp_path / "undef")
    assert not result.ok
    undefined = [d for d in result.diagnostics if "undefined reference to `foo'" in d.message]
    assert len(undefined) == 1
    assert undefined[0].severity is Severity.ERROR
    assert undefined[0].line is None  # no debug info: ld only knows a section offset
    assert "main" in undefined[0].message  # the function that made the reference
    assert any(d.message == "ld returned 1 exit status" for d in result.diagnostics)


def test_undefined_reference_with_debug_info_has_the_c_line(tmp_path: Path) -> None:
    source = _write(tmp_path / "undef.c", "int foo(int);\nint main(void) {\n  return foo(3);\n}\n")
    result = build_binary([source], tmp_path / "undef", flags=("-g",))
    [undefined] = [d for d in result.diagnostics if "foo" in d.message]
    assert (undefined.file, undefined.line) == (str(source), 3)


def test_failed_build_never_reports_a_stale_output(tmp_path: Path) -> None:
    out = tmp_path / "prog"
    out.write_text("left over from an earlier build")
    result = build_binary([_write(tmp_path / "bad.c", BAD_C)], out)
    assert not result.ok and result.output is None
    assert not out.exists()


def test_check_assembly_locates_gas_errors_in_the_buffer() -> None:
    diagnostics = check_assembly(BAD_ASM, filename="/home/me/kernel.s")
    by_line = {d.line: d for d in diagnostics}
    assert by_line[5].severity is Severity.ERROR and "mismatch" in by_line[5].message
    assert by_line[6].severity is Severity.ERROR and "bogus" in by_line[6].message
    assert by_line[8].severity is Severity.WARNING  # 300 truncated to a byte
    assert {d.file for d in diagnostics} == {"/home/me/kernel.s"}


@needs_clang
def test_check_assembly_with_clang_gives_columns() -> None:
    diagnostics = check_assembly(BAD_ASM, assembler="clang")
    bogus = next(d for d in diagnostics if d.line == 6)
    assert bogus.file == "input.s"
    assert bogus.column == 2
    assert "bogus" in bogus.message


def test_check_assembly_of_good_code_is_quiet() -> None:
    assert check_assembly("\t.text\nf:\n\tleal (%rdi,%rdi), %eax\n\tret\n") == ()


def test_a_missing_compiler_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(toolchain, "find_tool", lambda name: None)
    result = compile_to_asm(_write(tmp_path / "p.c", GOOD_C), tmp_path / "p.s", compiler="clang")
    assert not result.ok
    assert result.diagnostics[0].message == "clang not found: apt-get install clang"
    assert install_hint("clang-14") == "apt-get install clang"
    assert install_hint("llvm-mca") == "apt-get install llvm"


def test_a_hanging_compiler_times_out_with_a_clear_message(tmp_path: Path) -> None:
    slow = _write(tmp_path / "slowcc", "#!/bin/sh\nexec sleep 30\n")
    os.chmod(slow, 0o755)
    result = compile_to_asm(tmp_path / "p.c", tmp_path / "p.s", compiler=str(slow), timeout=0.3)
    assert not result.ok
    assert "timed out after 0.3 s" in result.diagnostics[0].message
    assert result.seconds < 5


def test_fingerprint_names_compiler_and_assembler_and_is_stable() -> None:
    fingerprint = toolchain_fingerprint("gcc")
    assert "gcc" in fingerprint and "GNU assembler" in fingerprint
    assert toolchain_fingerprint("gcc") == fingerprint
    assert "not installed" in toolchain_fingerprint("no-such-compiler-xyz")
    if which_compiler("clang"):
        assert toolchain_fingerprint("clang") != fingerprint


# --- parse_diagnostics on real output of each tool ----------------------------------------------


def _stderr(command: list[str | Path], cwd: Path) -> str:
    env = {**os.environ, "LC_ALL": "C"}
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    return proc.stderr


def test_parse_gnu_as_output(tmp_path: Path) -> None:
    _write(tmp_path / "bad.s", BAD_ASM)
    stderr = _stderr(["as", "bad.s", "-o", "bad.o"], tmp_path)
    assert "Assembler messages:" in stderr
    diagnostics = parse_diagnostics(stderr)
    assert [(d.file, d.line, d.severity) for d in diagnostics] == [
        ("bad.s", 5, Severity.ERROR),
        ("bad.s", 6, Severity.ERROR),
        ("bad.s", 8, Severity.WARNING),
    ]
    assert diagnostics[1].message == "no such instruction: `bogus %eax'"


@needs_clang
def test_parse_clang_integrated_assembler_output(tmp_path: Path) -> None:
    _write(tmp_path / "bad.s", BAD_ASM)
    diagnostics = parse_diagnostics(_stderr(["clang", "-c", "bad.s", "-o", "bad.o"], tmp_path))
    assert (diagnostics[1].line, diagnostics[1].column) == (6, 2)
    assert diagnostics[1].message == "invalid instruction mnemonic 'bogus'"
    assert all(d.severity is Severity.ERROR for d in diagnostics)  # no "1 error generated."


def test_parse_multiple_definition_from_ld(tmp_path: Path) -> None:
    _write(tmp_path / "a.c", "int foo(void) { return 1; }\n")
    _write(tmp_path / "b.c", "int foo(void) { return 2; }\nint main(void) { return foo(); }\n")
    diagnostics = parse_diagnostics(_stderr(["gcc", "-g", "a.c", "b.c", "-o", "ab"], tmp_path))
    clash = next(d for d in diagnostics if "multiple definition of `foo'" in d.message)
    assert clash.severity is Severity.ERROR and clash.file and clash.file.endswith("b.c")


def test_parse_messages_without_a_location() -> None:
    stderr = (
        "cc1: fatal error: nothere.c: No such file or directory\n"
        "compilation terminated.\n"
        "/usr/bin/ld: warning: /tmp/cc1.o: missing .note.GNU-stack section implies "
        "executable stack\n"
        "/usr/bin/ld: NOTE: This behaviour is deprecated\n"
        "/usr/bin/ld: cannot find -lnope: No such file or directory\n"
        "{standard input}: Assembler messages:\n"
        "{standard input}:3: Error: junk at end of line\n"
        "Error: can't open x.s for reading: No such file or directory\n"
        "collect2: error: ld returned 1 exit status\n"
        "clang: error: linker command failed with exit code 1 (use -v to see invocation)\n"
    )
    assert [(d.file, d.line, d.severity.value, d.message) for d in parse_diagnostics(stderr)] == [
        (None, None, "error", "nothere.c: No such file or directory"),
        (None, None, "warning", "/tmp/cc1.o: missing .note.GNU-stack section implies "
         "executable stack"),
        (None, None, "note", "This behaviour is deprecated"),
        (None, None, "error", "cannot find -lnope: No such file or directory"),
        ("{standard input}", 3, "error", "junk at end of line"),
        (None, None, "error", "can't open x.s for reading: No such file or directory"),
        (None, None, "error", "ld returned 1 exit status"),
        (None, None, "error", "linker command failed with exit code 1 (use -v to see invocation)"),
    ]  # fmt: skip


def test_parse_ignores_colour_codes_and_source_excerpts() -> None:
    stderr = (
        "x.c: In function 'main':\n"
        "\x1b[01m\x1b[Kx.c:4:5:\x1b[m\x1b[K \x1b[01;31m\x1b[Kerror: \x1b[m\x1b[Kexpected ';'\n"
        "    4 |     return y;\n"
        "      |     ^~~~~~\n"
        "1 error generated.\n"
    )
    assert parse_diagnostics(stderr) == (Diagnostic("x.c", 4, 5, Severity.ERROR, "expected ';'"),)
