"""The command line that runs the paper's PPO training with verl, as Hydra overrides.

:func:`verl_overrides` turns :class:`VerlSettings` (defaults: the paper's run script,
``verl/examples/ppo_trainer/run_qwen2.57_superopt.sh`` in ``Anjiang-Wei/SuperCoder``) into
``key=value`` overrides for ``python -m verl.trainer.main_ppo``. Every key exists in verl's
PPO trainer schema (``verl/trainer/config/_generated_ppo_trainer.yaml`` of verl 0.9.1); the
reward function is named under ``reward.custom_reward_function`` (verl >= 0.7 moved it there
from the top-level ``custom_reward_function``, whose ``name`` no longer defaults to
``compute_score``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asmopt.model.training import reward as reward_module

__all__ = ["VerlSettings", "reward_function_path", "verl_overrides"]


def reward_function_path() -> Path:
    """The file verl loads the reward from: this installation's ``asmopt/model/training/reward.py``.

    verl imports it by path as a stand-alone module, so it imports asmopt absolutely."""
    return Path(reward_module.__file__).resolve()


@dataclass(frozen=True)
class VerlSettings:
    """A verl PPO run; the defaults are the paper's."""

    model: str
    train_files: Path
    val_files: Path
    out_dir: Path
    critic_model: str | None = None  # default: the actor's model, as in the paper
    reward: str = "asmopt"  # asmopt | design1 | design2
    batch_size: int = 16
    max_prompt_length: int = 2000
    max_response_length: int = 2000
    actor_lr: float = 1e-6
    critic_lr: float = 1e-5
    temperature: float = 0.5
    epochs: int = 1
    steps: int | None = None
    n_gpus_per_node: int = 4
    nnodes: int = 1
    gpu_memory_utilization: float = 0.6
    tensor_parallel_size: int = 1
    micro_batch_size_per_gpu: int = 1
    critic_micro_batch_size_per_gpu: int = 2
    save_freq: int = 100
    test_freq: int = 100
    project_name: str = "asmopt"
    experiment_name: str = "ppo"
    logger: tuple[str, ...] = ("console",)
    reward_workers: int = 8
    kl_coef: float = 0.0  # paper: none; > 0 turns on verl's KL penalty in the reward
    gradient_checkpointing: bool = True  # as in the paper's script

    def __post_init__(self) -> None:
        if self.reward not in reward_module.VERL_FUNCTIONS:
            raise ValueError(
                f"unknown reward {self.reward!r}: choose from "
                f"{', '.join(reward_module.VERL_FUNCTIONS)}"
            )


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, tuple | list):
        return "[" + ",".join(f"'{x}'" for x in v) + "]"
    return str(v)


def verl_overrides(s: VerlSettings) -> list[str]:
    """Hydra overrides for ``verl.trainer.main_ppo`` (see the module docstring)."""
    critic = s.critic_model or s.model
    pairs: list[tuple[str, object]] = [
        # PPO with GAE; no KL anywhere (paper: use_kl_loss=False, use_kl_in_reward=False).
        ("algorithm.adv_estimator", "gae"),
        ("algorithm.use_kl_in_reward", s.kl_coef > 0),
        ("algorithm.kl_ctrl.kl_coef", s.kl_coef),
        ("actor_rollout_ref.actor.use_kl_loss", False),
        ("actor_rollout_ref.actor.kl_loss_coef", 0.0),
        # data: the paper's parquet rows
        ("data.train_files", str(s.train_files)),
        ("data.val_files", str(s.val_files)),
        ("data.train_batch_size", s.batch_size),
        ("data.max_prompt_length", s.max_prompt_length),
        ("data.max_response_length", s.max_response_length),
        ("data.filter_overlong_prompts", True),
        ("data.truncation", "error"),
        # actor and rollout
        ("actor_rollout_ref.model.path", s.model),
        ("actor_rollout_ref.model.use_remove_padding", True),
        ("actor_rollout_ref.model.enable_gradient_checkpointing", s.gradient_checkpointing),
        ("actor_rollout_ref.actor.optim.lr", s.actor_lr),
        ("actor_rollout_ref.actor.ppo_mini_batch_size", s.batch_size),
        ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", s.micro_batch_size_per_gpu),
        ("actor_rollout_ref.actor.fsdp_config.param_offload", False),
        ("actor_rollout_ref.actor.fsdp_config.optimizer_offload", False),
        ("actor_rollout_ref.rollout.name", "vllm"),
        ("actor_rollout_ref.rollout.temperature", s.temperature),
        ("actor_rollout_ref.rollout.gpu_memory_utilization", s.gpu_memory_utilization),
        ("actor_rollout_ref.rollout.tensor_model_parallel_size", s.tensor_parallel_size),
        ("actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu", s.micro_batch_size_per_gpu),
        # critic: a second copy of the model, as in the paper
        ("critic.optim.lr", s.critic_lr),
        ("critic.model.path", critic),
        ("critic.model.use_remove_padding", True),
        ("critic.model.enable_gradient_checkpointing", s.gradient_checkpointing),
        ("critic.ppo_micro_batch_size_per_gpu", s.critic_micro_batch_size_per_gpu),
        # reward: asmopt's sandboxed executor
        ("reward.custom_reward_function.path", str(reward_function_path())),
        ("reward.custom_reward_function.name", reward_module.VERL_FUNCTIONS[s.reward]),
        ("reward.num_workers", s.reward_workers),
        # the run
        ("trainer.critic_warmup", 0),
        ("trainer.logger", s.logger),
        ("trainer.project_name", s.project_name),
        ("trainer.experiment_name", s.experiment_name),
        ("trainer.default_local_dir", str(Path(s.out_dir) / "checkpoints")),
        ("trainer.n_gpus_per_node", s.n_gpus_per_node),
        ("trainer.nnodes", s.nnodes),
        ("trainer.save_freq", s.save_freq),
        ("trainer.test_freq", s.test_freq),
        ("trainer.total_epochs", s.epochs),
        ("trainer.resume_mode", "auto"),
    ]
    if s.steps is not None:
        pairs.append(("trainer.total_training_steps", s.steps))
    return [f"{k}={_value(v)}" for k, v in pairs]
