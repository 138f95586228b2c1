"""A language model as a policy: the paper's prompt in, whole assembly files out.

For the whole file (the paper's setting) the model gets the C source and its ``gcc -O3``
assembly in the paper's exact template, and its answer (the last ```assembly fence) is the
candidate. For one function it gets that function's C and assembly region, and its answer is
spliced into the translation unit's baseline assembly. Anything unusable becomes a
``NoCandidate`` with the reason, never an exception.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

from asmopt.executor.asmfile import AsmStructureError, function_text
from asmopt.model.search.backends import ChatBackend, Messages
from asmopt.model.search.policy import Candidate, NoCandidate, Proposal, Request
from asmopt.model.search.prompts import (
    build_function_prompt,
    build_prompt,
    chat_messages,
    extract_assembly,
)
from asmopt.model.search.registers import splice_is_safe
from asmopt.model.search.splice import SpliceError, splice_function


def c_function_text(c_source: str, name: str) -> str | None:
    """The text of C function ``name`` (signature and body), found by brace matching after
    its definition; None when it is not defined in ``c_source``."""
    for match in re.finditer(rf"\b{re.escape(name)}\s*\([^;{{)]*\)\s*\{{", c_source):
        # Walk back to the start of the line that holds the return type.
        start = c_source.rfind("\n", 0, match.start()) + 1
        depth = 0
        for i in range(match.end() - 1, len(c_source)):
            ch = c_source[i]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return c_source[start : i + 1] + "\n"
    return None


class LLMPolicy:
    """Samples candidates from a chat back-end (``transformers``, ``openai`` or ``vllm``)."""

    def __init__(
        self,
        backend: ChatBackend,
        *,
        temperature: float = 0.5,
        max_new_tokens: int = 2000,
        seed: int | None = None,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        # Lines about generation in progress ("412/2000 tokens (3.1 tokens/s)"), from back-ends
        # that report it (transformers).
        self.progress: Callable[[str], None] | None = None
        try:
            self._reports = "progress" in inspect.signature(backend.complete).parameters
        except (TypeError, ValueError):
            self._reports = False

    def prompt_for(self, request: Request) -> str:
        """The user message for ``request`` (exposed so data sets and tests can see it)."""
        if request.function is None:
            if request.c_source is None:
                # An assembly file with no C: the per-function wording needs a name, so the
                # paper's template gets an empty C block rather than an invented one.
                return build_prompt("", request.baseline_asm)
            return build_prompt(request.c_source, request.baseline_asm)
        try:
            region = function_text(request.baseline_asm, request.function)
        except AsmStructureError:
            region = request.baseline_asm
        c_part = c_function_text(request.c_source, request.function) if request.c_source else None
        return build_function_prompt(c_part, region, request.function)

    def propose(self, request: Request, n: int = 1) -> list[Proposal]:
        """``n`` samples; each becomes a whole-file Candidate or a NoCandidate with a reason.

        Raises ``PolicyError`` only when the back-end cannot run at all.
        """
        if request.c_source is None and request.function is None and not request.baseline_asm:
            return [NoCandidate(self.name, "nothing to optimize: no C source and no assembly")]
        texts = self.complete(chat_messages(self.prompt_for(request)), n)
        return [self.proposal(request, text, i, len(texts)) for i, text in enumerate(texts)]

    def complete(self, messages: Messages, n: int = 1) -> list[str]:
        """``n`` answers to ``messages`` with this policy's sampling settings."""
        extra = {"progress": self.progress} if self._reports and self.progress else {}
        return self.backend.complete(
            messages,
            n=n,
            temperature=self.temperature,
            max_new_tokens=self.max_new_tokens,
            seed=self.seed,
            **extra,
        )

    def proposal(self, request: Request, text: str, index: int, total: int) -> Proposal:
        """The proposal a model's answer ``text`` makes (sample ``index`` of ``total``)."""
        asm = extract_assembly(text)
        if asm is None:
            return NoCandidate(
                self.name, "the model's answer has no ```assembly block", raw_response=text
            )
        label = f"{self.name} sample {index + 1} of {total}"
        if request.function is None:
            return Candidate(asm=asm, policy=self.name, label=label, raw_response=text)
        try:
            whole = splice_function(request.baseline_asm, request.function, asm)
        except SpliceError as err:
            return NoCandidate(self.name, f"unusable answer: {err}", raw_response=text)
        ok, why = splice_is_safe(
            {request.function: "the answer"},
            {"baseline": request.baseline_asm, "the answer": whole},
            {"baseline": True},
        )
        if not ok:
            why += (
                " (gcc lets callers rely on that): leave them unchanged, or save and restore them"
            )
            return NoCandidate(self.name, f"unusable answer: {why}", raw_response=text)
        return Candidate(
            asm=whole,
            policy=self.name,
            label=label,
            function=request.function,
            raw_response=text,
        )
