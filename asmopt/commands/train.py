"""`asmopt train`: PPO on a data set, locally or with verl; rewards from the sandbox."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from asmopt.commands.common import (
    _console,
    _fail,
)


@click.command()
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
@click.option("--steps", type=int, default=None, help="Stop after N steps (default: 1 epoch).")
@click.option(
    "--reward",
    type=click.Choice(["asmopt", "design1", "design2"]),
    default="asmopt",
    show_default=True,
    help="asmopt's reward, or the paper's design 1 / design 2.",
)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--lr", "actor_lr", type=float, default=1e-6, show_default=True)
@click.option("--critic-lr", type=float, default=1e-5, show_default=True)
@click.option("--temperature", type=float, default=0.5, show_default=True)
@click.option("--max-new-tokens", type=int, default=2000, show_default=True)
@click.option("--max-prompt-tokens", type=int, default=2000, show_default=True)
@click.option(
    "--kl-coef",
    type=float,
    default=0.0,
    show_default=True,
    help="KL penalty to the starting model (local; the paper uses none).",
)
@click.option(
    "--micro-batch-size",
    type=int,
    default=1,
    show_default=True,
    help="Samples per forward/backward (local): gradient accumulation.",
)
@click.option(
    "--save-every",
    type=int,
    default=1,
    show_default=True,
    help="Steps between checkpoints (verl: trainer.save_freq).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="local: random seed.")
@click.option("--device", default="auto", show_default=True, help="local: auto, cpu, cuda, cuda:N.")
@click.option(
    "--dtype",
    type=click.Choice(["auto", "float32", "bf16-mixed", "bfloat16"]),
    default="auto",
    show_default=True,
    help="local: auto is bf16-mixed on CUDA (float32 master weights, bf16 autocast), float32 "
    "on the CPU; bfloat16 weights lose most updates at lr 1e-6. verl always trains mixed.",
)
@click.option(
    "--gradient-checkpointing/--no-gradient-checkpointing",
    default=None,
    help="Recompute activations in the backward pass (default: off locally, on with verl, "
    "as in the paper). Needed for 7B models at 4k tokens.",
)
@click.option("--workers", type=int, default=None, help="Reward worker processes.")
@click.option(
    "--bench-budget",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds of benchmarking per correct candidate.",
)
@click.option(
    "--metric",
    type=click.Choice(["time", "instructions"]),
    default="time",
    show_default=True,
    help="asmopt reward's speed metric (instructions: callgrind).",
)
@click.option(
    "--extraction",
    type=click.Choice(["asmopt", "paper"]),
    default="asmopt",
    show_default=True,
    help="How the answer is read: the last ```assembly block (asmopt), or the paper's "
    "whole response with the fences stripped (use with --reward design1/design2).",
)
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
def train(ctx: click.Context, data: Path, engine: str, model: str, out_dir: Path,
          steps: int | None, reward: str, batch_size: int, actor_lr: float, critic_lr: float,
          temperature: float, max_new_tokens: int, max_prompt_tokens: int, kl_coef: float,
          micro_batch_size: int, save_every: int, seed: int, device: str, dtype: str,
          gradient_checkpointing: bool | None, workers: int | None, bench_budget: float,
          metric: str, extraction: str, val: Path | None, gpus: int, nnodes: int,
          dry_run: bool, no_sandbox: bool) -> None:  # fmt: skip
    """Train a model with PPO on DATA (the paper's parquet/JSON lines, or a directory of
    targets), rewards from the sandboxed executor. Running it again resumes from --out."""
    from click.core import ParameterSource

    from asmopt.model.training.ppo import PPOConfig, TrainError
    from asmopt.model.training.reward import RewardSettings
    from asmopt.model.training.train import launch_verl, train_local

    def given(*names: str) -> list[str]:
        return [
            "--" + n.replace("_", "-")
            for n in names
            if ctx.get_parameter_source(n) not in (ParameterSource.DEFAULT, None)
        ]

    if not data.exists():
        _fail(f"{data} does not exist: pass a .parquet, .jsonl or a directory of targets")
    # No option is silently ignored: each engine refuses the other's.
    if engine == "verl":
        ignored = given("seed", "device")
        if dtype not in ("auto", "bf16-mixed"):
            ignored.append(f"--dtype {dtype}")
        if ignored:
            _fail(
                f"{', '.join(ignored)} only apply to --engine local: verl seeds and places its "
                "workers itself and always trains float32 master weights with bf16 compute; "
                "drop them"
            )
    else:
        ignored = given("val", "gpus", "nnodes", "dry_run")
        if ignored:
            _fail(f"{', '.join(ignored)} only apply to --engine verl; drop them")
    try:
        settings = RewardSettings(bench_budget=bench_budget, sandbox=not no_sandbox,
                                  metric=metric, extraction=extraction)  # fmt: skip
        if engine == "verl":
            code = launch_verl(
                data, model, out_dir, val=val, dry_run=dry_run, reward=reward,
                reward_settings=settings, batch_size=batch_size, actor_lr=actor_lr,
                critic_lr=critic_lr, temperature=temperature,
                max_response_length=max_new_tokens, max_prompt_length=max_prompt_tokens,
                steps=steps, n_gpus_per_node=gpus, nnodes=nnodes, kl_coef=kl_coef,
                save_freq=save_every, micro_batch_size_per_gpu=micro_batch_size,
                gradient_checkpointing=True if gradient_checkpointing is None
                else gradient_checkpointing,
                **({"reward_workers": workers} if workers else {}),
                log=lambda m: _console(stderr=True).print(m, soft_wrap=True),
            )  # fmt: skip
            sys.exit(code)
        config = PPOConfig(
            batch_size=batch_size, actor_lr=actor_lr, critic_lr=critic_lr,
            temperature=temperature, max_new_tokens=max_new_tokens,
            max_prompt_tokens=max_prompt_tokens, kl_coef=kl_coef,
            mini_batch_size=batch_size, micro_batch_size=min(micro_batch_size, batch_size),
            steps=steps, save_every=save_every, seed=seed, device=device, dtype=dtype,
            gradient_checkpointing=bool(gradient_checkpointing),
        )  # fmt: skip
        _train_with_progress(train_local, data, model, out_dir, config, reward, settings, workers)
    except (TrainError, ValueError) as err:  # ValueError: a bad combination of options
        _fail(str(err))


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
