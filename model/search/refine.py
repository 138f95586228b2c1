"""Iterative refinement: the model revises its answer after seeing what the verifier found.

:class:`RefiningPolicy` wraps an :class:`~asmopt.model.search.llm_policy.LLMPolicy`. Each of the
``n`` samples (best-of-N) starts a conversation with the paper's prompt; after every answer
the candidate is verified in the sandbox and the verifier's findings go back into that
conversation as the next user message, for ``rounds`` rounds:

- no usable answer: why (no ```assembly block, the function could not be spliced);
- it does not assemble or link: the assembler's errors with their line numbers and the text
  of each line;
- a test fails: the first failing test, its status and the executor's short diff (at most a
  few lines of input and output: enough to see the bug, not a copy of the test set);
- it passes: the measured speed-up over ``gcc -O3`` with its 95% CI, and llvm-mca's estimate
  (a model, never a measurement) of the loop it rates costliest per iteration, beside the
  same for the baseline.

Every answer of every round is returned as a proposal (round 0 labelled like plain
sampling), so the portfolio verifies and ranks all of them together; with a result store the
second verification of a candidate is served from the store. :attr:`RefiningPolicy.answers`
keeps every raw answer for ``--json`` and ``--show-answers``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from asmopt.executor.results import Verdict
from asmopt.executor.verify import Baseline, VerificationResult
from asmopt.model.search.backends import Messages
from asmopt.model.search.llm_policy import LLMPolicy
from asmopt.model.search.policy import Candidate, NoCandidate, PolicyError, Proposal, Request
from asmopt.model.search.prompts import chat_messages
from asmopt.model.search.stages import Progress, Stage, quiet

__all__ = ["ModelAnswer", "RefiningPolicy", "feedback_for"]

Verify = Callable[[Candidate], VerificationResult]

_ANSWER_AGAIN = (
    "Answer with the complete optimized assembly in one ```assembly block, with no other text."
)
_MAX_DIAGNOSTICS = 5
_MAX_DETAIL_CHARS = 600


@dataclass(frozen=True)
class ModelAnswer:
    """One raw answer of a model, as the user may want to read it."""

    policy: str
    label: str
    round: int  # 0: the first answer; k: the k-th revision
    text: str
    usable: bool
    reason: str = ""  # why it is not a candidate, when it is not

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "label": self.label,
            "round": self.round,
            "text": self.text,
            "usable": self.usable,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelAnswer:
        return cls(
            policy=data["policy"],
            label=data.get("label", ""),
            round=int(data.get("round", 0)),
            text=data.get("text", ""),
            usable=bool(data.get("usable", False)),
            reason=data.get("reason", ""),
        )


def _clip(text: str, limit: int = _MAX_DETAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " ..."


def _costliest_loop(asm: str) -> tuple[str, float] | None:
    """(label, cycles per iteration) of the loop llvm-mca rates costliest; None without
    llvm-mca or loops."""
    from asmopt.executor.estimate import EstimateError, estimate_loops
    from asmopt.executor.toolchain import ToolNotFoundError

    try:
        loops = estimate_loops(asm)
    except (EstimateError, ToolNotFoundError, OSError, ValueError):
        return None
    if not loops:
        return None
    label, best = max(loops, key=lambda item: item[1].cycles_per_iteration)
    return label, best.cycles_per_iteration


def feedback_for(
    candidate: Candidate, result: VerificationResult, baseline: Baseline | None = None
) -> str:
    """The verifier's findings about ``candidate`` as a user message asking for a revision."""
    if result.verdict is Verdict.BUILD_FAILED:
        lines = candidate.asm.splitlines()
        found = []
        for d in result.build.diagnostics[:_MAX_DIAGNOSTICS] if result.build else ():
            where = f"line {d.line}" if d.line else "assembler"
            text = lines[d.line - 1].strip() if d.line and 0 < d.line <= len(lines) else ""
            found.append(f"- {where}: {d.message}" + (f"\n    {text}" if text else ""))
        if not found:
            stderr = result.build.stderr if result.build else result.message
            found.append(_clip(stderr or result.message))
        return (
            "Your assembly does not assemble or link:\n" + "\n".join(found) + "\n\n"
            "Fix these errors. " + _ANSWER_AGAIN
        )
    failed = next((t for t in result.tests if not t.passed), None)
    if result.verdict is Verdict.TESTS_FAILED or failed is not None:
        if failed is None:
            return f"Your program could not be judged: {result.message}. {_ANSWER_AGAIN}"
        passed = result.tests_passed
        parts = [
            f"Your program assembles, but {len(result.tests) - passed} of {len(result.tests)} "
            f"tests fail. The first failing test, {failed.name}: {failed.status.value}."
        ]
        if baseline is not None:
            test = next((t for t in baseline.tests if t.name == failed.name), None)
            if test is not None and test.stdin:
                parts.append("Its input:\n" + _clip(test.stdin.decode("utf-8", "replace"), 300))
        if failed.detail:
            parts.append("What went wrong:\n" + _clip(failed.detail))
        parts.append("Fix the bug without losing speed. " + _ANSWER_AGAIN)
        return "\n\n".join(parts)
    parts = [f"Your program passes all {len(result.tests)} tests."]
    s = result.speedup
    if result.identical_to_baseline:
        parts.append("But it is the gcc -O3 assembly unchanged, so it is not faster.")
    elif s is not None:
        verdict = (
            "significantly faster"
            if result.verdict is Verdict.FASTER
            else "slower"
            if s.ci_high < 1.0
            else "not measurably faster"
        )
        parts.append(
            f"Measured speed-up over gcc -O3: {s.median:.2f}x (95% CI {s.ci_low:.2f}-"
            f"{s.ci_high:.2f}): {verdict}."
        )
    mine = _costliest_loop(candidate.asm)
    theirs = _costliest_loop(baseline.asm) if baseline is not None else None
    if mine is not None:
        text = (
            f"llvm-mca's estimate (a model, not a measurement) of your costliest loop "
            f"({mine[0]}): {mine[1]:.1f} cycles per iteration"
        )
        if theirs is not None:
            text += f"; gcc -O3's costliest loop ({theirs[0]}): {theirs[1]:.1f}"
        parts.append(text + ".")
    parts.append("Make it faster while keeping every output identical. " + _ANSWER_AGAIN)
    return "\n".join(parts[:-1]) + "\n\n" + parts[-1]


@dataclass
class _Conversation:
    messages: Messages
    sample: int  # 0-based index among the n samples
    last_text: str = ""
    last: Proposal | None = None


class RefiningPolicy:
    """An LLM policy whose answers are verified and revised ``rounds`` times (see the module
    docstring). ``verify`` judges a candidate (the optimizer's verifier: sandbox, baseline,
    options, result store); ``progress`` receives one line per stage of every round."""

    def __init__(
        self,
        inner: LLMPolicy,
        rounds: int,
        verify: Verify,
        *,
        baseline: Baseline | None = None,
        progress: Progress | None = None,
        workers: int = 1,
        cancel: threading.Event | None = None,
    ) -> None:
        if rounds < 0:
            raise ValueError(f"refine rounds must be 0 or more, not {rounds}")
        self.inner = inner
        self.name = inner.name
        self.rounds = rounds
        self.verify = verify
        self.baseline = baseline
        self.progress = progress or quiet
        self.workers = max(1, workers)
        self.cancel = cancel
        self.answers: list[ModelAnswer] = []

    def _record(self, proposal: Proposal, text: str, round_: int, label: str) -> None:
        usable = isinstance(proposal, Candidate)
        reason = "" if usable else proposal.reason  # type: ignore[union-attr]
        self.answers.append(ModelAnswer(self.name, label, round_, text, usable, reason))

    def _complete(self, messages: Messages, n: int) -> list[str]:
        return self.inner.complete(messages, n)

    def propose(self, request: Request, n: int = 1) -> list[Proposal]:
        """``n`` conversations of ``rounds + 1`` answers each; every answer is a proposal."""
        if request.c_source is None and request.function is None and not request.baseline_asm:
            return [NoCandidate(self.name, "nothing to optimize: no C source and no assembly")]
        first = chat_messages(self.inner.prompt_for(request))
        texts = self._complete(first, n)  # PolicyError here: the policy cannot run
        conversations = [_Conversation(list(first), i) for i in range(len(texts))]
        out: list[Proposal] = []
        for conv, text in zip(conversations, texts, strict=True):
            proposal = self.inner.proposal(request, text, conv.sample, len(texts))
            conv.last_text, conv.last = text, proposal
            self._record(proposal, text, 0, _label(proposal, self.name, conv.sample, len(texts)))
            out.append(proposal)
        for round_ in range(1, self.rounds + 1):
            if self.cancel is not None and self.cancel.is_set():
                break
            self.progress(
                Stage.VERIFY, f"refine round {round_}/{self.rounds}: verifying {len(texts)} answers"
            )
            try:
                feedback = self._feedback_all(conversations)
            except Exception as err:  # cancelled, or the sandbox failed: keep what was made
                if self.cancel is None or not self.cancel.is_set():
                    reason = f"refine round {round_}: verification failed: {type(err).__name__}"
                    out.append(NoCandidate(self.name, f"{reason}: {err}"))
                break
            for conv, message in zip(conversations, feedback, strict=True):
                conv.messages += [
                    {"role": "assistant", "content": conv.last_text},
                    {"role": "user", "content": message},
                ]
            for k, conv in enumerate(conversations):
                if self.cancel is not None and self.cancel.is_set():
                    break
                self.progress(
                    Stage.GENERATE,
                    f"asking {self.name} to revise answer {k + 1}/{len(conversations)} "
                    f"(round {round_}/{self.rounds})",
                )
                try:
                    text = self._complete(conv.messages, 1)[0]
                except PolicyError as err:
                    out.append(NoCandidate(self.name, f"round {round_}: {err}"))
                    break  # the back-end is gone: later conversations would fail alike
                proposal = self.inner.proposal(request, text, conv.sample, len(conversations))
                proposal = _in_round(proposal, round_)
                conv.last_text, conv.last = text, proposal
                label = _label(proposal, self.name, conv.sample, len(conversations), round_)
                self._record(proposal, text, round_, label)
                out.append(proposal)
        return out

    def _feedback_all(self, conversations: list[_Conversation]) -> list[str]:
        def one(conv: _Conversation) -> str:
            proposal = conv.last
            if isinstance(proposal, Candidate):
                return feedback_for(proposal, self.verify(proposal), self.baseline)
            reason = proposal.reason if isinstance(proposal, NoCandidate) else "no answer"
            return f"Your answer could not be used: {reason}. {_ANSWER_AGAIN}"

        with ThreadPoolExecutor(self.workers, thread_name_prefix="asmopt-refine") as pool:
            return list(pool.map(one, conversations))


def _label(proposal: Proposal, name: str, sample: int, total: int, round_: int = 0) -> str:
    if isinstance(proposal, Candidate) and proposal.label:
        return proposal.label
    base = f"{name} sample {sample + 1} of {total}"
    return base if round_ == 0 else f"{base}, revision {round_}"


def _in_round(proposal: Proposal, round_: int) -> Proposal:
    """The proposal labelled with its round ("..., revision 2")."""
    if not isinstance(proposal, Candidate):
        return proposal
    return replace(
        proposal,
        label=f"{proposal.label}, revision {round_}",
        meta={**proposal.meta, "round": str(round_)},
    )
