"""The one interface every source of candidates implements: LLMs and compiler search alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Request:
    """What a policy is asked to improve.

    ``function`` is None for the whole translation unit (the paper's setting). ``c_source`` is
    the text of the C file when there is one; ``baseline_asm`` is its ``gcc -O3 -S`` output
    (or the user's assembly file). ``source_path`` lets compiler-based policies rebuild.
    """

    baseline_asm: str
    c_source: str | None = None
    function: str | None = None
    source_path: Path | None = None
    cflags: tuple[str, ...] = ()
    tests_dir: Path | None = None  # inputs for profile-guided builds
    allow_native: bool = False  # may use -march=native (non-portable; labelled)
    march_level: str = "x86-64"  # the CPU level the code will run on (x86-64-v2/v3/v4)


@dataclass(frozen=True)
class Candidate:
    """A whole assembly file proposed by a policy.

    ``asm`` is always a complete translation unit ready to assemble: a per-function answer has
    already been spliced into the baseline. ``label`` says how it was made ("clang -O3",
    "gcc -O3 PGO", "sample 2 of 4"), ``policy`` which policy made it.
    """

    asm: str
    policy: str
    label: str = ""
    function: str | None = None
    portable: bool = True
    raw_response: str | None = None  # the model's full text, for LLM candidates
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NoCandidate:
    """A policy ran but produced nothing usable; ``reason`` says why in plain words."""

    policy: str
    reason: str
    raw_response: str | None = None
    unavailable: bool = False  # the policy cannot run at all (model missing, endpoint down)


Proposal = Candidate | NoCandidate
Progress = Callable[[str], None]


@runtime_checkable
class Policy(Protocol):
    """Anything that proposes candidates. ``name`` is one of the policy names users type:
    ``compiler``, ``transformers``, ``openai``, ``vllm``."""

    name: str

    def propose(self, request: Request, n: int = 1) -> list[Proposal]:
        """Return up to ``n`` proposals (candidates or reasons there are none). Never raises for
        bad model output; raises ``PolicyError`` when the policy itself cannot run."""
        ...


class PolicyError(RuntimeError):
    """A policy cannot run at all (model missing, endpoint down); the message says what to do."""
