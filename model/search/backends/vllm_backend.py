"""The ``vllm`` back-end: vLLM's offline engine in this process (CUDA only).

``vllm`` is imported on first use; without it, using the back-end raises a ``PolicyError``
that says how to install it. To share one loaded model between processes, run
``vllm serve MODEL`` and use the ``openai`` back-end instead.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from asmopt.model.search.backends import ChatBackend, CompletionRequest
from asmopt.model.search.policy import PolicyError

__all__ = ["VLLMBackend", "sampling_params"]

_NOT_INSTALLED = "vLLM is not installed: pip install 'asmopt[vllm]' (needs CUDA)"


def sampling_params(
    vllm: Any, n: int, temperature: float, max_new_tokens: int, seed: int | None
) -> Any:
    """Map asmopt's sampling arguments onto ``vllm.SamplingParams``.

    Only these four are set, so sampling is plain temperature sampling (top-p 1, no top-k)
    as in the paper's rollouts. Greedy decoding (temperature 0) asks for one sequence: some
    vLLM versions reject ``n > 1`` when greedy, and every greedy sequence is the same anyway.
    """
    kwargs: dict[str, Any] = {
        "n": 1 if temperature == 0 else n,
        "temperature": float(temperature),
        "max_tokens": max_new_tokens,
    }
    if seed is not None:
        kwargs["seed"] = seed
    return vllm.SamplingParams(**kwargs)


class VLLMBackend(ChatBackend):
    """Samples completions with ``vllm.LLM`` (loaded once, on first use or :meth:`load`).

    ``model`` is a checkpoint directory or a model id vLLM can resolve. ``max_model_len``
    bounds prompt plus answer in tokens (the paper uses 2000 + 2000); ``None`` keeps the
    model's own limit, which may not fit in GPU memory.
    """

    name = "vllm"

    def __init__(
        self,
        model: str | Path,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = 8192,
        dtype: str = "auto",
    ) -> None:
        text = str(model)
        looks_local = text.startswith(("/", "./", "../", "~")) or text.endswith(".gguf")
        if looks_local and not Path(text).expanduser().exists():
            raise PolicyError(
                f"model not found: {text} does not exist; pass a checkpoint directory or a "
                "Hugging Face model id"
            )
        self.model = str(Path(text).expanduser()) if looks_local else text
        self.tensor_parallel_size = tensor_parallel_size
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_model_len = max_model_len
        self.dtype = dtype
        self._lock = threading.Lock()
        self._llm: Any = None
        self._vllm: Any = None

    @property
    def model_id(self) -> str:
        """A short name for the model."""
        return Path(self.model).name or self.model

    @property
    def loaded(self) -> bool:
        """Whether the engine is up."""
        return self._llm is not None

    def load(self) -> None:
        """Start the vLLM engine now; later calls do nothing. Raises ``PolicyError``."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self._llm is not None:
            return
        try:
            import vllm
        except ImportError as exc:
            raise PolicyError(_NOT_INSTALLED) from exc
        options: dict[str, Any] = {
            "model": self.model,
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "dtype": self.dtype,
        }
        if self.max_model_len is not None:
            options["max_model_len"] = self.max_model_len
        try:
            self._llm = vllm.LLM(**options)
        except Exception as exc:
            raise PolicyError(
                f"vLLM could not load {self.model}: {type(exc).__name__}: {exc}; check that a "
                "CUDA GPU is visible (nvidia-smi) and, if memory is short, lower "
                "gpu_memory_utilization or max_model_len"
            ) from exc
        self._vllm = vllm

    def _sample(self, request: CompletionRequest) -> list[str]:
        """Sample the completions with the engine (loaded first if need be)."""
        n, max_new_tokens = request.n, request.max_new_tokens
        with self._lock:
            self._load_locked()
            params = sampling_params(
                self._vllm, n, request.temperature, max_new_tokens, request.seed
            )
            try:
                results = self._llm.chat(request.messages, sampling_params=params, use_tqdm=False)
            except Exception as exc:
                if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc):
                    raise PolicyError(
                        f"out of GPU memory generating n={n} x {max_new_tokens} tokens with "
                        f"{self.model_id}: lower n, max_new_tokens or max_model_len"
                    ) from exc
                raise
        return [output.text for output in results[0].outputs]
