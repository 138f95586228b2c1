"""The prompts the model sees and the rule for reading its answer.

``PAPER_TEMPLATE`` is the user message of the paper's released data set (v3), byte for byte:
the policy was trained on exactly this text, so any change to it costs accuracy. The other
prompts follow its wording.
"""

from __future__ import annotations

import re

__all__ = [
    "PAPER_TEMPLATE",
    "PAPER_TEMPLATE_C_ONLY",
    "build_function_prompt",
    "build_prompt",
    "build_prompt_c_only",
    "chat_messages",
    "extract_assembly",
]

# `{c}` and `{asm}` are inserted as they are: no newline is added before the closing fences,
# so a source that does not end in a newline runs into the ``` (as in the paper's data).
PAPER_TEMPLATE = (
    "Given the following C code and assembly code, your task is to generate highly optimized "
    "x86-64 assembly code.\n"
    "C Code:\n\n```c\n{c}```\n\n"
    "Assembly Code:\n\n```assembly\n{asm}```\n\n"
    "Only output the optimized assembly code. Do not include any other text. Do not write any "
    "comments in the assembly code. Wrap the assembly code in ```assembly``` tags.\n"
    "Optimized Assembly Code:\n"
)

# The C-only variant: the paper's template with the assembly part dropped, i.e. "and assembly
# code" leaves the first sentence and the "Assembly Code:" block (with its blank line) goes;
# everything else, the closing instructions included, is unchanged.
PAPER_TEMPLATE_C_ONLY = (
    "Given the following C code, your task is to generate highly optimized x86-64 assembly "
    "code.\n"
    "C Code:\n\n```c\n{c}```\n\n"
    "Only output the optimized assembly code. Do not include any other text. Do not write any "
    "comments in the assembly code. Wrap the assembly code in ```assembly``` tags.\n"
    "Optimized Assembly Code:\n"
)

# What a per-function answer must be: one complete function, nothing else.
_FUNCTION_ANSWER_RULES = (
    "Only output the optimized assembly code of the complete function `{name}`: its label, "
    "all of its instructions and any parts it jumps to, and nothing else from the file. Keep "
    "its name and calling convention. Do not include any other text. Do not write any "
    "comments in the assembly code. Wrap the assembly code in ```assembly``` tags.\n"
    "Optimized Assembly Code:\n"
)

# Per-function variant, in the paper's words; the answer must be one complete function.
FUNCTION_TEMPLATE = (
    "Given the following C function and its assembly code, your task is to generate highly "
    "optimized x86-64 assembly code for the function `{name}`.\n"
    "C Code:\n\n```c\n{c}```\n\n"
    "Assembly Code:\n\n```assembly\n{asm}```\n\n" + _FUNCTION_ANSWER_RULES
)

FUNCTION_TEMPLATE_ASM_ONLY = (
    "Given the following assembly code, your task is to generate highly optimized x86-64 "
    "assembly code for the function `{name}`.\n"
    "Assembly Code:\n\n```assembly\n{asm}```\n\n" + _FUNCTION_ANSWER_RULES
)


def build_prompt(c_source: str, asm: str) -> str:
    """The paper's whole-file user message for ``c_source`` and its ``gcc -O3`` ``asm``."""
    # str.format does not re-read the inserted values, so braces in C code are safe.
    return PAPER_TEMPLATE.format(c=c_source, asm=asm)


def build_prompt_c_only(c_source: str) -> str:
    """The paper's message without the assembly part (see ``PAPER_TEMPLATE_C_ONLY``)."""
    return PAPER_TEMPLATE_C_ONLY.format(c=c_source)


def build_function_prompt(c_function: str | None, asm_function: str, name: str) -> str:
    """The per-function message: the C of function ``name`` (None when there is none, e.g. a
    hand-written ``.s``) and its ``gcc -O3`` region in; that function's assembly out."""
    if c_function is None:
        return FUNCTION_TEMPLATE_ASM_ONLY.format(asm=asm_function, name=name)
    return FUNCTION_TEMPLATE.format(c=c_function, asm=asm_function, name=name)


def chat_messages(prompt: str) -> list[dict[str, str]]:
    """The chat list for one prompt: a single user message, as in the paper's verl parquet
    ``prompt`` column (no system message)."""
    return [{"role": "user", "content": prompt}]


# A fence opens with ``` plus an info string on its own line; it closes with a line that starts
# with ``` (models often glue the closing fence to the last instruction, so any ``` after a
# newline ends the block) or at the end of the text.
_FENCE_OPEN = re.compile(r"(?m)^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n?")
_PREFERRED = {"assembly"}
_TOLERATED = {"asm", "x86asm", "s", "gas"}


def extract_assembly(response: str) -> str | None:
    """The text of the last ```assembly fence in a model's answer (the paper's rule).

    Only when there is no ```assembly fence at all is the last ```asm, ```x86asm, ```s or
    ```gas fence taken. An unterminated last fence runs to the end of the text; CRLF line
    ends become LF. Returns None for prose without such a fence or for an empty fence; never
    raises.
    """
    try:
        text = response.replace("\r\n", "\n").replace("\r", "\n")
        blocks: list[tuple[str, str]] = []
        pos = 0
        while True:
            m = _FENCE_OPEN.search(text, pos)
            if m is None:
                break
            tag = m.group(1).lower()
            body_start = m.end()
            close = text.find("```", body_start)
            if close < 0:
                body, pos = text[body_start:], len(text)
            else:
                body = text[body_start:close]
                eol = text.find("\n", close)
                pos = len(text) if eol < 0 else eol + 1
            blocks.append((tag, body))
            if close < 0:
                break
        for wanted in (_PREFERRED, _TOLERATED):
            chosen = [body for tag, body in blocks if tag in wanted]
            if chosen:
                body = chosen[-1]
                return body if body.strip() else None
        return None
    except Exception:  # a model's text must never crash the caller
        return None
