"""Launchers behind ``asmopt train``: the compact local trainer, and verl at scale.

- ``--engine local`` (:func:`train_local`): :class:`~asmopt.model.ppo.PPOTrainer` on the CPU
  or one GPU, rewards from the sandboxed executor; metrics in ``OUT/metrics.jsonl`` and
  ``OUT/metrics.png``; the checkpoint in ``OUT/checkpoint`` (Hugging Face format), resumed
  when the same command runs again.
- ``--engine verl`` (:func:`launch_verl`): writes the data set as the paper's parquet
  (``OUT/data/train.parquet``, ``val.parquet``) and runs ``python -m verl.trainer.main_ppo``
  with the paper's hyper-parameters and our reward (:mod:`asmopt.model.verl_config`).
"""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from asmopt.model.ppo import PPOConfig, TrainError
from asmopt.model.reward import RewardSettings
from asmopt.model.verl_config import VerlSettings, verl_overrides

__all__ = [
    "VERL_EXTRA_HINT",
    "TrainError",
    "launch_verl",
    "load_problems",
    "train_local",
    "verl_command",
    "write_verl_dataset",
]

VERL_EXTRA_HINT = "pip install 'asmopt[verl]'"


def load_problems(data: Path, max_tests: int | None = 10) -> list[Any]:
    """Problems from a parquet / JSON lines file of the paper's rows or a directory of
    targets; raises :class:`TrainError` for a missing file, a bad row or a row without tests."""
    from asmopt.model.dataset import DatasetError, read_dataset

    try:
        dataset = read_dataset(Path(data), max_tests=max_tests)
    except DatasetError as err:
        raise TrainError(str(err)) from err
    problems = list(dataset.problems)
    if not problems:
        raise TrainError(f"{data} holds no problems to train on")
    for p in problems:
        if not p.tests:
            raise TrainError(f"{p.name} in {data} has no tests: a candidate can't be verified")
    return problems


def train_local(
    data: Path,
    model: str | Path,
    out_dir: Path,
    config: PPOConfig | None = None,
    *,
    reward: str = "asmopt",
    reward_settings: RewardSettings | None = None,
    workers: int | None = None,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run (or resume) PPO with the compact trainer; returns this run's per-step metrics."""
    from asmopt.model.ppo import PPOTrainer
    from asmopt.model.reward import RewardPool

    problems = load_problems(data, (reward_settings or RewardSettings()).max_tests)
    pool = RewardPool(reward, reward_settings, workers)
    trainer = PPOTrainer(model, problems, Path(out_dir), config or PPOConfig(), pool, log=log)
    trainer.setup()
    return trainer.train(progress)


# --------------------------------------------------------------------------- verl


def _row(problem: Any, split: str, index: int) -> dict[str, Any]:
    from asmopt.model.dataset import DatasetError, make_row

    try:
        inputs = [t.stdin.decode("utf-8") for t in problem.tests]
        outputs = [(t.expected or b"").decode("utf-8") for t in problem.tests]
    except UnicodeDecodeError as err:
        raise TrainError(f"{problem.name}: tests must be UTF-8 text for the parquet") from err
    try:
        return make_row(
            c_source=problem.c_source or "",
            o3_asm=problem.baseline_asm,
            inputs=inputs,
            outputs=outputs,
            split=split,
            index=index,
            baseline_binary=problem.baseline_binary,
        )
    except DatasetError as err:
        raise TrainError(str(err)) from err


def write_verl_dataset(
    problems: Sequence[Any],
    out_dir: Path,
    val_problems: Sequence[Any] | None = None,
    val_fraction: float = 0.025,
    seed: int = 0,
) -> tuple[Path, Path]:
    """``out_dir/train.parquet`` and ``val.parquet`` in the paper's format. Without
    ``val_problems`` a seeded ``val_fraction`` (at least one row) is held out."""
    from asmopt.model.dataset import write_parquet

    problems = list(problems)
    if val_problems is None:
        order = list(range(len(problems)))
        random.Random(seed).shuffle(order)
        n_val = max(1, round(len(problems) * val_fraction)) if len(problems) > 1 else 0
        val_ids = set(order[:n_val])
        val_problems = [problems[i] for i in sorted(val_ids)] or problems[:1]
        problems = [p for i, p in enumerate(problems) if i not in val_ids]
    out_dir = Path(out_dir)
    train = write_parquet([_row(p, "train", i) for i, p in enumerate(problems)],
                          out_dir / "train.parquet")  # fmt: skip
    val = write_parquet([_row(p, "val", i) for i, p in enumerate(val_problems)],
                        out_dir / "val.parquet")  # fmt: skip
    return train, val


def verl_command(settings: VerlSettings) -> list[str]:
    """The full command line ``asmopt train --engine verl`` runs."""
    return [sys.executable, "-m", "verl.trainer.main_ppo", *verl_overrides(settings)]


def verl_available() -> bool:
    return importlib.util.find_spec("verl") is not None


def launch_verl(
    data: Path,
    model: str,
    out_dir: Path,
    *,
    val: Path | None = None,
    dry_run: bool = False,
    extra_overrides: Sequence[str] = (),
    log: Callable[[str], None] = print,
    **settings: Any,
) -> int:
    """Write the parquet files and run verl (or, with ``dry_run``, only print the command).
    Returns verl's exit status. Raises :class:`TrainError` when verl is not installed."""
    if not dry_run and not verl_available():
        raise TrainError(
            f"verl is not installed: {VERL_EXTRA_HINT} (verl, vLLM and Ray need CUDA GPUs); "
            "or train on one machine with --engine local"
        )
    if not Path(model).exists() and "/" not in str(model):
        raise TrainError(f"model {model} not found: pass a checkpoint directory or a hub id")
    out_dir = Path(out_dir)
    problems = load_problems(data)
    val_problems = load_problems(val) if val is not None else None
    train_file, val_file = write_verl_dataset(problems, out_dir / "data", val_problems)
    log(f"wrote {train_file} and {val_file}")
    command = [*verl_command(VerlSettings(model=str(model), train_files=train_file,
                                          val_files=val_file, out_dir=out_dir, **settings)),
               *extra_overrides]  # fmt: skip
    log(" ".join(command))
    if dry_run:
        return 0
    return subprocess.call(command, cwd=out_dir)
