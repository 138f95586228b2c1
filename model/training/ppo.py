"""A compact PPO trainer for Hugging Face causal LMs, on the CPU or one GPU.

Modelled on CleanRL's ``ppo.py``: one file, every hyper-parameter in :class:`PPOConfig`,
GAE and the clipped losses in plain sight. One training step:

1. rollout: sample one response per prompt of the batch (temperature sampling);
2. reward: the executor verifies each response in the sandbox (:class:`RewardPool`) and a
   reward function scores it; the score is the reward of the response's last token, and,
   with ``kl_coef > 0``, every token also pays ``kl_coef * (log pi - log pi_ref)`` to a
   frozen copy of the initial model;
3. advantages: values from a value head on the policy's last hidden state, then GAE;
4. update: ``ppo_epochs`` passes over mini-batches, each accumulated over micro-batches, of
   the clipped policy loss, the clipped value loss and an entropy bonus.

The paper (verl) uses a separate critic model; here the value head shares the policy's
trunk, so one model fits on one device. It has its own learning rate (``critic_lr``).

Precision (``dtype``): the paper's learning rate (1e-6) is far below the resolution of
bfloat16 weights (about 0.4% of a weight's size), so AdamW steps on bf16 weights mostly round
away. ``bf16-mixed`` (the default on CUDA) keeps float32 master weights and optimizer states
and runs forward/backward passes under bfloat16 autocast, as verl's FSDP mixed precision does;
``float32`` (the default on the CPU) computes in float32 too; ``bfloat16`` keeps the weights
themselves in bf16 (half the memory; only for large learning rates, it says so).
``gradient_checkpointing`` recomputes activations in the backward pass (for 7B models at
4k tokens).

After every ``save_every`` steps the policy is saved in Hugging Face format in
``OUT/checkpoint`` (what ``TransformersBackend`` and ``asmopt optimize --model`` load) with
``trainer_state.pt`` beside it (value head, optimizer state, step, RNG states), swapped in
atomically; a run started again with the same ``OUT`` resumes from it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from asmopt.model.search.backends.transformers_backend import stop_token_ids
from asmopt.model.training.reward import Problem as RewardProblem
from asmopt.model.training.reward import RewardError, RewardPool, Scored

__all__ = [
    "PPOConfig",
    "PPOTrainer",
    "Sample",
    "TrainError",
    "ValueHead",
    "compute_gae",
    "load_policy",
    "plot_metrics",
]

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.pt"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "metrics.png"


class TrainError(RuntimeError):
    """Training cannot start or go on; the message says what to do."""


DTYPES = ("auto", "float32", "bf16-mixed", "bfloat16")


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
    the CPU; see the module docstring."""
    if request == "auto":
        request = "bf16-mixed" if device.startswith("cuda") else "float32"
    if request == "float32":
        return Precision(torch.float32, None)
    if request == "bf16-mixed":
        return Precision(torch.float32, torch.bfloat16)
    if request == "bfloat16":
        return Precision(torch.bfloat16, None)
    raise TrainError(f"unknown dtype {request!r}: use {', '.join(DTYPES)}")


@dataclass(frozen=True)
class PPOConfig:
    """Every hyper-parameter of a run. Defaults are the paper's verl run where it has one."""

    # rollouts
    batch_size: int = 16  # prompts per step (verl data.train_batch_size=16)
    max_prompt_tokens: int = 2000  # longer prompts are left out (verl filter_overlong_prompts)
    max_new_tokens: int = 2000  # verl data.max_response_length=2000
    temperature: float = 0.5  # verl actor_rollout_ref.rollout.temperature=0.5
    # optimisation
    actor_lr: float = 1e-6  # verl actor_rollout_ref.actor.optim.lr
    critic_lr: float = 1e-5  # verl critic.optim.lr (here: the value head's)
    ppo_epochs: int = 1  # passes over each batch
    mini_batch_size: int = 16  # samples per optimizer step (verl ppo_mini_batch_size=16)
    micro_batch_size: int = 1  # samples per forward/backward (gradient accumulation)
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    # PPO
    gamma: float = 1.0  # verl algorithm.gamma
    lam: float = 1.0  # verl algorithm.lam
    clip_coef: float = 0.2  # verl actor.clip_ratio
    value_clip: float = 0.5  # verl critic.cliprange_value
    vf_coef: float = 0.5
    ent_coef: float = 0.0  # entropy bonus
    kl_coef: float = 0.0  # paper: no KL (use_kl_loss=False, use_kl_in_reward=False)
    normalize_advantages: bool = True
    # the run
    epochs: int = 1  # paper: 1 epoch
    steps: int | None = None  # stop after this many steps (None: ``epochs`` over the data)
    seed: int = 0
    save_every: int = 1
    device: str = "auto"
    dtype: str = "auto"  # auto | float32 | bf16-mixed | bfloat16 (see the module docstring)
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "mini_batch_size", "micro_batch_size", "ppo_epochs"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name} must be at least 1")
        if self.mini_batch_size % self.micro_batch_size:
            raise TrainError("mini_batch_size must be a multiple of micro_batch_size")
        if self.max_new_tokens < 1 or self.max_prompt_tokens < 1:
            raise TrainError("max_new_tokens and max_prompt_tokens must be at least 1")
        if self.temperature <= 0:
            raise TrainError("temperature must be > 0 (PPO needs a sampling policy)")
        if self.dtype not in DTYPES:
            raise TrainError(f"unknown dtype {self.dtype!r}: use {', '.join(DTYPES)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PPOConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------- the model


class ValueHead(nn.Module):
    """V(s) from the policy's last hidden state: one linear layer, initialised to zero."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


def _pick_device(request: str) -> str:
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


# --------------------------------------------------------------------------- rollouts


@dataclass
class Sample:
    """One prompt and the response sampled for it, with everything PPO computes about it."""

    problem_index: int
    prompt_ids: list[int]
    response_ids: list[int]
    text: str = ""
    score: Scored | None = None


def render_prompt(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of the chat prompt as the model sees it (template, or the plain format)."""
    from asmopt.model.search.backends.transformers_backend import plain_chat_prompt

    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(plain_chat_prompt(list(messages)))["input_ids"]


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over response tokens ([batch, time], right-padded).

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``,
    with ``V`` = 0 after the last token. Returns (advantages, returns = advantages + values).
    """
    values = values * mask
    rewards = rewards * mask
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros(rewards.shape[0], device=rewards.device)
    steps = rewards.shape[1]
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(last_gae)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = delta + gamma * lam * last_gae
        advantages[:, t] = last_gae
    return advantages * mask, (advantages + values) * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


# --------------------------------------------------------------------------- the trainer


ResponseToSolution = Callable[[Sequence[int], str], str]
Progress = Callable[[int, int, dict[str, Any]], None]


@dataclass
class _Batch:
    """Right-padded tensors of a list of samples, as the model and the losses use them."""

    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    positions: torch.Tensor  # [B, T]: index of the logit that predicts response token t
    responses: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T]: 1 on response tokens


@dataclass
class PPOTrainer:
    """PPO on ``problems`` (data-set problems with ``prompt`` or C source and assembly)."""

    model_path: str | Path
    problems: Sequence[Any]  # asmopt.model.evaluation.dataset.Problem
    out_dir: Path
    config: PPOConfig = field(default_factory=PPOConfig)
    rewards: RewardPool | None = None
    response_to_solution: ResponseToSolution | None = None  # default: the response text
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if not self.problems:
            raise TrainError("the data set holds no problems to train on")
        for p in self.problems:
            if not p.tests:
                raise TrainError(
                    f"{p.name} has no tests: every training problem needs tests so that "
                    "its candidates can be verified; drop it or add tests"
                )
        self.rewards = self.rewards or RewardPool()
        self.reward_problems = [RewardProblem.from_dataset_problem(p) for p in self.problems]
        self.device = _pick_device(self.config.device)
        self.precision = resolve_precision(self.config.dtype, self.device)
        self.step = 0

    # -- setup ------------------------------------------------------------------------------
    def setup(self) -> None:
        """Load the policy (from OUT's checkpoint when there is one), the value head, the
        optimizer and, to resume, their saved state."""
        cfg = self.config
        checkpoint = self.out_dir / CHECKPOINT_DIR
        state = None
        if (checkpoint / STATE_FILE).exists():
            state = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=False)
            self._check_same_architecture(state)
            self.log(f"resuming from {checkpoint} at step {state['step']}")
            self.policy, self.tokenizer = load_policy(
                checkpoint, self.device, self.precision.weights
            )
        else:
            self.policy, self.tokenizer = load_policy(
                self.model_path, self.device, self.precision.weights
            )
        if self.precision.weights == torch.bfloat16 and cfg.actor_lr < 1e-4:
            self.log(
                f"warning: dtype bfloat16 keeps the weights in bf16, whose resolution (~0.4%) "
                f"swallows most AdamW steps at lr {cfg.actor_lr:g}; use bf16-mixed"
            )
        if cfg.gradient_checkpointing:
            if not getattr(self.policy, "supports_gradient_checkpointing", False):
                raise TrainError(
                    f"{type(self.policy).__name__} does not support gradient checkpointing"
                )
            self.policy.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        self.signature = model_signature(self.policy.config)
        hidden = self.policy.config.hidden_size
        self.value_head = ValueHead(hidden).to(self.device)
        self.reference = None
        if cfg.kl_coef > 0:
            # The frozen reference is the model the run started from, never a later checkpoint.
            # Never trained, so it may live in the compute dtype (half the memory when mixed).
            ref_dtype = self.precision.autocast or self.precision.weights
            self.reference, _ = load_policy(self.model_path, self.device, ref_dtype)
            self.reference.eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": list(self.policy.parameters()), "lr": cfg.actor_lr},
                {"params": list(self.value_head.parameters()), "lr": cfg.critic_lr},
            ],
            weight_decay=cfg.weight_decay,
        )
        self._seed(cfg.seed)
        if state is not None:
            try:
                self.value_head.load_state_dict(state["value_head"])
                self.optimizer.load_state_dict(state["optimizer"])
            except (RuntimeError, ValueError, KeyError) as err:
                raise TrainError(
                    f"the checkpoint in {checkpoint} does not fit this model ({err}); "
                    "use another --out, or delete that checkpoint to start over"
                ) from err
            self.step = int(state["step"])
            _set_rng_state(state["rng"])
        self.prompts = self._tokenize_prompts()

    def _check_same_architecture(self, state: dict[str, Any]) -> None:
        import transformers

        from asmopt.model.search.backends.transformers_backend import resolve_model_source
        from asmopt.model.search.policy import PolicyError

        try:
            source = resolve_model_source(self.model_path)
            kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
            config = transformers.AutoConfig.from_pretrained(source.directory, **kwargs)
        except (PolicyError, OSError, ValueError) as err:
            raise TrainError(f"cannot read the model's configuration: {err}") from err
        wanted, saved = model_signature(config), state.get("signature", {})
        differs = {k for k in wanted if k != "architectures" and wanted[k] != saved.get(k)}
        if differs:
            detail = ", ".join(f"{k}: {saved.get(k)} vs {wanted[k]}" for k in sorted(differs))
            raise TrainError(
                f"the checkpoint in {self.out_dir / CHECKPOINT_DIR} was trained from another "
                f"architecture than --model {self.model_path} ({detail}); pass the model it "
                "was started from, or another --out"
            )

    def _tokenize_prompts(self) -> list[list[int] | None]:
        from asmopt.model.search.prompts import build_prompt, build_prompt_c_only, chat_messages

        out: list[list[int] | None] = []
        for p in self.problems:
            messages = list(p.prompt) if p.prompt else None
            if messages is None:
                text = (
                    build_prompt(p.c_source, p.baseline_asm)
                    if p.c_source is not None
                    else build_prompt_c_only(p.baseline_asm)
                )
                messages = chat_messages(text)
            ids = render_prompt(self.tokenizer, messages)
            out.append(ids if len(ids) <= self.config.max_prompt_tokens else None)
        kept = sum(1 for ids in out if ids is not None)
        if kept == 0:
            raise TrainError(
                f"every prompt is longer than max_prompt_tokens={self.config.max_prompt_tokens}"
                "; raise --max-prompt-tokens"
            )
        if kept < len(out):
            self.log(f"left out {len(out) - kept} problems with prompts over the token limit")
        if kept < self.config.batch_size:
            over = f" ({len(out) - kept} left out as too long)" if kept < len(out) else ""
            raise TrainError(
                f"the data set has {kept} usable problems{over}, fewer than one batch of "
                f"{self.config.batch_size}: lower --batch-size to at most {kept}, or add problems"
            )
        return out

    def _autocast(self) -> Any:
        """Forward passes under bf16 autocast for ``bf16-mixed``; a no-op otherwise."""
        if self.precision.autocast is None:
            return contextlib.nullcontext()
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        return torch.autocast(kind, dtype=self.precision.autocast)

    def _seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    # -- the schedule -----------------------------------------------------------------------
    def total_steps(self) -> int:
        usable = sum(1 for ids in self.prompts if ids is not None)
        per_epoch = max(1, usable // self.config.batch_size)
        if self.config.steps is not None:
            return self.config.steps
        return per_epoch * self.config.epochs

    def batch_indices(self, step: int) -> list[int]:
        """Problems of ``step``: a fresh seeded shuffle every epoch, so a resumed run sees the
        same batches as an uninterrupted one."""
        usable = [i for i, ids in enumerate(self.prompts) if ids is not None]
        size = min(self.config.batch_size, len(usable))
        per_epoch = max(1, len(usable) // size)
        epoch, offset = divmod(step, per_epoch)
        order = np.random.default_rng(self.config.seed + epoch).permutation(len(usable))
        return [usable[j] for j in order[offset * size : (offset + 1) * size]]

    # -- one step ---------------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, indices: Sequence[int]) -> list[Sample]:
        """Sample one response per problem with the current policy (one batched generate,
        prompts left-padded)."""
        cfg = self.config
        self.policy.eval()
        eos = stop_token_ids(self.policy, self.tokenizer)
        pad = self.tokenizer.pad_token_id
        prompts = [self.prompts[i] for i in indices]
        width = max(len(p) for p in prompts if p is not None)
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for b, prompt in enumerate(prompts):
            assert prompt is not None
            input_ids[b, width - len(prompt) :] = torch.tensor(prompt)
            attention[b, width - len(prompt) :] = 1
        with self._autocast():
            output = self.policy.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                do_sample=True,
                temperature=cfg.temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=cfg.max_new_tokens,
                eos_token_id=eos or None,
                pad_token_id=pad,
            )
        samples = []
        for b, (i, prompt) in enumerate(zip(indices, prompts, strict=True)):
            assert prompt is not None
            response = output[b, width:].tolist()
            for k, token in enumerate(response):  # keep the stop token: it is an action too
                if token in eos:
                    response = response[: k + 1]
                    break
            if not response:
                response = [eos[0] if eos else pad]
            text = self.tokenizer.decode(response, skip_special_tokens=True)
            samples.append(Sample(i, list(prompt), response, text))
        return samples

    def score(self, samples: list[Sample]) -> None:
        """Verify every response in the sandbox and attach its reward (raises RewardError)."""
        from asmopt.model.training.reward import extract_answer

        assert self.rewards is not None
        extraction = self.rewards.settings.extraction
        items = []
        for s in samples:
            solution = (
                self.response_to_solution(s.response_ids, s.text)
                if self.response_to_solution
                else s.text
            )
            items.append(
                (extract_answer(solution, extraction), self.reward_problems[s.problem_index])
            )
        names = [self.problems[s.problem_index].name for s in samples]
        for sample, scored in zip(samples, self.rewards.score(items, names), strict=True):
            sample.score = scored

    def _batch(self, samples: Sequence[Sample]) -> _Batch:
        pad = self.tokenizer.pad_token_id
        seqs = [s.prompt_ids + s.response_ids for s in samples]
        length = max(len(x) for x in seqs)
        steps = max(len(s.response_ids) for s in samples)
        input_ids = torch.full((len(seqs), length), pad, dtype=torch.long)
        attention = torch.zeros((len(seqs), length), dtype=torch.long)
        positions = torch.zeros((len(seqs), steps), dtype=torch.long)
        responses = torch.full((len(seqs), steps), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), steps))
        for b, (s, seq) in enumerate(zip(samples, seqs, strict=True)):
            n, p = len(s.response_ids), len(s.prompt_ids)
            input_ids[b, : len(seq)] = torch.tensor(seq)
            attention[b, : len(seq)] = 1
            # The logit at position p + t - 1 predicts response token t.
            positions[b, :n] = torch.arange(p - 1, p - 1 + n)
            responses[b, :n] = torch.tensor(s.response_ids)
            mask[b, :n] = 1
        d = self.device
        return _Batch(
            input_ids.to(d), attention.to(d), positions.to(d), responses.to(d), mask.to(d)
        )

    def _forward(
        self, model: Any, batch: _Batch, with_values: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Log-probabilities and entropies of the response tokens (at the sampling
        temperature, as they were sampled), and the value head's V(s_t)."""
        with self._autocast():
            out = model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                output_hidden_states=with_values,
                use_cache=False,
            )
        index = batch.positions.unsqueeze(-1)
        logits = out.logits.gather(1, index.expand(-1, -1, out.logits.shape[-1]))
        logp_all = torch.log_softmax(logits.float() / self.config.temperature, dim=-1)
        logprobs = logp_all.gather(-1, batch.responses.unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        values = None
        if with_values:
            hidden = out.hidden_states[-1]
            hidden = hidden.gather(1, index.expand(-1, -1, hidden.shape[-1]))
            values = self.value_head(hidden)
        return logprobs, entropy, values

    def update(self, samples: list[Sample]) -> dict[str, float]:
        """Advantages for ``samples`` and ``ppo_epochs`` passes of clipped PPO updates."""
        cfg = self.config
        batch = self._batch(samples)
        mask = batch.mask
        scores = torch.tensor([s.score.reward for s in samples], device=self.device)  # type: ignore[union-attr]

        # 1. What the policy that sampled thought: old log-probs and values (no gradient).
        self.policy.eval()
        with torch.no_grad():
            old_logprobs, _, old_values = self._forward(self.policy, batch, with_values=True)
            assert old_values is not None
            rewards = torch.zeros_like(old_logprobs)
            kl_ref = torch.zeros_like(old_logprobs)
            if self.reference is not None:
                ref_logprobs, _, _ = self._forward(self.reference, batch, with_values=False)
                kl_ref = (old_logprobs - ref_logprobs) * mask
                rewards -= cfg.kl_coef * kl_ref
            last = mask.sum(1).long() - 1
            rewards[torch.arange(len(samples)), last] += scores

            # 2. GAE.
            advantages, returns = compute_gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
            if cfg.normalize_advantages and mask.sum() > 1:
                advantages = masked_whiten(advantages, mask)

        # 3. Clipped PPO updates over mini-batches, accumulated over micro-batches.
        self.policy.train()
        stats: dict[str, list[float]] = {k: [] for k in
                                         ("policy_loss", "value_loss", "entropy", "approx_kl",
                                          "clipfrac")}  # fmt: skip
        n = len(samples)
        mini = min(cfg.mini_batch_size, n)
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        for _epoch in range(cfg.ppo_epochs):
            order = torch.randperm(n, generator=generator).tolist()
            for start in range(0, n, mini):
                mb = order[start : start + mini]
                self.optimizer.zero_grad(set_to_none=True)
                for m_start in range(0, len(mb), cfg.micro_batch_size):
                    idx = mb[m_start : m_start + cfg.micro_batch_size]
                    micro = self._batch([samples[i] for i in idx])
                    m_mask = micro.mask
                    t = m_mask.shape[1]
                    adv = advantages[idx, :t]
                    ret = returns[idx, :t]
                    old_lp = old_logprobs[idx, :t]
                    old_v = old_values[idx, :t]

                    new_lp, entropy, new_v = self._forward(self.policy, micro, with_values=True)
                    assert new_v is not None
                    log_ratio = new_lp - old_lp
                    ratio = log_ratio.exp()

                    # Clipped surrogate objective (PPO-clip), as a loss.
                    pg_loss1 = -adv * ratio
                    pg_loss2 = -adv * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)
                    pg_loss = masked_mean(torch.max(pg_loss1, pg_loss2), m_mask)

                    # Clipped value loss.
                    v_clipped = old_v + torch.clamp(new_v - old_v, -cfg.value_clip, cfg.value_clip)
                    v_loss = 0.5 * masked_mean(
                        torch.max((new_v - ret) ** 2, (v_clipped - ret) ** 2), m_mask
                    )

                    entropy_mean = masked_mean(entropy, m_mask)
                    loss = pg_loss - cfg.ent_coef * entropy_mean + cfg.vf_coef * v_loss
                    (loss * len(idx) / len(mb)).backward()  # gradient accumulation

                    with torch.no_grad():
                        stats["policy_loss"].append(pg_loss.item())
                        stats["value_loss"].append(v_loss.item())
                        stats["entropy"].append(entropy_mean.item())
                        # CleanRL's low-variance estimate of KL(old || new).
                        stats["approx_kl"].append(
                            masked_mean((ratio - 1) - log_ratio, m_mask).item()
                        )
                        clipped = ((ratio - 1).abs() > cfg.clip_coef).float()
                        stats["clipfrac"].append(masked_mean(clipped, m_mask).item())
                params = list(self.policy.parameters()) + list(self.value_head.parameters())
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                self.optimizer.step()
        result = {k: float(np.mean(v)) for k, v in stats.items()}
        result["kl_ref"] = float((kl_ref.sum() / mask.sum()).item())
        result["response_tokens"] = float(mask.sum(1).mean().item())
        return result

    def train_step(self) -> dict[str, Any]:
        """One rollout + reward + update; returns the step's metrics."""
        started = time.monotonic()
        samples = self.rollout(self.batch_indices(self.step))
        rollout_s = time.monotonic() - started
        self.score(samples)
        reward_s = time.monotonic() - started - rollout_s
        stats = self.update(samples)
        metrics = {"step": self.step + 1, **_reward_metrics(samples), **stats}
        # "kl": to the frozen reference when there is one, else how far this update moved.
        metrics["kl"] = stats["kl_ref"] if self.reference is not None else stats["approx_kl"]
        metrics.update(
            executor_calls=self.rewards.executor_calls if self.rewards else 0,
            rollout_seconds=rollout_s,
            reward_seconds=reward_s,
            seconds=time.monotonic() - started,
        )
        self.step += 1
        return metrics

    # -- the loop ---------------------------------------------------------------------------
    def train(self, progress: Progress | None = None) -> list[dict[str, Any]]:
        """Run (or resume) to ``total_steps``; returns the metrics of the steps run now."""
        if not hasattr(self, "policy"):
            self.setup()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = self.out_dir / METRICS_FILE
        _truncate_metrics(metrics_path, self.step)
        total = self.total_steps()
        done: list[dict[str, Any]] = []
        try:
            while self.step < total:
                metrics = self.train_step()
                with metrics_path.open("a") as handle:
                    handle.write(json.dumps(metrics) + "\n")
                done.append(metrics)
                if self.step % self.config.save_every == 0 or self.step == total:
                    self.save()
                if progress:
                    progress(self.step, total, metrics)
        except RewardError as err:
            raise TrainError(
                f"step {self.step + 1}: {err}. Nothing of this step was kept; run the same "
                f"command again to resume from step {self._saved_step()}"
            ) from err
        finally:
            if self.rewards is not None:
                self.rewards.close()
        plot_metrics(metrics_path, self.out_dir / PLOT_FILE)
        return done

    def _saved_step(self) -> int:
        path = self.out_dir / CHECKPOINT_DIR / STATE_FILE
        if not path.exists():
            return 0
        return int(torch.load(path, map_location="cpu", weights_only=False)["step"])

    def save(self) -> Path:
        """Write the checkpoint to a fresh directory, then swap it in: an interrupted save
        leaves the previous checkpoint intact."""
        final = self.out_dir / CHECKPOINT_DIR
        tmp = self.out_dir / f".{CHECKPOINT_DIR}.tmp"
        old = self.out_dir / f".{CHECKPOINT_DIR}.old"
        shutil.rmtree(tmp, ignore_errors=True)
        self.policy.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        state = {
            "step": self.step,
            "value_head": self.value_head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": _rng_state(),
            "config": asdict(self.config),
            "signature": self.signature,
            "model_path": str(self.model_path),
        }
        torch.save(state, tmp / STATE_FILE)
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        plot_metrics(self.out_dir / METRICS_FILE, self.out_dir / PLOT_FILE)
        return final


# --------------------------------------------------------------------------- helpers


def _reward_metrics(samples: Sequence[Sample]) -> dict[str, float]:
    scored = [s.score for s in samples if s.score is not None]
    rewards = [s.reward for s in scored]
    inputs = [s.inputs for s in scored]
    # The paper's speed-up per problem: failures count 1.0; and how many are measurably faster.
    speedups = [
        r.speedup if r.all_passed and r.speedup is not None and not r.identical_to_baseline
        else 1.0
        for r in inputs
    ]  # fmt: skip
    return {
        "reward_mean": float(np.mean(rewards)),
        "reward_std": float(np.std(rewards)),
        "compile_rate": float(np.mean([r.compiled for r in inputs])),
        "pass_rate": float(np.mean([r.all_passed for r in inputs])),
        "faster_rate": float(np.mean([_faster(r) for r in inputs])),
        "speedup_mean": float(np.mean(speedups)),
    }


def _faster(r: Any) -> bool:
    return r.all_passed and (r.ci_low or 0.0) > 1.0 and not r.identical_to_baseline


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines of steps after ``step``: they were logged by a run interrupted
    before their checkpoint was written, and will be run again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by the interruption
        if record.get("step", 0) <= step:
            kept.append(line)
    path.write_text("".join(k + "\n" for k in kept))


PLOTTED = (
    ("reward_mean", "mean reward"),
    ("pass_rate", "pass rate"),
    ("speedup_mean", "speed-up (failures = 1.0)"),
    ("kl", "KL"),
    ("policy_loss", "policy loss"),
    ("value_loss", "value loss"),
    ("entropy", "entropy"),
)


def plot_metrics(metrics_path: Path, png: Path) -> Path | None:
    """A PNG with one panel per metric against the step; None when there is nothing yet."""
    if not metrics_path.exists():
        return None
    records = [json.loads(x) for x in metrics_path.read_text().splitlines() if x.strip()]
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = math.ceil(len(PLOTTED) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    steps = [r["step"] for r in records]
    for ax, (key, title) in zip(axes.flat, PLOTTED, strict=False):
        ax.plot(steps, [r.get(key, float("nan")) for r in records], marker=".")
        ax.set_title(title)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(PLOTTED) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png
