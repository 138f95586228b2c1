"""The vLLM back-end without vLLM: the install hint, and the mapping onto a fake ``vllm``."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import Any

import pytest

from asmopt.model.search.backends import ChatBackend
from asmopt.model.search.backends.vllm_backend import VLLMBackend
from asmopt.model.search.policy import PolicyError

MESSAGES = [{"role": "user", "content": "make it fast"}]


@dataclass
class FakeOutput:
    text: str


@dataclass
class FakeRequestOutput:
    outputs: list[FakeOutput]


def fake_vllm(fail_load: Exception | None = None) -> types.ModuleType:
    """A stand-in ``vllm`` module that records what the back-end asks of it."""
    module = types.ModuleType("vllm")
    module.engines = []  # type: ignore[attr-defined]

    class SamplingParams:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    class LLM:
        def __init__(self, **kwargs: Any) -> None:
            if fail_load is not None:
                raise fail_load
            self.kwargs = kwargs
            self.chats: list[tuple[Any, SamplingParams, dict[str, Any]]] = []
            module.engines.append(self)  # type: ignore[attr-defined]

        def chat(self, messages: Any, sampling_params: SamplingParams, **kw: Any) -> Any:
            self.chats.append((messages, sampling_params, kw))
            n = sampling_params.kwargs["n"]
            return [FakeRequestOutput([FakeOutput(f"out {i}") for i in range(n)])]

    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    module.LLM = LLM  # type: ignore[attr-defined]
    return module


def test_missing_vllm_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    backend = VLLMBackend("Qwen/Qwen2.5-Coder-7B-Instruct")
    assert isinstance(backend, ChatBackend)
    with pytest.raises(PolicyError, match=r"vLLM is not installed: pip install 'asmopt\[vllm\]'"):
        backend.complete(MESSAGES)


def test_missing_local_model_is_reported_at_once(tmp_path: Any) -> None:
    with pytest.raises(PolicyError, match="model not found"):
        VLLMBackend(str(tmp_path / "nothing-here"))


def test_engine_and_sampling_params_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    vllm = fake_vllm()
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    backend = VLLMBackend(
        "Qwen/Qwen2.5-Coder-7B-Instruct",
        tensor_parallel_size=2,
        gpu_memory_utilization=0.8,
        max_model_len=4096,
    )
    texts = backend.complete(MESSAGES, n=3, temperature=0.5, max_new_tokens=2000, seed=11)
    assert texts == ["out 0", "out 1", "out 2"]
    backend.complete(MESSAGES, n=1, temperature=0.7, max_new_tokens=5)

    [engine] = vllm.engines  # loaded once
    assert engine.kwargs == {
        "model": "Qwen/Qwen2.5-Coder-7B-Instruct",
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.8,
        "dtype": "auto",
        "max_model_len": 4096,
    }
    (messages, first, options), (_, second, _) = engine.chats
    assert messages == MESSAGES
    assert options == {"use_tqdm": False}
    assert first.kwargs == {"n": 3, "temperature": 0.5, "max_tokens": 2000, "seed": 11}
    assert second.kwargs == {"n": 1, "temperature": 0.7, "max_tokens": 5}


def test_greedy_asks_for_one_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    vllm = fake_vllm()
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    texts = VLLMBackend("m").complete(MESSAGES, n=4, temperature=0)
    assert texts == ["out 0"] * 4
    assert vllm.engines[0].chats[0][1].kwargs["n"] == 1


def test_engine_failure_becomes_policy_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm(RuntimeError("No CUDA GPUs are available")))
    with pytest.raises(PolicyError, match=r"vLLM could not load m: .*No CUDA GPUs.*nvidia-smi"):
        VLLMBackend("m").load()


def test_cli_takes_a_hub_id_for_vllm_and_its_engine_options(tmp_path, monkeypatch) -> None:
    """`--policy vllm --model ORG/NAME` is not refused as a missing path; the id, the tensor
    parallelism and the context length reach vLLM."""
    import shutil

    from click.testing import CliRunner

    from asmopt.cli import main

    if shutil.which("bwrap") is None:
        pytest.skip("needs bubblewrap")
    fake = fake_vllm()
    monkeypatch.setitem(sys.modules, "vllm", fake)
    (tmp_path / "tests").mkdir()
    (tmp_path / "p.c").write_text('#include <stdio.h>\nint main(void){puts("1");return 0;}\n')
    (tmp_path / "tests" / "a.in").write_text("")
    (tmp_path / ".git").mkdir()
    args = ["optimize", str(tmp_path / "p.c"), "--policy", "vllm", "--model",
            "LLM4Code/Superoptimizer_Qwen7B", "--tensor-parallel-size", "2", "--max-model-len",
            "4096", "--max-new-tokens", "77", "-n", "1", "--refine", "0", "--budget", "1",
            "--json", "--go-on"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 1), result.output
    assert "does not exist" not in result.output
    [engine] = fake.engines  # type: ignore[attr-defined]
    assert engine.kwargs["model"] == "LLM4Code/Superoptimizer_Qwen7B"
    assert engine.kwargs["tensor_parallel_size"] == 2
    assert engine.kwargs["max_model_len"] == 4096
    assert engine.chats[-1][1].kwargs["max_tokens"] == 77
