"""Buffers to functions: tree-sitter-c with incremental re-parsing, GAS assembly in AT&T and
Intel syntax, positions in UTF-16."""

from __future__ import annotations

import random

from lsprotocol import types

from asmopt.server.documents import Buffer, Language, asm_functions, language_for

C = """\
int add(int a, int b) { return a + b; }

#ifdef FAST
static inline unsigned *pick(unsigned *p) { return p; }
#endif

/* é ü — non-ASCII before a function */ long mul(long a, long b)
{
    return a * b;
}
"""

INTEL = """\
\t.intel_syntax noprefix
\t.text
\t.globl\ttwice
\t.type\ttwice, @function
twice:
\tlea\teax, [rdi+rdi]
\tret
\t.size\ttwice, .-twice
"""


def _change(buffer: Buffer, start: int, end: int, text: str):
    return types.TextDocumentContentChangePartial(
        range=types.Range(buffer.position_at(start), buffer.position_at(end)), text=text
    )


def test_language_ids():
    assert language_for("c") is Language.C
    for lang in ("asm", "gas", "x86asm", "asm-intel-x86-generic"):
        assert language_for(lang) is Language.ASM
    assert language_for("python") is None and language_for("") is None


def test_c_functions_with_names_ranges_and_signature_end():
    b = Buffer("file:///a.c", Language.C, C)
    fns = {f.name: f for f in b.functions()}
    assert list(fns) == ["add", "pick", "mul"]
    assert (fns["add"].name_range.start.line, fns["add"].name_range.start.character) == (0, 4)
    assert fns["add"].signature_end.character == len("int add(int a, int b)")
    # the non-ASCII comment counts in UTF-16 units
    line = C.splitlines()[6]
    assert fns["mul"].name_range.start.character == line.index("mul")
    assert fns["mul"].range.end.line == 9
    assert b.function_at(types.Position(8, 5)).name == "mul"


def test_incremental_edits_match_a_fresh_parse():
    rng = random.Random(7)
    b = Buffer("file:///a.c", Language.C, C)
    pieces = ["int f(void) { return 1; }\n", "{", "}", "(", "é", "\n", "x", "", "/*", "*/", "😀"]
    for _ in range(300):
        n = len(b.text)
        start = rng.randint(0, n)
        end = min(n, start + rng.randint(0, 6))
        b.apply_changes([_change(b, start, end, rng.choice(pieces))], None)
        fresh = Buffer("file:///a.c", Language.C, b.text)
        assert b.functions() == fresh.functions()
        assert str(b.tree.root_node) == str(fresh.tree.root_node)


def test_whole_document_change_and_positions_round_trip():
    b = Buffer("file:///a.c", Language.C, "x😀y\nz")
    assert b.position_at(2) == types.Position(0, 3)  # 😀 is two UTF-16 units
    assert b.offset_at(types.Position(0, 3)) == 2
    b.apply_changes([types.TextDocumentContentChangeWholeDocument(text=C)], 2)
    assert [f.name for f in b.functions()] == ["add", "pick", "mul"] and b.version == 2


def test_asm_functions_att_and_intel():
    att = asm_functions(
        "\t.text\n\t.globl f\n\t.type f, @function\nf:\n\tmovl $1, %eax\n\tret\n\t.size f, .-f\n"
    )
    assert [(f.name, f.name_range.start.line) for f in att] == [("f", 3)]
    (twice,) = asm_functions(INTEL)
    assert twice.name == "twice" and twice.range.start.line == 1 and twice.range.end.line == 8
    assert twice.signature_end == types.Position(4, len("twice:"))


def test_half_typed_and_garbage_input_do_not_raise():
    for text in ("int f(", "}}}{{{", "\x00\x01", "int main(void) { if (", "\udcff bad"):
        assert isinstance(Buffer("file:///x.c", Language.C, text).functions(), list)
        assert isinstance(asm_functions(text), list)


def test_language_falls_back_on_the_file_name():
    from asmopt.server.documents import language_of

    assert language_of("", "file:///w/a.c") is Language.C
    assert language_of("plaintext", "file:///w/a.S") is Language.ASM
    assert language_of(None, "file:///w/b.asm") is Language.ASM
    assert language_of("", "file:///w/notes.txt") is None
    assert language_of("python", "file:///w/a.c") is None  # the editor's choice stands
    assert language_of("asm", "file:///w/x.c") is Language.ASM  # a known id wins


def test_incremental_edits_match_the_text_with_every_line_break():
    rng = random.Random(7)
    pieces = ["a", "b\n", "\r\n", "\r", "é", "😀", "\n", "x\ry", ""]
    text = "".join(rng.choice(pieces) for _ in range(60))
    b = Buffer("file:///a.s", Language.ASM, text)
    for _ in range(400):
        start = rng.randrange(len(text) + 1)
        end = min(len(text), start + rng.randrange(4))
        # positions inside a "\r\n" do not exist in LSP
        start -= text[start - 1 : start + 1] == "\r\n"
        end += text[end - 1 : end + 1] == "\r\n"
        new = "".join(rng.choice(pieces) for _ in range(rng.randrange(3)))
        b.apply_change(_change(b, start, end, new))
        text = text[:start] + new + text[end:]
        assert b.text == text
        reference = Buffer("file:///b.s", Language.ASM, text)
        assert b.line_count() == reference.line_count()
        assert b.line_starts == reference.line_starts


def _asm_file(functions: int) -> str:
    out = ["\t.text"]
    for k in range(functions):
        out += [f"\t.globl\tf{k}", f"\t.type\tf{k}, @function", f"f{k}:", "\t.cfi_startproc"]
        out += [f"\tmovl\t{j}(%rdi), %eax" for j in range(6)]
        out += [f".L{k}:", f"\tjne\t.L{k}", "\tret", "\t.cfi_endproc", f"\t.size\tf{k}, .-f{k}"]
    return "\n".join(out) + "\n"


def test_assembly_functions_follow_edits_without_a_parse():
    """Plain edits inside bodies move the functions at once; structural ones wait for a
    parse, and the moved functions stand in until then."""
    rng = random.Random(3)
    text = _asm_file(30)
    b = Buffer("file:///a.s", Language.ASM, text)
    b.asm_functions()
    for step in range(200):
        lines = b.text.split("\n")
        fn = rng.choice(b.functions())
        line = rng.randrange(fn.name_range.start.line + 2, fn.range.end.line - 3)
        start = types.Position(line, 0)
        choice = rng.random()
        if choice < 0.4:
            new, end = "\tnop\n", start
        elif choice < 0.7 and lines[line].startswith("\tmov"):
            new, end = "", types.Position(line + 1, 0)
        else:
            new, end = "\taddl\t$1, %eax", types.Position(line, len(lines[line]))
            if not lines[line].startswith("\t") or ":" in lines[line]:
                continue
        b.apply_change(
            types.TextDocumentContentChangePartial(range=types.Range(start, end), text=new)
        )
        ready = b.functions_if_ready()
        assert ready is not None, f"step {step}: a plain edit needed a parse"
        assert ready == asm_functions(b.text)
    # A new label is structural: the moved functions stand in until the parse.
    b.apply_change(
        types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(1, 0), types.Position(1, 0)), text="g:\n\tret\n"
        )
    )
    assert b.functions_if_ready() is None
    assert [f.name for f in b.stale_functions()][:2] == ["f0", "f1"]
    assert b.asm_functions() == asm_functions(b.text) == b.functions_if_ready()
