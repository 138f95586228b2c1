"""scripts/gpu-check.sh, the checks a CUDA machine runs, run here on the CPU: the
transformers back-end, PPO precision (float32 master weights keep the paper's tiny updates
that bf16 weights lose), learning on a toy task, the reward under concurrent calls, and PPO
steps on a model of a given shape (a toy one here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.llm

SCRIPT = Path(__file__).parents[2] / "scripts" / "gpu-check.sh"


def test_gpu_check_cpu_parts(tmp_path):
    out = tmp_path / "report.json"
    env = {**os.environ, "PYTHON": sys.executable}
    command = ["bash", str(SCRIPT), "--device", "cpu", "--steps", "20", "--out", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] and report["device"] == "cpu"
    moved = report["precision"]["share_of_weights_moved"]
    # At lr 1e-6: float32 master weights take (nearly) every update; bf16 weights lose most.
    assert moved["bf16-mixed"] > 0.9 and moved["bfloat16"] < 0.2, moved
    assert report["learning"]["last_mean"] > report["learning"]["first_mean"]
    assert report["transformers"]["tiny"]["progress_lines"] >= 1
    assert report["concurrent_reward"]["ok"]
    toy = report["scale"]["shapes"]["toy"]  # a CUDA machine runs Qwen2.5-Coder 1.5B and 7B sizes
    assert toy["finite"] and toy["steps"] == 2 and len(toy["step_seconds"]) == 2
