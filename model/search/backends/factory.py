"""Build a back-end from the names users type: ``--policy``, ``--model``, ``--endpoint``."""

from __future__ import annotations

import inspect
from typing import Any

from asmopt.model.search.backends import BACKEND_NAMES, ChatBackend
from asmopt.model.search.policy import PolicyError

__all__ = ["make_backend"]


def make_backend(policy: str, model: str | None, endpoint: str | None, **opts: Any) -> ChatBackend:
    """Return the back-end for ``policy`` (``transformers``, ``openai`` or ``vllm``).

    ``transformers`` and ``vllm`` need ``model`` (a checkpoint directory or ``.gguf`` file;
    vLLM also takes a model id); ``openai`` needs ``endpoint`` and uses ``model`` as the
    model name when given. ``opts`` go to the back-end's constructor (``device``, ``dtype``,
    ``timeout``, ``api_key``, ``tensor_parallel_size``, ...); an option the back-end does not
    take raises ``PolicyError`` naming the ones it does. Nothing heavy is imported here.
    """
    if policy == "transformers":
        from asmopt.model.search.backends.transformers_backend import TransformersBackend

        if not model:
            raise PolicyError(
                "the transformers policy needs a model: pass --model PATH (a Hugging Face "
                "checkpoint directory or a .gguf file)"
            )
        return _construct(TransformersBackend, policy, model, **opts)
    if policy == "vllm":
        from asmopt.model.search.backends.vllm_backend import VLLMBackend

        if not model:
            raise PolicyError(
                "the vllm policy needs a model: pass --model PATH_OR_ID (a checkpoint "
                "directory or a Hugging Face model id)"
            )
        return _construct(VLLMBackend, policy, model, **opts)
    if policy == "openai":
        from asmopt.model.search.backends.openai_backend import OpenAIBackend

        if not endpoint:
            raise PolicyError(
                "the openai policy needs an endpoint: pass --endpoint URL, e.g. "
                "http://127.0.0.1:8000/v1 after `vllm serve MODEL` or `asmopt serve-model`"
            )
        return _construct(OpenAIBackend, policy, endpoint, model=model, **opts)
    raise PolicyError(f"unknown LLM policy {policy!r}: choose one of {', '.join(BACKEND_NAMES)}")


def _construct(cls: type, policy: str, *args: Any, **opts: Any) -> Any:
    parameters = inspect.signature(cls).parameters
    known = [name for name in parameters if name not in ("model", "base_url")]
    unknown = sorted(set(opts) - set(parameters))
    if unknown:
        raise PolicyError(
            f"the {policy} back-end takes no option {', '.join(unknown)}; "
            f"it takes {', '.join(known)}"
        )
    return cls(*args, **opts)
