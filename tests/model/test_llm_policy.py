"""The LLM policy: the paper's prompt goes out, the last ```assembly fence comes back."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from asmopt.model.search.llm_policy import LLMPolicy, c_function_text
from asmopt.model.search.policy import Candidate, NoCandidate, Request
from asmopt.model.search.prompts import build_prompt

C = """#include <stdio.h>
static int answer(int x) { return x * 2 + 1; }
int main(void) { int x; if (scanf("%d", &x) != 1) return 1; printf("%d\\n", answer(x)); return 0; }
"""


class ScriptedBackend:
    """A back-end that answers from a script and remembers what it was asked."""

    name = "openai"

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.asked: list[list[dict[str, str]]] = []

    def complete(self, messages, n=1, temperature=0.5, max_new_tokens=2000, seed=None):
        self.asked.append(messages)
        return self.answers[:n]


@pytest.fixture(scope="module")
def baseline_asm(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("llm")
    (tmp / "p.c").write_text(C.replace("static int answer", "__attribute__((noinline)) int answer"))
    subprocess.run(["gcc", "-O3", "-S", "p.c", "-o", "p.s"], cwd=tmp, check=True)
    return (tmp / "p.s").read_text()


def test_whole_file_uses_the_papers_prompt_and_last_fence(baseline_asm: str) -> None:
    backend = ScriptedBackend(["```assembly\nfirst\n```\nthen\n```assembly\nsecond\n```"])
    proposals = LLMPolicy(backend).propose(Request(baseline_asm=baseline_asm, c_source=C), n=1)
    assert backend.asked == [[{"role": "user", "content": build_prompt(C, baseline_asm)}]]
    (only,) = proposals
    assert isinstance(only, Candidate) and only.asm == "second\n" and only.policy == "openai"


def test_prose_is_no_candidate_not_a_crash(baseline_asm: str) -> None:
    backend = ScriptedBackend(["I cannot help with that.", ""])
    proposals = LLMPolicy(backend).propose(Request(baseline_asm=baseline_asm, c_source=C), n=2)
    assert all(isinstance(p, NoCandidate) for p in proposals)
    assert "no ```assembly block" in proposals[0].reason  # type: ignore[union-attr]


def test_function_answers_are_spliced_into_the_file(baseline_asm: str) -> None:
    answer = "```assembly\nanswer:\n\tleal 1(%rdi,%rdi), %eax\n\tret\n```"
    backend = ScriptedBackend([answer])
    request = Request(baseline_asm=baseline_asm, c_source=C, function="answer")
    (candidate,) = LLMPolicy(backend).propose(request)
    assert isinstance(candidate, Candidate) and candidate.function == "answer"
    assert "main:" in candidate.asm and "leal 1(%rdi,%rdi), %eax" in candidate.asm
    prompt = backend.asked[0][0]["content"]
    assert "`answer`" in prompt and "x * 2 + 1" in prompt


def test_function_answer_for_another_function_is_refused(baseline_asm: str) -> None:
    backend = ScriptedBackend(["```assembly\nother:\n\tret\n```"])
    request = Request(baseline_asm=baseline_asm, c_source=C, function="answer")
    (proposal,) = LLMPolicy(backend).propose(request)
    assert isinstance(proposal, NoCandidate) and "unusable answer" in proposal.reason


def test_function_answer_that_breaks_a_gcc_caller_is_refused_with_what_to_do() -> None:
    # gcc -O3's main keeps r9 across `call answer`, whose own version leaves r9 alone.
    baseline = (
        "\t.text\n\t.globl\tanswer\n\t.type\tanswer, @function\nanswer:\n"
        "\tleal 1(%rdi,%rdi), %eax\n\tret\n\t.size\tanswer, .-answer\n"
        "\t.globl\tmain\n\t.type\tmain, @function\nmain:\n\tmovq $7, %r9\n"
        "\tmovl $3, %edi\n\tcall answer\n\taddl %r9d, %eax\n\tret\n\t.size\tmain, .-main\n"
    )
    clobbers = "```assembly\nanswer:\n\tmovl %edi, %r9d\n\tleal 1(%r9,%r9), %eax\n\tret\n```"
    keeps = "```assembly\nanswer:\n\tmovl %edi, %ecx\n\tleal 1(%rcx,%rcx), %eax\n\tret\n```"
    request = Request(baseline_asm=baseline, c_source=C, function="answer")
    refused, accepted = LLMPolicy(ScriptedBackend([clobbers, keeps])).propose(request, n=2)
    assert isinstance(refused, NoCandidate)
    assert "`main` (baseline) keeps values in r9 across its call to `answer`" in refused.reason
    assert "save and restore them" in refused.reason
    assert isinstance(accepted, Candidate)


def test_c_function_text_finds_the_definition() -> None:
    text = c_function_text(C, "answer")
    assert text is not None and text.startswith("static int answer") and text.rstrip().endswith("}")
    assert c_function_text(C, "missing") is None


def test_make_policies_reports_a_missing_model(tmp_path: Path) -> None:
    from asmopt.model.search.optimizer import make_policies
    from asmopt.model.search.policy import PolicyError
    from asmopt.model.settings import Settings

    with pytest.raises(PolicyError):
        make_policies(Settings(policies=("openai",)))


def test_generation_progress_reaches_backends_that_report_it() -> None:
    class Reporting:
        name = "transformers"

        def complete(self, messages, n=1, temperature=0.5, max_new_tokens=2000, seed=None,
                     progress=None):  # fmt: skip
            progress("generating: 5/10 tokens (2.0 tokens/s)")
            return ["```assembly\nmain:\n\tret\n```"] * n

    policy = LLMPolicy(Reporting())
    lines: list[str] = []
    policy.progress = lines.append
    [proposal] = policy.propose(Request(baseline_asm="main:\n\tret\n", c_source=C), 1)
    assert isinstance(proposal, Candidate)
    assert lines == ["generating: 5/10 tokens (2.0 tokens/s)"]
    # A back-end without the parameter is called as before.
    quiet = LLMPolicy(ScriptedBackend(["```assembly\nmain:\n\tret\n```"]))
    quiet.progress = lines.append
    assert isinstance(quiet.propose(Request(baseline_asm="x", c_source=C), 1)[0], Candidate)
