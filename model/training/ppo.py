"""A compact PPO trainer for Hugging Face causal LMs, on the CPU or one GPU.

Modelled on CleanRL's ``ppo.py``: every hyper-parameter in :class:`PPOConfig`
(:mod:`.ppo_config`), GAE and the clipped losses in plain sight (:mod:`.ppo_math`), the model
and its value head in :mod:`.policy_model`, the metrics log in :mod:`.run_log`. This module
is the trainer, one class whose steps read in order (hence ~590 lines). One training step:

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
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from asmopt.model.search.backends.transformers_backend import stop_token_ids
from asmopt.model.training.policy_model import (
    ValueHead,
    load_policy,
    model_signature,
    pick_device,
    resolve_precision,
)
from asmopt.model.training.ppo_config import DTYPES, PPOConfig, TrainError
from asmopt.model.training.ppo_math import (
    LOSS_STATS,
    SampledBatch,
    compute_gae,
    masked_whiten,
    ppo_losses,
)
from asmopt.model.training.reward import Problem as RewardProblem
from asmopt.model.training.reward import RewardError, Scored
from asmopt.model.training.reward_pool import RewardPool
from asmopt.model.training.run_log import plot_metrics, reward_metrics, truncate_metrics

__all__ = [
    "DTYPES",
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
        self.device = pick_device(self.config.device)
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
            # One fused kernel on CUDA: faster, and no temporary copy of the optimizer state
            # (the multi-tensor path allocates one; at 7B that is 26 GB more at the peak).
            fused=torch.device(self.device).type == "cuda",
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
        sampled = self._sampled_view(samples)
        mask = sampled.mask
        # Clipped PPO updates over mini-batches, accumulated over micro-batches.
        self.policy.train()
        stats: dict[str, list[float]] = {k: [] for k in LOSS_STATS}
        n = len(samples)
        mini = min(cfg.mini_batch_size, n)
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        for _epoch in range(cfg.ppo_epochs):
            order = torch.randperm(n, generator=generator).tolist()
            for start in range(0, n, mini):
                self._optimizer_step(samples, order[start : start + mini], sampled, stats)
        result = {k: float(np.mean(v)) for k, v in stats.items()}
        result["kl_ref"] = float((sampled.kl_ref.sum() / mask.sum()).item())
        result["response_tokens"] = float(mask.sum(1).mean().item())
        return result

    def _sampled_view(self, samples: list[Sample]) -> SampledBatch:
        """What the policy that sampled thought (old log-probs and values, no gradient), the
        per-token rewards (score on the last token, minus the KL penalty) and GAE on them."""
        cfg = self.config
        batch = self._batch(samples)
        mask = batch.mask
        scores = torch.tensor([s.score.reward for s in samples], device=self.device)  # type: ignore[union-attr]
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
            advantages, returns = compute_gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
            if cfg.normalize_advantages and mask.sum() > 1:
                advantages = masked_whiten(advantages, mask)
        return SampledBatch(old_logprobs, old_values, advantages, returns, kl_ref, mask)

    def _optimizer_step(
        self,
        samples: list[Sample],
        mini_batch: list[int],
        sampled: SampledBatch,
        stats: dict[str, list[float]],
    ) -> None:
        """One optimizer step on ``mini_batch``, its gradient accumulated over micro-batches;
        each micro-batch's losses are appended to ``stats``."""
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        for m_start in range(0, len(mini_batch), cfg.micro_batch_size):
            idx = mini_batch[m_start : m_start + cfg.micro_batch_size]
            micro = self._batch([samples[i] for i in idx])
            t = micro.mask.shape[1]
            new_lp, entropy, new_v = self._forward(self.policy, micro, with_values=True)
            assert new_v is not None
            losses = ppo_losses(new_lp, new_v, entropy, sampled.at(idx, t), micro.mask, cfg)
            (losses.loss * len(idx) / len(mini_batch)).backward()  # gradient accumulation
            for key, value in losses.stats().items():
                stats[key].append(value)
        params = list(self.policy.parameters()) + list(self.value_head.parameters())
        nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        self.optimizer.step()

    def train_step(self) -> dict[str, Any]:
        """One rollout + reward + update; returns the step's metrics."""
        started = time.monotonic()
        samples = self.rollout(self.batch_indices(self.step))
        rollout_s = time.monotonic() - started
        self.score(samples)
        reward_s = time.monotonic() - started - rollout_s
        stats = self.update(samples)
        metrics = {"step": self.step + 1, **reward_metrics(samples), **stats}
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
        truncate_metrics(metrics_path, self.step)
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
