"""Every hyper-parameter of a PPO run, in one dataclass (CleanRL's habit), and the error a run
raises. Free of torch, so the CLI can read the defaults without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["DTYPES", "PPOConfig", "TrainError"]


class TrainError(RuntimeError):
    """Training cannot start or go on; the message says what to do."""


DTYPES = ("auto", "float32", "bf16-mixed", "bfloat16")


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
    dtype: str = "auto"  # auto | float32 | bf16-mixed | bfloat16 (see training/ppo.py)
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
