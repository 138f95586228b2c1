"""Iterative refinement through the real executor: a scripted model answers broken assembly
and fixes it only when the assembler's error is in the conversation. It is served by the
OpenAI-compatible server on 127.0.0.1 and reached by the openai back-end, as a user's model
would be."""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from asmopt.cli import main
from asmopt.executor.results import (
    BuildResult,
    Diagnostic,
    Severity,
    SpeedupEstimate,
    TestStatus,
    TestVerdict,
    Verdict,
)
from asmopt.executor.verify import VerificationResult
from asmopt.model.search.openai_server import run_in_thread
from asmopt.model.search.policy import Candidate
from asmopt.model.search.refine import feedback_for

needs_sandbox = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

PROGRAM = (
    '#include <stdio.h>\nint main(void) {\n    long n, s = 0;\n    if (scanf("%ld", &n) != 1) '
    "return 1;\n    for (long i = 0; i < n; i++) s += i % 7;\n"
    '    printf("%ld\\n", s);\n    return 0;\n}\n'
)
ERROR_SIGN = "no such instruction"


class ScriptedModel:
    """A chat back-end that answers the prompt's own assembly with one instruction broken,
    and the working assembly only when a later user message quotes the assembler's error
    with its line. It records every conversation it is sent."""

    name = "scripted"

    def __init__(self) -> None:
        self.conversations: list[list[dict[str, str]]] = []
        self.lock = threading.Lock()

    def complete(self, messages, n=1, temperature=0.5, max_new_tokens=2000, seed=None):
        with self.lock:
            self.conversations.append([dict(m) for m in messages])
        asm = re.search(r"```assembly\n(.*?)```", messages[0]["content"], re.S).group(1)
        told = any(
            m["role"] == "user"
            and ERROR_SIGN in m["content"]
            and re.search(r"line \d+", m["content"])
            for m in messages[1:]
        )
        if told:
            answer = asm.replace("\tret\n", "\tnop\n\tret\n", 1)  # works, and is not a copy
        else:
            answer = asm.replace("\tret\n", "\tretq_please %eax\n", 1)  # does not assemble
        return [f"```assembly\n{answer}```"] * n


@pytest.fixture
def program(tmp_path: Path) -> Path:
    (tmp_path / "tests").mkdir()
    (tmp_path / "p.c").write_text(PROGRAM)
    for name, n in (("a", 1000), ("b", 20)):
        (tmp_path / "tests" / f"{name}.in").write_text(f"{n}\n")
    (tmp_path / ".git").mkdir()
    return tmp_path


def optimize_json(program: Path, url: str, *extra: str) -> dict:
    args = ["optimize", str(program / "p.c"), "--policy", "openai", "--endpoint", url,
            "-n", "1", "--budget", "1", "--json", "--go-on", *extra]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.output[result.output.index("{") :])


@needs_sandbox
def test_the_model_fixes_its_answer_when_shown_the_assembler_error(program):
    model = ScriptedModel()
    with run_in_thread(model) as server:
        data = optimize_json(program, server.url, "--refine", "2")
    # Round 0: broken; the verifier's findings went back; round 1: fixed, and verified.
    rounds = [(a["round"], a["usable"]) for a in data["answers"]]
    assert rounds == [(0, True), (1, True), (2, True)]
    assert "retq_please" in data["answers"][0]["text"]
    by_label = {c["label"]: c for c in data["candidates"]}
    first = by_label["openai sample 1 of 1"]
    fixed = by_label["openai sample 1 of 1, revision 1"]
    assert first["verdict"] == "build-failed"
    assert fixed["tests_passed"] == fixed["tests_total"] == 2
    assert data["tests"]["passed"] == 2  # the best candidate of all rounds is the fixed one
    # What the model was told: the error with its line, and the line itself.
    feedback = model.conversations[1][-1]["content"]
    assert ERROR_SIGN in feedback and "retq_please %eax" in feedback
    assert re.search(r"line \d+:", feedback)
    assert model.conversations[1][-2]["role"] == "assistant"
    # Round 2 was told it passes, with the measured speed-up and its CI.
    assert "passes all 2 tests" in model.conversations[2][-1]["content"]
    assert "95% CI" in model.conversations[2][-1]["content"]


@needs_sandbox
def test_without_refinement_the_broken_answer_stays_broken(program):
    model = ScriptedModel()
    with run_in_thread(model) as server:
        data = optimize_json(program, server.url, "--refine", "0")
    assert [a["round"] for a in data["answers"]] == [0]
    assert [c["verdict"] for c in data["candidates"]] == ["build-failed"]
    assert len(model.conversations) == 1


@needs_sandbox
def test_refinement_composes_with_best_of_n_and_reports_rounds(program, tmp_path):
    from asmopt.executor.store import ResultStore
    from asmopt.model.search.optimizer import OptimizeRequest, optimize
    from asmopt.model.settings import Settings

    model = ScriptedModel()
    seen: list[tuple[str, str]] = []
    with run_in_thread(model) as server:
        settings = Settings(policies=("openai",), endpoint=server.url, samples=2,
                            refine_rounds=1, bench_budget=1.0, go_on=True)  # fmt: skip
        request = OptimizeRequest(program / "p.c", None, settings)
        outcome = optimize(request, store=ResultStore(program),
                           progress=lambda s, m: seen.append((s, m)))  # fmt: skip
    assert [(a.label, a.round) for a in outcome.answers] == [
        ("openai sample 1 of 2", 0), ("openai sample 2 of 2", 0),
        ("openai sample 1 of 2, revision 1", 1), ("openai sample 2 of 2, revision 1", 1),
    ]  # fmt: skip
    assert len(model.conversations) == 3  # one request for n=2, then one per conversation
    assert ("verify", "refine round 1/1: verifying 2 answers") in seen
    assert any(s == "generate" and "revise answer 2/2 (round 1/1)" in m for s, m in seen)


def test_feedback_for_a_failing_test_and_a_passing_candidate():
    built = BuildResult(True, "x", ())
    wrong = VerificationResult(
        Verdict.TESTS_FAILED, "h", built,
        (TestVerdict("a", TestStatus.PASSED), TestVerdict("b", TestStatus.WRONG_OUTPUT,
                                                          "line 1: expected '42', got '41'")),
    )  # fmt: skip
    text = feedback_for(Candidate("main:\n\tret\n", "m"), wrong)
    assert "1 of 2 tests fail" in text and "b: wrong-output" in text and "expected '42'" in text
    speed = SpeedupEstimate(1.3, 1.2, 1.4, 10, 1.0, 0.77)
    faster = VerificationResult(Verdict.FASTER, "h", built,
                                (TestVerdict("a", TestStatus.PASSED),), speed)  # fmt: skip
    loop = "main:\n.L2:\n\taddq $1, %rax\n\tcmpq %rdi, %rax\n\tjne .L2\n\tret\n"
    text = feedback_for(Candidate(loop, "m"), faster)
    assert "1.30x (95% CI 1.20-1.40): significantly faster" in text
    if shutil.which("llvm-mca"):
        assert "llvm-mca's estimate (a model, not a measurement)" in text and ".L2" in text
    broken = VerificationResult(
        Verdict.BUILD_FAILED, "h",
        BuildResult(False, None, (), (Diagnostic("candidate.s", 2, None, Severity.ERROR,
                                                 "no such instruction: `bogus'"),)),
    )  # fmt: skip
    text = feedback_for(Candidate("main:\n\tbogus\n", "m"), broken)
    assert "line 2: no such instruction: `bogus'\n    bogus" in text


def test_serve_model_command_exists_and_says_where_it_listens():
    result = CliRunner().invoke(main, ["serve-model", "--help"])
    assert result.exit_code == 0 and "OpenAI-compatible" in result.output


@needs_sandbox
def test_show_answers_prints_what_the_model_said(program):
    with run_in_thread(ScriptedModel()) as server:
        args = ["optimize", str(program / "p.c"), "--policy", "openai", "--endpoint", server.url,
                "-n", "1", "--budget", "1", "--refine", "0", "--show-answers",
                "--go-on"]  # fmt: skip
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "openai sample 1 of 1 (round 0, usable)" in result.output
    assert "retq_please %eax" in result.output
