"""The paper's prompt, byte for byte, and the rule for reading a model's answer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asmopt.model.search.prompts import (
    PAPER_TEMPLATE,
    build_function_prompt,
    build_prompt,
    build_prompt_c_only,
    chat_messages,
    extract_assembly,
)

# Copied from DESIGN.md by hand (the \n there are newlines), not from the module.
EXPECTED_TEMPLATE = (
    "Given the following C code and assembly code, your task is to generate highly optimized"
    " x86-64 assembly code.\nC Code:\n\n```c\n{c}```\n\nAssembly Code:\n\n```assembly\n{asm}"
    "```\n\nOnly output the optimized assembly code. Do not include any other text. Do not"
    " write any comments in the assembly code. Wrap the assembly code in ```assembly``` tags."
    "\nOptimized Assembly Code:\n"
)


def test_template_is_the_papers_bytes() -> None:
    assert PAPER_TEMPLATE == EXPECTED_TEMPLATE


def test_build_prompt_inserts_sources_as_they_are() -> None:
    c = "int main(void) { return 0; }\n"
    asm = "\t.text\nmain:\n\txorl\t%eax, %eax\n\tret\n"
    prompt = build_prompt(c, asm)
    assert prompt == EXPECTED_TEMPLATE.replace("{c}", c).replace("{asm}", asm)
    assert "```c\nint main(void) { return 0; }\n```" in prompt
    # no newline is added: a source without one runs into the closing fence
    assert "```c\nint x;```" in build_prompt("int x;", "")


def test_braces_and_placeholders_in_sources_are_left_alone() -> None:
    prompt = build_prompt('char *s = "{asm}";\n', "x")
    assert 'char *s = "{asm}";\n```' in prompt


def test_c_only_variant_drops_the_assembly_part() -> None:
    prompt = build_prompt_c_only("int x;\n")
    assert prompt == (
        "Given the following C code, your task is to generate highly optimized x86-64 assembly"
        " code.\nC Code:\n\n```c\nint x;\n```\n\nOnly output the optimized assembly code. Do"
        " not include any other text. Do not write any comments in the assembly code. Wrap the"
        " assembly code in ```assembly``` tags.\nOptimized Assembly Code:\n"
    )
    assert "Assembly Code:\n\n```assembly" not in prompt


def test_function_prompt_names_the_function() -> None:
    prompt = build_function_prompt("int f(int x) { return x; }\n", "f:\n\tret\n", "f")
    assert "```c\nint f(int x) { return x; }\n```" in prompt
    assert "```assembly\nf:\n\tret\n```" in prompt
    assert "complete function `f`" in prompt
    assert prompt.endswith("Optimized Assembly Code:\n")
    assert "```c" not in build_function_prompt(None, "f:\n\tret\n", "f")


def test_chat_messages_is_one_user_message() -> None:
    assert chat_messages("hi") == [{"role": "user", "content": "hi"}]


def test_last_assembly_fence_wins() -> None:
    answer = "```assembly\nfirst\n```\ntext\n```assembly\nsecond\n```\n"
    assert extract_assembly(answer) == "second\n"


def test_assembly_fence_beats_other_tags() -> None:
    answer = "```assembly\nwanted\n```\n```asm\nother\n```\n"
    assert extract_assembly(answer) == "wanted\n"


def test_other_tags_only_without_an_assembly_fence() -> None:
    assert extract_assembly("```asm\na\n```\n```s\nb\n```") == "b\n"
    assert extract_assembly("```x86asm\nc\n```") == "c\n"
    assert extract_assembly("```gas\nd\n```") == "d\n"
    assert extract_assembly("```python\nprint(1)\n```") is None


def test_no_fence_prose_or_empty_gives_none() -> None:
    assert extract_assembly("I cannot optimize this further.") is None
    assert extract_assembly("") is None
    assert extract_assembly("```assembly\n```") is None
    assert extract_assembly("```assembly\n   \n```") is None


def test_unterminated_last_fence_runs_to_the_end() -> None:
    assert extract_assembly("ok:\n```assembly\nmain:\n\tret\n") == "main:\n\tret\n"
    answer = "```assembly\nold\n```\n```assembly\nnew:\n\tret"
    assert extract_assembly(answer) == "new:\n\tret"


def test_crlf_and_glued_closing_fence() -> None:
    assert extract_assembly("```assembly\r\nmain:\r\n\tret\r\n```\r\n") == "main:\n\tret\n"
    assert extract_assembly("```assembly\nmain:\n\tret```") == "main:\n\tret"


def test_never_raises_on_odd_input() -> None:
    for odd in ["```", "``````", "```assembly", "\x00```assembly\n\x00", "`" * 10]:
        extract_assembly(odd)


@given(st.text(alphabet=st.characters(blacklist_characters="`\r")).filter(str.strip))
def test_extract_inverts_a_fence(body: str) -> None:
    assert extract_assembly("```assembly\n" + body + "```") == body
    assert extract_assembly("Sure:\n```assembly\n" + body + "```\nDone.") == body
