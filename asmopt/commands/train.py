"""`asmopt train`: PPO on a data set, locally or with verl; rewards from the sandbox.

The PPO options are made from the fields of ``PPOConfig`` (asmopt.model.training.ppo_config),
and the reward options from those of ``RewardSettings``: their names, types and defaults, so a
new hyper-parameter is an option at once and no default is written twice. Neither module
imports torch; the options are still made only when ``asmopt train`` parses its arguments or
prints its help, never when ``asmopt`` starts (:class:`TrainCommand`).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from asmopt.commands.common import (
    _console,
    _fail,
)

# Each PPOConfig field's help; a field missing here still gets an option, with no help.
PPO_HELP: dict[str, str] = {
    "batch_size": "Prompts per step.",
    "max_prompt_tokens": "Longer prompts are left out.",
    "max_new_tokens": "Tokens per response at most.",
    "temperature": "Sampling temperature of the rollouts.",
    "actor_lr": "The policy's learning rate.",
    "critic_lr": "The value head's learning rate (verl: the critic's).",
    "ppo_epochs": "local: passes over each batch.",
    "mini_batch_size": "local: samples per optimizer step (default: --batch-size).",
    "micro_batch_size": "Samples per forward/backward (local): gradient accumulation.",
    "max_grad_norm": "local: gradients are clipped to this norm.",
    "weight_decay": "local: AdamW's weight decay.",
    "gamma": "local: discount factor of the returns.",
    "lam": "local: GAE's lambda.",
    "clip_coef": "local: clip ratio of the policy loss.",
    "value_clip": "local: clip range of the value loss.",
    "vf_coef": "local: weight of the value loss.",
    "ent_coef": "local: weight of the entropy bonus.",
    "kl_coef": "KL penalty to the starting model (local; the paper uses none).",
    "normalize_advantages": "local: scale each batch's advantages to mean 0, deviation 1.",
    "epochs": "Passes over DATA.",
    "steps": "Stop after N steps (default: --epochs passes over DATA).",
    "seed": "local: random seed.",
    "save_every": "Steps between checkpoints (verl: trainer.save_freq).",
    "device": "local: auto, cpu, cuda, cuda:N.",
    "dtype": "local: auto is bf16-mixed on CUDA (float32 master weights, bf16 autocast), float32 "
    "on the CPU; bfloat16 weights lose most updates at lr 1e-6. verl always trains mixed.",
    "gradient_checkpointing": "Recompute activations in the backward pass (default: off "
    "locally, on with verl, as in the paper). Needed for 7B models at 4k tokens.",
}
# The RewardSettings fields that are options, and their help (the others are not options).
REWARD_HELP: dict[str, str] = {
    "bench_budget": "Seconds of benchmarking per correct candidate.",
    "metric": "asmopt reward's speed metric (instructions: callgrind).",
    "extraction": "How the answer is read: the last ```assembly block (asmopt), or the paper's "
    "whole response with the fences stripped (use with --reward design1/design2).",
}
METRICS = ("time", "instructions")  # RewardSettings.metric's values
# Option names other than the field's own (--max-new-tokens for max_new_tokens).
OPTION_NAMES: dict[str, str] = {"actor_lr": "--lr"}
# Fields whose option is unset by default, and what decides the value then.
UNSET_BY_DEFAULT: dict[str, str] = {
    "mini_batch_size": "--batch-size: one optimizer step per batch",
    "gradient_checkpointing": "the engine: PPOConfig's default locally, VerlSettings' with verl",
}
# The fields verl takes, by launch_verl's (VerlSettings') name; the others are local only.
VERL_NAMES: dict[str, str] = {
    "batch_size": "batch_size",
    "max_prompt_tokens": "max_prompt_length",
    "max_new_tokens": "max_response_length",
    "temperature": "temperature",
    "actor_lr": "actor_lr",
    "critic_lr": "critic_lr",
    "micro_batch_size": "micro_batch_size_per_gpu",
    "kl_coef": "kl_coef",
    "epochs": "epochs",
    "steps": "steps",
    "save_every": "save_freq",
    "gradient_checkpointing": "gradient_checkpointing",
}
# The dtypes verl trains in anyway (it always keeps float32 master weights, bf16 compute).
VERL_DTYPES = ("auto", "bf16-mixed")


@functools.cache
def ppo_options() -> tuple[click.Option, ...]:
    """One option per field of PPOConfig, in its order, with its type and default."""
    from asmopt.model.training.ppo_config import DTYPES, PPOConfig

    names = [f.name for f in dataclasses.fields(PPOConfig)]
    return _field_options(PPOConfig, names, PPO_HELP, {"dtype": DTYPES})


@functools.cache
def reward_options() -> tuple[click.Option, ...]:
    """The options of the RewardSettings fields in :data:`REWARD_HELP`, with their defaults."""
    from asmopt.model.training.reward import EXTRACTIONS, RewardSettings

    choices = {"metric": METRICS, "extraction": EXTRACTIONS}
    return _field_options(RewardSettings, list(REWARD_HELP), REWARD_HELP, choices)


def _field_options(
    cls: type, names: list[str], helps: dict[str, str], choices: Mapping[str, tuple[str, ...]]
) -> tuple[click.Option, ...]:
    """An option for each named field of the dataclass ``cls``: --field-name, the field's
    type and default (``--x/--no-x`` for a bool)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    options = []
    for name in names:
        flag = OPTION_NAMES.get(name, "--" + name.replace("_", "-"))
        kind = _option_type(f"{cls.__name__}.{name}", hints[name])
        default = None if name in UNSET_BY_DEFAULT else fields[name].default
        if kind is bool:
            flag = f"{flag}/--no-{flag.removeprefix('--')}"
        options.append(
            click.Option(
                [flag, name],
                type=click.Choice(choices[name]) if name in choices else kind,
                default=default,
                show_default=default is not None,
                help=helps.get(name),
            )
        )
    return tuple(options)


def _option_type(field: str, hint: Any) -> type:
    """int, float, str or bool: the type of a field (``int | None``: int)."""
    if isinstance(hint, types.UnionType):
        hints = [h for h in typing.get_args(hint) if h is not type(None)]
        hint = hints[0] if len(hints) == 1 else hint
    if hint in (int, float, str, bool):
        return hint
    raise TypeError(
        f"{field}: type {hint} has no command-line form; give it one in asmopt/commands/train.py"
    )


class TrainCommand(click.Command):
    """``asmopt train``, with :func:`ppo_options` after --out and :func:`reward_options`
    after --workers, made on first use."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = list(super().get_params(ctx))
        # Neither PPOConfig's module nor the reward's imports torch: --help stays fast.
        generated = {"out_dir": ppo_options(), "workers": reward_options()}
        for after, options in generated.items():
            at = next((i + 1 for i, p in enumerate(params) if p.name == after), len(params) - 1)
            params[at:at] = options
        return params


@click.command(cls=TrainCommand)
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--engine",
    type=click.Choice(["local", "verl"]),
    default="local",
    show_default=True,
    help="local: the compact PPO trainer (CPU or one GPU); verl: verl on Ray + vLLM.",
)
@click.option("--model", required=True, help="Checkpoint directory or .gguf to start from.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory: checkpoint, metrics.jsonl, metrics.png (resumed if present).",
)
@click.option(
    "--reward",
    type=click.Choice(["asmopt", "design1", "design2"]),
    default="asmopt",
    show_default=True,
    help="asmopt's reward, or the paper's design 1 / design 2.",
)
@click.option("--workers", type=int, default=None, help="Reward worker processes.")
@click.option(
    "--val",
    type=click.Path(path_type=Path),
    default=None,
    help="verl: validation data (default: hold out 2.5% of DATA).",
)
@click.option("--gpus", type=int, default=4, show_default=True, help="verl: GPUs per node.")
@click.option("--nnodes", type=int, default=1, show_default=True, help="verl: nodes.")
@click.option("--dry-run", is_flag=True, help="verl: write the data and print the command only.")
@click.option("--no-sandbox", is_flag=True, help="Run generated code WITHOUT bubblewrap.")
@click.pass_context
def train(ctx: click.Context, data: Path, engine: str, model: str, out_dir: Path, reward: str,
          workers: int | None, val: Path | None, gpus: int, nnodes: int, dry_run: bool,
          no_sandbox: bool, **generated: Any) -> None:  # fmt: skip
    """Train a model with PPO on DATA (the paper's parquet/JSON lines, or a directory of
    targets), rewards from the sandboxed executor. Running it again resumes from --out."""
    from asmopt.model.training.ppo_config import PPOConfig, TrainError
    from asmopt.model.training.reward import RewardSettings
    from asmopt.model.training.train import launch_verl, train_local

    if not data.exists():
        _fail(f"{data} does not exist: pass a .parquet, .jsonl or a directory of targets")
    _refuse_the_other_engines_options(ctx, engine, generated["dtype"])
    rewards = {name: generated.pop(name) for name in REWARD_HELP}
    # Unset: the engine's own default decides (PPOConfig's or VerlSettings').
    ppo = {name: value for name, value in generated.items() if value is not None}
    try:
        settings = RewardSettings(**rewards, sandbox=not no_sandbox)
        if engine == "verl":
            pool: dict[str, Any] = {"reward_workers": workers} if workers else {}
            code = launch_verl(
                data, model, out_dir, val=val, dry_run=dry_run, reward=reward,
                reward_settings=settings, n_gpus_per_node=gpus, nnodes=nnodes,
                **{VERL_NAMES[name]: value for name, value in ppo.items() if name in VERL_NAMES},
                **pool,
                log=lambda m: _console(stderr=True).print(m, soft_wrap=True),
            )  # fmt: skip
            sys.exit(code)
        ppo.setdefault("mini_batch_size", ppo["batch_size"])
        ppo["micro_batch_size"] = min(ppo["micro_batch_size"], ppo["mini_batch_size"])
        config = PPOConfig(**ppo)
        _train_with_progress(train_local, data, model, out_dir, config, reward, settings, workers)
    except (TrainError, ValueError) as err:  # ValueError: a bad combination of options
        _fail(str(err))


def _refuse_the_other_engines_options(ctx: click.Context, engine: str, dtype: str) -> None:
    """No option is silently ignored: each engine refuses the other's."""
    from click.core import ParameterSource

    flags = {p.name: p.opts[0] for p in ctx.command.get_params(ctx)}

    def given(*names: str) -> list[str]:
        return [
            flags[n]
            for n in names
            if ctx.get_parameter_source(n) not in (ParameterSource.DEFAULT, None)
        ]

    if engine == "verl":
        local_only = [o.name for o in ppo_options() if o.name and o.name not in VERL_NAMES]
        ignored = given(*(n for n in local_only if n != "dtype"))
        if dtype not in VERL_DTYPES:
            ignored.append(f"--dtype {dtype}")
        if ignored:
            _fail(
                f"{', '.join(ignored)} only apply to --engine local: verl seeds and places its "
                "workers itself, always trains float32 master weights with bf16 compute and "
                "keeps its own settings for the rest of PPO; drop them"
            )
    else:
        ignored = given("val", "gpus", "nnodes", "dry_run")
        if ignored:
            _fail(f"{', '.join(ignored)} only apply to --engine verl; drop them")


def _train_with_progress(train_local, data, model, out_dir, config, reward, settings, workers):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = _console(stderr=True)
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:  # fmt: skip
        task = bar.add_task("loading the model", total=None)

        def progress(step: int, total: int, m: dict) -> None:
            bar.update(task, completed=step, total=total,
                       description=f"reward {m['reward_mean']:+.2f}  pass {m['pass_rate']:.0%}"
                       f"  speed-up {m['speedup_mean']:.2f}x")  # fmt: skip
            bar.console.print(
                f"step {step}/{total}: reward {m['reward_mean']:+.3f}, pass "
                f"{m['pass_rate']:.0%}, speed-up {m['speedup_mean']:.3f}, kl {m['kl']:.4f}, "
                f"policy loss {m['policy_loss']:+.4f}, value loss {m['value_loss']:.4f}, "
                f"entropy {m['entropy']:.3f}"
            )

        train_local(data, model, out_dir, config, reward=reward, reward_settings=settings,
                    workers=workers, progress=progress,
                    log=lambda m: bar.console.print(m))  # fmt: skip
    console.print(f"checkpoint: {out_dir / 'checkpoint'}; metrics: {out_dir / 'metrics.jsonl'}, "
                  f"{out_dir / 'metrics.png'}")  # fmt: skip
