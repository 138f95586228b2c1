"""LLM back-ends: things that turn chat messages into ``n`` sampled completions.

A back-end knows nothing of prompts, assembly or extraction; policies build the messages and
read the answers. Three back-ends exist, chosen by the policy names users type:

- ``transformers``: a local Hugging Face checkpoint directory or ``.gguf`` file (CPU or GPU).
- ``openai``: any OpenAI-compatible HTTP endpoint (``vllm serve``, llama.cpp, ``asmopt
  serve-model``), spoken to with the standard library only.
- ``vllm``: vLLM in this process (CUDA only).

Importing this package (or any back-end module) never imports torch, transformers or vllm:
they load on first use, so the language server starts fast. Build one with
:func:`asmopt.model.search.backends.factory.make_backend`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from asmopt.model.search.policy import PolicyError

__all__ = [
    "BACKEND_NAMES",
    "ChatBackend",
    "CompletionRequest",
    "Messages",
    "PolicyError",
    "check_messages",
    "check_sampling",
]

#: The back-end names users type (``--policy``), in the order they are documented.
BACKEND_NAMES: tuple[str, ...] = ("transformers", "openai", "vllm")

#: Chat messages as OpenAI defines them: ``[{"role": "user", "content": "..."}]``.
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class CompletionRequest:
    """The checked arguments of one :meth:`ChatBackend.complete` call, as back-ends see them."""

    messages: Messages
    n: int
    temperature: float
    max_new_tokens: int
    seed: int | None
    #: Receives lines about generation in progress, from back-ends that can report it.
    progress: Callable[[str], None] | None = None

    @property
    def greedy(self) -> bool:
        """Temperature 0: one answer, computed once and repeated ``n`` times."""
        return self.temperature == 0


class ChatBackend(ABC):
    """Turns chat messages into sampled completions.

    ``name`` is ``"transformers"``, ``"openai"`` or ``"vllm"``. The built-in back-ends
    subclass it and implement :meth:`_sample`; the policies only call :meth:`complete`, so
    any object with that method and a ``name`` serves them too (tests pass such fakes).
    """

    name: str

    def complete(
        self,
        messages: Messages,
        n: int = 1,
        temperature: float = 0.5,
        max_new_tokens: int = 2000,
        seed: int | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> list[str]:
        """Return ``n`` completions of the assistant turn that follows ``messages``.

        Each string is only the newly generated text (no prompt, no special tokens).
        ``temperature`` 0 means greedy decoding (all ``n`` answers are then identical);
        ``seed`` makes sampling repeatable where the back-end supports it. ``progress``
        receives a line about twice a second while generating, from back-ends that can
        report it (``transformers``: CPU generation of 2000 tokens takes minutes). Raises
        ``ValueError`` for malformed arguments and ``PolicyError`` when the back-end cannot
        run (model missing, endpoint down, out of memory), with a message that says what to do.
        """
        check_messages(messages)
        check_sampling(n, temperature, max_new_tokens)
        request = CompletionRequest(messages, n, temperature, max_new_tokens, seed, progress)
        texts = self._sample(request)
        return texts * n if request.greedy else texts

    @abstractmethod
    def _sample(self, request: CompletionRequest) -> list[str]:
        """The completions for a checked ``request``: ``n`` of them, or one when greedy."""


def check_messages(messages: object) -> Messages:
    """Return ``messages`` if it is a non-empty list of ``{"role": str, "content": str}``.

    Raises ``ValueError`` naming the first bad entry, so callers see a programming error at
    once instead of a confusing failure deep inside a tokenizer or an HTTP server.
    """
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{i}] must be a dict, got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role:
            raise ValueError(f"messages[{i}] needs a non-empty string 'role'")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}] needs a string 'content'")
    return messages


def check_sampling(n: int, temperature: float, max_new_tokens: int) -> None:
    """Raise ``ValueError`` for sampling arguments no back-end can honour."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not isinstance(temperature, int | float) or temperature < 0:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
