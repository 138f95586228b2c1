"""PPO's arithmetic in plain sight, as in CleanRL: generalized advantage estimation and the
clipped policy and value losses, on right-padded [batch, time] tensors of response tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asmopt.model.training.ppo_config import PPOConfig

__all__ = [
    "LOSS_STATS",
    "PPOLosses",
    "SampledBatch",
    "compute_gae",
    "masked_mean",
    "masked_whiten",
    "ppo_losses",
]

#: The statistics of each micro-batch's losses, in the order a step reports them.
LOSS_STATS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac")


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


@dataclass(frozen=True)
class SampledBatch:
    """What the policy that sampled a batch thought, per response token ([B, T], no
    gradient): its log-probs and values, the advantages and returns GAE made of them, the
    KL to the reference model (zeros without one), and the response-token mask."""

    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    kl_ref: torch.Tensor
    mask: torch.Tensor

    def at(self, rows: list[int], steps: int) -> SampledBatch:
        """The ``rows`` of the batch, cut to the first ``steps`` tokens (a micro-batch)."""
        return SampledBatch(
            self.logprobs[rows, :steps],
            self.values[rows, :steps],
            self.advantages[rows, :steps],
            self.returns[rows, :steps],
            self.kl_ref[rows, :steps],
            self.mask[rows, :steps],
        )


@dataclass(frozen=True)
class PPOLosses:
    """One micro-batch's loss (to back-propagate) and the terms it is made of."""

    loss: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    log_ratio: torch.Tensor
    ratio: torch.Tensor
    mask: torch.Tensor
    clip_coef: float

    def stats(self) -> dict[str, float]:
        """The numbers a step reports, keyed as :data:`LOSS_STATS`."""
        with torch.no_grad():
            clipped = ((self.ratio - 1).abs() > self.clip_coef).float()
            return {
                "policy_loss": self.policy_loss.item(),
                "value_loss": self.value_loss.item(),
                "entropy": self.entropy.item(),
                # CleanRL's low-variance estimate of KL(old || new).
                "approx_kl": masked_mean((self.ratio - 1) - self.log_ratio, self.mask).item(),
                "clipfrac": masked_mean(clipped, self.mask).item(),
            }


def ppo_losses(
    new_logprobs: torch.Tensor,
    new_values: torch.Tensor,
    entropy: torch.Tensor,
    old: SampledBatch,
    mask: torch.Tensor,
    cfg: PPOConfig,
) -> PPOLosses:
    """The clipped surrogate policy loss, the clipped value loss and the entropy bonus of
    the current policy on ``old``'s tokens, combined with ``cfg``'s coefficients."""
    log_ratio = new_logprobs - old.logprobs
    ratio = log_ratio.exp()

    # Clipped surrogate objective (PPO-clip), as a loss.
    pg_loss1 = -old.advantages * ratio
    pg_loss2 = -old.advantages * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)
    pg_loss = masked_mean(torch.max(pg_loss1, pg_loss2), mask)

    # Clipped value loss.
    v_clipped = old.values + torch.clamp(new_values - old.values, -cfg.value_clip, cfg.value_clip)
    v_loss = 0.5 * masked_mean(
        torch.max((new_values - old.returns) ** 2, (v_clipped - old.returns) ** 2), mask
    )

    entropy_mean = masked_mean(entropy, mask)
    loss = pg_loss - cfg.ent_coef * entropy_mean + cfg.vf_coef * v_loss
    return PPOLosses(loss, pg_loss, v_loss, entropy_mean, log_ratio, ratio, mask, cfg.clip_coef)
