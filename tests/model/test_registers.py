"""Splice safety under gcc's IPA-RA: which registers a function may and surely changes,
which a caller keeps live across a call, and the splices and mixes refused for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from asmopt.model.search.compiler_search import CompilerSearchPolicy, Variant
from asmopt.model.search.policy import Candidate, NoCandidate, Request
from asmopt.model.search.registers import (
    CALLER_SAVED,
    arguments_read,
    clobbers_at_least,
    clobbers_at_most,
    live_after_calls,
    splice_is_safe,
    strings,
)
from asmopt.model.search.splice import splice_function

ROOT = Path(__file__).resolve().parents[2]

LEAF_USES_RCX = "f:\n\tmovq %rdi, %rax\n\taddq %rcx, %rax\n\tret\n"
LEAF_WRITES_RAX = "f:\n\tleaq 1(%rdi), %rax\n\tret\n"
LEAF_WRITES_R9 = "f:\n\tleaq 1(%rdi), %rax\n\tmovq %rax, %r9\n\timulq %r9, %rax\n\tret\n"
LEAF_WRITES_RSI = "f:\n\tleaq 1(%rdi), %rsi\n\tmovq %rsi, %rax\n\tret\n"
CALLS_PUTS = "f:\n\tsubq $8, %rsp\n\tcall puts@PLT\n\taddq $8, %rsp\n\tret\n"


def _file(*functions: str, data: str = "") -> str:
    text = "\t.text\n" + "".join(
        f"\t.globl\t{body.split(':')[0]}\n\t.type\t{body.split(':')[0]}, @function\n{body}"
        for body in functions
    )
    return text + (f"\t.section\t.rodata\n{data}" if data else "")


def _safe(baseline: str, donor: str, name: str = "f", ipa_ra: bool = True) -> tuple[bool, str]:
    return splice_is_safe(
        {name: "donor"}, {"baseline": baseline, "donor": donor}, {"donor": ipa_ra}
    )


def test_clobber_bounds():
    # Read registers are not changed; written ones are, whatever the instruction.
    assert clobbers_at_most(LEAF_USES_RCX) == {"rax"}
    assert clobbers_at_least(LEAF_USES_RCX, {"f"}) == {"rax"}
    assert clobbers_at_most(LEAF_WRITES_R9) == {"rax", "r9"}
    assert clobbers_at_least(CALLS_PUTS, {"f"}) >= {"rax", "rcx", "r11", "xmm0"}
    assert clobbers_at_most(CALLS_PUTS) >= {"rdi", "r8", "xmm7"}
    assert clobbers_at_most("f:\n\tcqto\n\tidivq %rsi\n\tret\n") == {"rax", "rdx"}
    # An exchange writes both operands; a string move its three registers.
    assert clobbers_at_most("f:\n\txchgq %r8, %r10\n\tret\n") == {"r8", "r10"}
    assert clobbers_at_most("f:\n\trep movsb\n\tret\n") >= {"rcx", "rsi", "rdi"}
    # movsd with operands is the SSE move, not the string instruction.
    assert clobbers_at_most("f:\n\tmovsd (%rdi), %xmm0\n\tret\n") == {"xmm0"}
    # A two-operand multiply writes its destination; a one-operand one rax and rdx only.
    assert clobbers_at_most("f:\n\timulq %rdi, %r9\n\tret\n") == {"r9"}
    assert clobbers_at_most("f:\n\tmull %esi\n\tret\n") == {"rax", "rdx"}
    # An SSE compare writes its destination; an integer compare writes nothing.
    assert clobbers_at_most("f:\n\tcmpltps %xmm1, %xmm2\n\tcmpq %r8, %r9\n\tret\n") == {"xmm2"}
    # String compares write rcx (or xmm0) without naming it.
    assert clobbers_at_most("f:\n\tpcmpistri $12, (%rdi), %xmm1\n\tret\n") == {"rcx"}
    # Intel syntax: the destination comes first.
    intel = "f:\n\tmov r9, rdi\n\tadd rax, r9\n\tret\n"
    assert clobbers_at_most(intel, intel=True) == {"r9", "rax"}


# The shape of the editor suite's program under gcc -O3: main keeps r9 (the generator's state)
# in a call-clobbered register across `call f`, because gcc knows its f leaves r9 alone.
MAIN_KEEPS_R9 = (
    "main:\n\tsubq $8, %rsp\n\tmovq $7, %r9\n\tmovl $3, %edi\n\tcall f\n"
    "\taddq %r9, %rax\n\tmovl %eax, %esi\n\tleaq .LC0(%rip), %rdi\n\txorl %eax, %eax\n"
    "\tcall printf@PLT\n\txorl %eax, %eax\n\taddq $8, %rsp\n\tret\n"
)
FORMAT = '.LC0:\n\t.string "%d\\n"\n'


def test_a_splice_that_changes_a_register_the_caller_keeps_is_refused():
    baseline = _file(MAIN_KEEPS_R9, LEAF_WRITES_RAX, data=FORMAT)
    ok, why = _safe(baseline, _file(MAIN_KEEPS_R9, LEAF_WRITES_R9, data=FORMAT))
    assert not ok
    assert "`main` (baseline) keeps values in r9 across its call to `f`" in why
    # rsi is written before it is read after the call: changing it is harmless.
    ok, why = _safe(baseline, _file(MAIN_KEEPS_R9, LEAF_WRITES_RSI, data=FORMAT))
    assert ok, why


def test_liveness_follows_branches_loops_and_formats():
    # r9 is read on one branch only, after a loop: still live.
    text = (
        "g:\n\tcall f\n.L2:\n\tsubl $1, %edi\n\tjne .L2\n\ttestl %eax, %eax\n\tje .L3\n"
        "\tmovq %r9, %rax\n.L3:\n\tret\n"
    )
    assert "r9" in live_after_calls(text, "f", at_exit=frozenset({"rax"}))
    # Written on every path before any read: dead.
    text = "g:\n\tcall f\n\tmovl $1, %r9d\n\tmovq %r9, %rax\n\tret\n"
    assert "r9" not in live_after_calls(text, "f", at_exit=frozenset({"rax"}))
    # A compare or a fused multiply-add reads the register in the written position.
    for reads in ("vucomiss %xmm1, %xmm5", "vfmadd231sd %xmm1, %xmm2, %xmm5"):
        text = f"g:\n\tcall f\n\t{reads}\n\tret\n"
        assert "xmm5" in live_after_calls(text, "f", at_exit=frozenset())
    # An 8-bit write keeps the rest of the register: not a kill.
    text = "g:\n\tcall f\n\tmovb $1, %r9b\n\tmovq %r9, %rax\n\tret\n"
    assert "r9" in live_after_calls(text, "f", at_exit=frozenset({"rax"}))
    # printf("%d %d %d %d %d") reads r8 (its fifth argument); printf("%d") does not.
    call_printf = "g:\n\tcall f\n\tleaq .LC1(%rip), %rdi\n\txorl %eax, %eax\n\tcall printf\n\tret\n"
    five = {".LC1": "%d %d %d %d %d\n"}
    assert "r8" in live_after_calls(call_printf, "f", at_exit=frozenset(), strings=five)
    one = {".LC1": "%d\n"}
    live = live_after_calls(call_printf, "f", at_exit=frozenset(), strings=one)
    assert live == {"rsi"}
    # A jump table may go to any label of the function.
    text = (
        "g:\n\tcall f\n\tjmp *.L9(,%rax,8)\n.L4:\n\tmovq %r10, %rax\n\tret\n"
        ".L5:\n\txorl %eax, %eax\n\tret\n"
    )
    assert "r10" in live_after_calls(text, "f", at_exit=frozenset({"rax"}))
    # A tail call to f returns to g's callers, who may rely on what g leaves alone.
    text = "g:\n\tmovl $1, %edi\n\tjmp f\n"
    assert "r9" in live_after_calls(text, "f", at_exit=frozenset({"r9", "rax"}))


SWITCH = (  # as gcc writes it: call frame information delimits the function
    "f:\n\t.cfi_startproc\n\tcmpl $1, %edi\n\tja .L3\n\tleaq .L4(%rip), %rdx\n"
    "\tmovslq (%rdx,%rdi,4), %rax\n\taddq %rdx, %rax\n\tnotrack jmp *%rax\n"
    "\t.section .rodata\n\t.align 4\n.L4:\n"
    "\t.long .L5-.L4\n\t.long .L3-.L4\n\t.text\n.L5:\n\tmovl $7, %eax\n\tret\n"
    ".L3:\n\txorl %eax, %eax\n\tret\n\t.cfi_endproc\n\t.size\tf, .-f\n"
)


def test_a_switch_is_not_a_call_and_its_table_is_not_code():
    # The jump table's entries are data, and its indirect jump stays in the function: gcc
    # knows what f changes, and main may keep r9 across the call.
    assert clobbers_at_least(SWITCH, {"f"}) == {"rdx", "rax"}
    assert clobbers_at_most(SWITCH) == {"rdx", "rax"}
    baseline = _file(MAIN_KEEPS_R9, SWITCH, data=FORMAT)
    ok, why = _safe(baseline, _file(MAIN_KEEPS_R9, LEAF_WRITES_R9, data=FORMAT))
    assert not ok and "r9" in why
    # Without a table, an indirect jump may leave the function: it may change anything, and
    # it surely changes only what it writes itself.
    tail = "f:\n\tmovq (%rdi), %rax\n\tjmp *%rax\n"
    assert clobbers_at_most(tail) == CALLER_SAVED
    assert clobbers_at_least(tail, {"f"}) == {"rax"}


def test_a_switch_beside_an_indirect_tail_call_still_calls_out():
    # One indirect jump goes through the table, the other through a function pointer.
    both = SWITCH.replace(
        ".L3:\n\txorl %eax, %eax\n\tret\n",
        ".L3:\n\tmovq handlers(%rip), %rax\n\tjmp *%rax\n",
    )
    assert clobbers_at_most(both) == CALLER_SAVED


@pytest.mark.parametrize(
    ("after", "strings_", "live"),
    [
        # __memset_chk(dest, c, len, destlen): destlen in rcx, kept across the call to f.
        ("\tcall __memset_chk\n", {}, "rcx"),
        # sscanf(s, "%d %ms", &i, &p): %m allocates, so two pointers (rdx, rcx).
        ("\tleaq .LC1(%rip), %rsi\n\tcall __isoc99_sscanf\n", {".LC1": "%d %ms"}, "rcx"),
        # x - x is not 0 for floats (NaN, Inf): subps reads its register.
        ("\tsubps %xmm5, %xmm5\n\tmovaps %xmm5, %xmm0\n", {}, "xmm5"),
        # xor %al, %al clears al only: the rest of rax is still read after it.
        ("\txorb %al, %al\n\tmovq %rax, %rdx\n", {}, "rax"),
    ],
)
def test_reads_hidden_in_calls_and_idioms_keep_a_register_live(
    after: str, strings_: dict[str, str], live: str
) -> None:
    text = f"g:\n\tcall f\n{after}\tret\n"
    at_exit = frozenset({"rdx", "xmm0"})
    assert live in live_after_calls(text, "f", at_exit=at_exit, strings=strings_)


def test_a_call_that_another_path_reaches_has_no_known_format():
    # The label on the call: control may arrive with another format in rdi.
    text = (
        "g:\n\tcall f\n\ttestl %eax, %eax\n\tje .L2\n\tleaq .LC1(%rip), %rdi\n"
        "\txorl %eax, %eax\n.L2:\n\tcall printf\n\tret\n"
    )
    live = live_after_calls(text, "f", at_exit=frozenset(), strings={".LC1": "%d\n"})
    assert {"rdx", "rcx", "r8", "r9"} <= live


def test_a_clone_gcc_specialised_differently_in_each_build_is_refused():
    # Each build specialised g on its own constant: the donor's f calls its g.constprop.0,
    # which the baseline's g.constprop.0 is not.
    base_clone = "g.constprop.0:\n\tleal 2(%rdi), %eax\n\tret\n"
    donor_clone = "g.constprop.0:\n\tleal 3(%rdi), %eax\n\tret\n"
    f_calls_clone = "f:\n\tcall g.constprop.0\n\tret\n"
    main = "main:\n\tcall f\n\txorl %eax, %eax\n\tret\n"
    baseline = _file(main, LEAF_WRITES_RAX, base_clone)
    ok, why = _safe(baseline, _file(main, f_calls_clone, donor_clone), ipa_ra=False)
    assert not ok and "`g.constprop.0`, a copy that gcc specialised for each build" in why
    # The same code under other label numbers is the same clone.
    same = _file(main, f_calls_clone, base_clone)
    assert _safe(baseline, same, ipa_ra=False)[0]


def test_strings_decode_the_formats_of_a_file():
    asm = '.LC0:\n\t.string "%d %s\\n"\n.LC1:\n\t.string "a\\045d"\n'
    assert strings(asm) == {".LC0": "%d %s\n", ".LC1": "a%d"}


def test_arguments_read_go_through_calls_within_the_file():
    functions = {
        "h": ("h:\n\tleaq (%rdi,%rsi), %rax\n\tret\n", False),
        # g passes its second argument on to h untouched, and keeps r9 across the call.
        "g": ("g:\n\tmovq %rdx, %rdi\n\tcall h\n\taddq %r9, %rax\n\tret\n", False),
    }
    reads = arguments_read(functions)
    assert reads["h"] == {"rdi", "rsi"}
    assert reads["g"] == {"rdx", "rsi", "r9"}


def test_a_gcc_donor_relying_on_its_own_callee_is_refused():
    # The donor's f keeps r9 across its call to h, which the donor's h leaves alone; the
    # baseline's h changes r9.
    donor_f = "f:\n\tmovq $2, %r9\n\tcall h\n\taddq %r9, %rax\n\tret\n"
    h_quiet = "h:\n\tleaq 1(%rdi), %rax\n\tret\n"
    h_busy = "h:\n\tmovq %rdi, %r9\n\tleaq 1(%r9), %rax\n\tret\n"
    main = "main:\n\tcall f\n\txorl %eax, %eax\n\tret\n"
    baseline = _file(main, LEAF_WRITES_RAX, h_busy)
    donor = _file(main, donor_f, h_quiet)
    ok, why = _safe(baseline, donor)
    assert not ok and "`f` (donor) keeps values in r9 across its call to `h`" in why
    # A clang donor assumes nothing of its callees.
    assert _safe(baseline, donor, ipa_ra=False)[0]


def test_a_mix_with_a_caller_from_clang_or_a_callee_that_calls_out_is_safe():
    main = "main:\n\tmovq $5, %rcx\n\tcall f\n\taddq %rcx, %rax\n\tret\n"
    baseline = _file(main, LEAF_WRITES_RAX)
    other = _file(main, LEAF_USES_RCX.replace("addq %rcx", "movq $0, %rcx\n\taddq %rcx"))
    ok, why = splice_is_safe({"f": "other"}, {"baseline": baseline, "other": other}, {})
    assert not ok and "rcx" in why
    # A caller built without IPA-RA (clang) assumes every caller-saved register is clobbered.
    ok, _ = splice_is_safe(
        {"main": "other"}, {"baseline": baseline, "other": other}, {"other": False}
    )
    assert ok
    # A callee whose own version calls out may be replaced by anything.
    base2 = _file(main, CALLS_PUTS)
    assert splice_is_safe({"f": "other"}, {"baseline": base2, "other": other}, {})[0]


def test_an_intel_syntax_answer_is_checked_too():
    baseline = _file(MAIN_KEEPS_R9, LEAF_WRITES_RAX, data=FORMAT)
    answer = "f:\n\tmov r9, rdi\n\tlea rax, [r9+1]\n\tret\n"
    whole = splice_function(baseline, "f", answer)
    ok, why = splice_is_safe({"f": "answer"}, {"baseline": baseline, "answer": whole}, {})
    assert not ok and "r9" in why


@pytest.mark.parametrize(
    "answer",
    [
        # A write hidden after GAS's statement separator.
        "f:\n\tleaq 1(%rdi), %rax; movq %rax, %r9\n\tret\n",
        # `xorl %r9d, %r9d` as raw bytes: the analysis cannot read them.
        "f:\n\tleaq 1(%rdi), %rax\n\t.byte 0x45, 0x31, 0xc9\n\tret\n",
        # No return: control runs on into whatever the file puts next.
        "f:\n\tleaq 1(%rdi), %rax\n",
        # A conditional jump to code outside the function.
        "f:\n\tleaq 1(%rdi), %rax\n\ttestq %rdi, %rdi\n\tje elsewhere\n\tret\n",
    ],
)
def test_what_the_analysis_cannot_see_counts_as_changing_everything(answer: str) -> None:
    baseline = _file(MAIN_KEEPS_R9, LEAF_WRITES_RAX, data=FORMAT)
    assert "r9" in clobbers_at_most(answer)
    ok, why = _safe(baseline, _file(MAIN_KEEPS_R9, answer, data=FORMAT))
    assert not ok and "r9" in why


@pytest.mark.parametrize(
    ("variant", "refused"),
    [
        (Variant("gcc -O3 -funroll-loops", "gcc", ("-O3", "-funroll-loops")), True),
        (Variant("clang -O3", "clang", ("-O3",)), False),
    ],
)
def test_compiler_search_refuses_a_function_that_breaks_its_gcc_caller(
    tmp_path: Path, variant: Variant, refused: bool
) -> None:
    """The editor suite's program: gcc -O3's main keeps r9-r11 across `call align`; gcc's
    unrolled align writes them (its splice failed every test before this check), clang's
    closed form does not."""
    from asmopt.executor.toolchain import compile_to_asm

    source = tmp_path / "align.c"
    source.write_text((ROOT / "client-vscode" / "e2e" / "workspace" / "align.c").read_text())
    assert compile_to_asm(source, tmp_path / "base.s").ok
    baseline = (tmp_path / "base.s").read_text()
    request = Request(baseline_asm=baseline, source_path=source, function="align")
    [proposal] = CompilerSearchPolicy(variants=(variant,)).propose(request, n=1)
    if refused:
        assert isinstance(proposal, NoCandidate), proposal
        assert "function align not spliced: `main` (baseline) keeps values in" in proposal.reason
        assert "r9" in proposal.reason
    else:
        assert isinstance(proposal, Candidate), proposal
