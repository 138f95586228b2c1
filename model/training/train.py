"""Launchers behind ``asmopt train``: the compact local trainer, and verl at scale.

- ``--engine local`` (:func:`train_local`): :class:`~asmopt.model.training.ppo.PPOTrainer` on
  the CPU or one GPU, rewards from the sandboxed executor; metrics in ``OUT/metrics.jsonl`` and
  ``OUT/metrics.png``; the checkpoint in ``OUT/checkpoint`` (Hugging Face format), resumed
  when the same command runs again.
- ``--engine verl`` (:func:`launch_verl`): writes the data set as the paper's parquet
  (``OUT/data/train.parquet``, ``val.parquet``) and runs ``python -m verl.trainer.main_ppo``
  with the paper's hyper-parameters and our reward (:mod:`asmopt.model.training.verl_config`).
  A directory of targets is turned into rows by ``asmopt dataset build``'s own code
  (:func:`asmopt.model.evaluation.dataset_build.build_dataset`: tests without ``.out`` expect the
  ``gcc -O3`` build's output). Paths are made absolute (verl runs in ``OUT``); a ``.gguf`` model is
  refused (verl loads Hugging Face checkpoints); the reward's settings travel in
  ``$ASMOPT_REWARD_SETTINGS`` and its failures are logged to ``OUT/reward_errors.jsonl``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from asmopt.model.training.ppo_config import PPOConfig, TrainError
from asmopt.model.training.reward import RewardSettings
from asmopt.model.training.verl_config import VerlSettings, verl_overrides

__all__ = [
    "VERL_EXTRA_HINT",
    "TrainError",
    "check_verl_model",
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
    from asmopt.model.evaluation.dataset import DatasetError, read_dataset

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
    from asmopt.model.training.ppo import PPOTrainer
    from asmopt.model.training.reward_pool import RewardPool

    problems = load_problems(data, (reward_settings or RewardSettings()).max_tests)
    pool = RewardPool(reward, reward_settings, workers)
    trainer = PPOTrainer(model, problems, Path(out_dir), config or PPOConfig(), pool, log=log)
    trainer.setup()
    return trainer.train(progress)


# --------------------------------------------------------------------------- verl


def _row(problem: Any, split: str, index: int) -> dict[str, Any]:
    from asmopt.model.evaluation.dataset import DatasetError, make_row

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
    from asmopt.model.evaluation.dataset import write_parquet

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


def check_verl_model(model: str | Path) -> str:
    """The model as verl must get it: an existing local path made absolute (verl runs with
    ``cwd=OUT``), or a Hugging Face model id as given. Raises :class:`TrainError` for a
    ``.gguf`` (verl loads Hugging Face checkpoints only) or a local path that is missing."""
    text = str(model)
    path = Path(text).expanduser()
    gguf = path.suffix.lower() == ".gguf" or (
        path.is_dir()
        and not (path / "config.json").exists()
        and any(p.suffix.lower() == ".gguf" for p in path.iterdir())
    )
    if gguf:
        raise TrainError(
            f"{text} is a GGUF model: verl (vLLM rollouts, FSDP training) loads Hugging Face "
            "checkpoints only. Pass the checkpoint directory or hub id the GGUF was made from "
            "(e.g. Qwen/Qwen2.5-Coder-7B-Instruct), or train it with --engine local"
        )
    if path.exists():
        if path.is_dir() and not (path / "config.json").exists():
            raise TrainError(f"{text} is not a Hugging Face checkpoint (no config.json in it)")
        return str(path.resolve())
    looks_local = text.startswith(("/", "./", "../", "~")) or text.count("/") != 1
    if looks_local:
        raise TrainError(
            f"model {text} not found: pass a checkpoint directory or a hub id (owner/name)"
        )
    return text


def _rows_from_directory(src: Path, out_dir: Path, val_fraction: float, sandbox: bool) -> None:
    """train/val parquet for a directory of targets, by ``asmopt dataset build``'s code."""
    from asmopt.model.evaluation.dataset import DatasetError
    from asmopt.model.evaluation.dataset_build import BuildOptions, build_dataset

    try:
        summary = build_dataset(
            src, out_dir, BuildOptions(val_fraction=val_fraction, sandbox=sandbox)
        )
    except DatasetError as err:
        raise TrainError(str(err)) from err
    if summary.train == 0:
        reasons = "; ".join(f"{d.name}: {d.detail}" for d in summary.dropped[:3])
        raise TrainError(f"no usable program in {src}" + (f" ({reasons})" if reasons else ""))


def write_verl_data(
    data: Path,
    out_dir: Path,
    val: Path | None = None,
    *,
    sandbox: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[Path, Path]:
    """``out_dir/train.parquet`` and ``val.parquet`` from DATA (and VAL): rows of a parquet
    or JSON lines file as they are, a directory of targets as ``asmopt dataset build`` makes
    them."""
    out_dir = Path(out_dir)
    train_file, val_file = out_dir / "train.parquet", out_dir / "val.parquet"
    if Path(data).is_dir():
        _rows_from_directory(Path(data), out_dir, 0.0 if val is not None else 0.025, sandbox)
        if val is None and _count_rows(val_file) == 0:
            raise TrainError(f"{data} holds a single usable program: verl needs validation rows")
    else:
        problems = load_problems(data)
        val_problems = load_problems(val) if val is not None and not val.is_dir() else None
        write_verl_dataset(problems, out_dir, val_problems)
    if val is not None and val.is_dir():
        with tempfile.TemporaryDirectory(prefix="asmopt-val-") as tmp:
            _rows_from_directory(val, Path(tmp), 0.0, sandbox)
            os.replace(Path(tmp) / "train.parquet", val_file)
    return train_file, val_file


def _count_rows(path: Path) -> int:
    from asmopt.model.evaluation.dataset import read_dataset

    return len(read_dataset(path, max_tests=None)) if path.exists() else 0


def launch_verl(
    data: Path,
    model: str,
    out_dir: Path,
    *,
    val: Path | None = None,
    dry_run: bool = False,
    extra_overrides: Sequence[str] = (),
    reward_settings: RewardSettings | None = None,
    log: Callable[[str], None] = print,
    **settings: Any,
) -> int:
    """Write the parquet files and run verl (or, with ``dry_run``, only print the command).
    Returns verl's exit status. Raises :class:`TrainError` when verl is not installed, the
    model is a ``.gguf`` or missing, or the training split is smaller than one batch."""
    if not dry_run and not verl_available():
        raise TrainError(
            f"verl is not installed: {VERL_EXTRA_HINT} (verl, vLLM and Ray need CUDA GPUs); "
            "or train on one machine with --engine local"
        )
    model = check_verl_model(model)
    out_dir = Path(out_dir).expanduser().resolve()
    data = Path(data).expanduser().resolve()
    val = Path(val).expanduser().resolve() if val is not None else None
    rewards = reward_settings or RewardSettings()
    train_file, val_file = write_verl_data(
        data, out_dir / "data", val, sandbox=rewards.sandbox, log=log
    )
    log(f"wrote {train_file} and {val_file}")
    rows = _count_rows(train_file)
    batch = int(settings.get("batch_size", VerlSettings.batch_size))
    if rows < batch:
        raise TrainError(
            f"the training split has {rows} rows, fewer than one batch of {batch}: verl drops "
            f"incomplete batches and would train on nothing; pass --batch-size {rows} or less, "
            "or add rows"
        )
    command = [*verl_command(VerlSettings(model=model, train_files=train_file,
                                          val_files=val_file, out_dir=out_dir, **settings)),
               *extra_overrides]  # fmt: skip
    env = verl_environment(rewards, out_dir)
    log(" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()))  # pasteable into a shell
    log(" ".join(command))
    if dry_run:
        return 0
    return subprocess.call(command, cwd=out_dir, env={**os.environ, **env})


def verl_environment(rewards: RewardSettings, out_dir: Path) -> dict[str, str]:
    """What verl's reward workers read: the reward settings (JSON) and the error log."""
    from asmopt.model.training.reward import ERROR_LOG_ENV, SETTINGS_ENV

    return {
        SETTINGS_ENV: json.dumps(dataclasses.asdict(rewards), sort_keys=True),
        ERROR_LOG_ENV: str(Path(out_dir) / "reward_errors.jsonl"),
    }
