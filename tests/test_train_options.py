"""`asmopt train`'s PPO options are PPOConfig's fields: each has an option with PPOConfig's
default, and what is typed reaches PPOConfig (local) or verl's settings. Likewise the reward
options and RewardSettings."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from asmopt.cli import main
from asmopt.commands.train import OPTION_NAMES, REWARD_HELP, UNSET_BY_DEFAULT, VERL_NAMES, train
from asmopt.model.training.reward import RewardSettings
from asmopt.model.training.verl_config import VerlSettings

PPOConfig = pytest.importorskip("asmopt.model.training.ppo").PPOConfig  # needs torch


def _options() -> dict[str, click.Parameter]:
    return {p.name: p for p in train.get_params(click.Context(train)) if p.name}


def test_every_ppoconfig_field_is_an_option_with_ppoconfigs_default() -> None:
    options = _options()
    for field in dataclasses.fields(PPOConfig):
        assert field.name in options, f"PPOConfig.{field.name} has no `asmopt train` option"
        expected = None if field.name in UNSET_BY_DEFAULT else field.default
        assert options[field.name].default == expected, (
            f"--{field.name}: default {options[field.name].default!r}, PPOConfig: {expected!r}"
        )


def test_the_reward_options_have_rewardsettings_defaults() -> None:
    options = _options()
    fields = {f.name: f for f in dataclasses.fields(RewardSettings)}
    assert set(REWARD_HELP) <= set(fields)
    for name in REWARD_HELP:
        assert options[name].default == fields[name].default, name


def test_the_exceptions_name_real_fields() -> None:
    names = {f.name for f in dataclasses.fields(PPOConfig)}
    assert set(UNSET_BY_DEFAULT) <= names
    assert set(OPTION_NAMES) <= names
    assert set(VERL_NAMES) <= names
    assert set(VERL_NAMES.values()) <= {f.name for f in dataclasses.fields(VerlSettings)}


def test_the_old_option_names_still_work() -> None:
    flags = {opt for p in _options().values() for opt in p.opts}
    old = ["--batch-size", "--lr", "--critic-lr", "--temperature", "--max-new-tokens",
           "--max-prompt-tokens", "--kl-coef", "--micro-batch-size", "--save-every", "--seed",
           "--device", "--dtype", "--gradient-checkpointing", "--steps"]  # fmt: skip
    assert set(old) <= flags


def _run_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str):
    seen: dict[str, Any] = {}

    def train_local(data, model, out_dir, config, **_: Any) -> list:
        seen["config"] = config
        return []

    monkeypatch.setattr("asmopt.model.training.train.train_local", train_local)
    data = tmp_path / "rows.jsonl"
    data.write_text("")
    result = CliRunner().invoke(
        main, ["train", str(data), "--model", "m", "--out", str(tmp_path / "run"), *args]
    )
    assert result.exit_code == 0, result.output
    return seen["config"]


def test_no_options_train_with_ppoconfigs_defaults(tmp_path, monkeypatch) -> None:
    assert _run_local(tmp_path, monkeypatch) == PPOConfig()


def test_options_reach_ppoconfig(tmp_path, monkeypatch) -> None:
    config = _run_local(tmp_path, monkeypatch, "--batch-size", "4", "--lr", "3e-6",
                        "--gamma", "0.9", "--no-normalize-advantages", "--ppo-epochs", "2",
                        "--micro-batch-size", "8")  # fmt: skip
    # The mini-batch follows --batch-size, and a micro-batch is no larger than it.
    assert config == PPOConfig(batch_size=4, actor_lr=3e-6, gamma=0.9, ppo_epochs=2,
                               normalize_advantages=False, mini_batch_size=4,
                               micro_batch_size=4)  # fmt: skip


def test_verl_gets_its_fields_and_refuses_local_ones(tmp_path, monkeypatch) -> None:
    seen: dict[str, Any] = {}

    def launch_verl(data, model, out_dir, **settings: Any) -> int:
        seen.update(settings)
        return 0

    monkeypatch.setattr("asmopt.model.training.train.launch_verl", launch_verl)
    data = tmp_path / "rows.jsonl"
    data.write_text("")
    common = ["train", str(data), "--engine", "verl", "--model", "m", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, [*common, "--max-new-tokens", "64", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert seen["reward_settings"] == RewardSettings()
    assert seen["max_response_length"] == 64 and seen["epochs"] == 2
    assert "gradient_checkpointing" not in seen  # unset: VerlSettings' default (on)
    refused = CliRunner().invoke(main, [*common, "--gamma", "0.9", "--mini-batch-size", "2"])
    assert refused.exit_code == 2
    message = " ".join(refused.output.split())
    assert "--mini-batch-size, --gamma only apply to --engine local" in message
