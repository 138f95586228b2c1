"""The model PPO trains: a causal LM loaded for training, the precision it runs in, and the
value head that shares its trunk. See :mod:`asmopt.model.training.ppo` for why bf16-mixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asmopt.model.training.ppo_config import DTYPES, TrainError

__all__ = [
    "Precision",
    "ValueHead",
    "load_policy",
    "model_signature",
    "pick_device",
    "resolve_precision",
]


@dataclass(frozen=True)
class Precision:
    """How a run stores and computes: ``weights`` is the dtype of the parameters (and so of
    AdamW's states), ``autocast`` the dtype forward passes run in (None: no autocast)."""

    weights: torch.dtype
    autocast: torch.dtype | None

    @property
    def name(self) -> str:
        if self.autocast is not None:
            return "bf16-mixed"
        return "bfloat16" if self.weights == torch.bfloat16 else "float32"


def resolve_precision(request: str, device: str) -> Precision:
    """``auto`` is bf16-mixed on CUDA (fp32 master weights, bf16 autocast) and float32 on
    the CPU; see :mod:`asmopt.model.training.ppo`."""
    if request == "auto":
        request = "bf16-mixed" if device.startswith("cuda") else "float32"
    if request == "float32":
        return Precision(torch.float32, None)
    if request == "bf16-mixed":
        return Precision(torch.float32, torch.bfloat16)
    if request == "bfloat16":
        return Precision(torch.bfloat16, None)
    raise TrainError(f"unknown dtype {request!r}: use {', '.join(DTYPES)}")


class ValueHead(nn.Module):
    """V(s) from the policy's last hidden state: one linear layer, initialised to zero."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


def pick_device(request: str) -> str:
    if request == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if request.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError(f"--device {request}: torch sees no CUDA device; use --device cpu")
    return request


def model_signature(config: Any) -> dict[str, Any]:
    """What must match for a checkpoint to continue a run: the architecture's shape."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    sig = {k: getattr(config, k, None) for k in keys}
    sig["architectures"] = list(getattr(config, "architectures", None) or [])
    return sig


def load_policy(
    model: str | Path, device: str = "cpu", dtype: str | torch.dtype = "auto"
) -> tuple[Any, Any]:
    """A trainable causal LM and its tokenizer from a HF checkpoint directory or a ``.gguf``
    (GGUF weights are de-quantized). ``dtype`` is the weights' dtype (a ``torch.dtype``, or a
    name of :data:`DTYPES`: the master weights of that precision). Raises :class:`TrainError`."""
    import transformers

    from asmopt.model.search.backends.transformers_backend import resolve_model_source
    from asmopt.model.search.policy import PolicyError

    try:
        source = resolve_model_source(model)
    except PolicyError as err:
        raise TrainError(str(err)) from err
    kwargs: dict[str, Any] = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    torch_dtype = (
        dtype if isinstance(dtype, torch.dtype) else resolve_precision(dtype, device).weights
    )
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source.directory, **kwargs)
        policy = transformers.AutoModelForCausalLM.from_pretrained(
            source.directory, dtype=torch_dtype, **kwargs
        )
    except Exception as err:
        raise TrainError(
            f"cannot load {source.path} as a causal language model: {type(err).__name__}: "
            f"{err}; pass a Hugging Face checkpoint directory or a .gguf file of a causal LM"
        ) from err
    if getattr(policy, "hf_quantizer", None) is not None:
        # A GGUF file is de-quantized on load; the tensors are plain, but transformers still
        # marks the model "quantized" and refuses to save it. It no longer is.
        policy.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(policy.config, "quantization_config"):
            del policy.config.quantization_config
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    policy.to(device)  # type: ignore[arg-type]
    return policy, tokenizer
