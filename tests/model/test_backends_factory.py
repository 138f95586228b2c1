"""Choosing a back-end by name, and keeping torch out of the language server's import path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asmopt.model.search.backends import BACKEND_NAMES
from asmopt.model.search.backends.factory import make_backend
from asmopt.model.search.backends.openai_backend import OpenAIBackend
from asmopt.model.search.backends.vllm_backend import VLLMBackend
from asmopt.model.search.policy import PolicyError


def test_names() -> None:
    assert BACKEND_NAMES == ("transformers", "openai", "vllm")


def test_unknown_policy_lists_the_known_ones() -> None:
    with pytest.raises(PolicyError, match=r"unknown LLM policy 'gpt'.*transformers, openai, vllm"):
        make_backend("gpt", None, None)


@pytest.mark.parametrize("policy", ["transformers", "vllm"])
def test_local_policies_need_a_model(policy: str) -> None:
    with pytest.raises(PolicyError, match=rf"the {policy} policy needs a model: pass --model"):
        make_backend(policy, None, "http://127.0.0.1:8000/v1")


def test_openai_needs_an_endpoint() -> None:
    with pytest.raises(PolicyError, match=r"needs an endpoint: pass --endpoint URL"):
        make_backend("openai", "some-model", None)


def test_openai_backend_is_built_with_its_options() -> None:
    backend = make_backend("openai", "qwen", "http://127.0.0.1:8000", timeout=5, retries=0)
    assert isinstance(backend, OpenAIBackend)
    assert backend.name == "openai"
    assert backend.base_url == "http://127.0.0.1:8000/v1"
    assert backend.model_id == "qwen"  # given, so /v1/models is not asked
    assert backend.timeout == 5


def test_vllm_backend_is_built_without_importing_vllm() -> None:
    backend = make_backend("vllm", "Qwen/Qwen2.5-Coder-7B-Instruct", None, max_model_len=4096)
    assert isinstance(backend, VLLMBackend)
    assert backend.max_model_len == 4096
    assert not backend.loaded


def test_transformers_reports_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="model not found"):
        make_backend("transformers", str(tmp_path / "missing"), None)


def test_unknown_option_names_the_known_ones() -> None:
    with pytest.raises(PolicyError, match=r"takes no option temprature; it takes .*timeout"):
        make_backend("openai", None, "http://127.0.0.1:8000", temprature=0.1)


def test_importing_backends_does_not_import_torch() -> None:
    script = (
        "import json, sys\n"
        "import asmopt.model.search.backends\n"
        "import asmopt.model.search.backends.factory\n"
        "import asmopt.model.search.backends.transformers_backend\n"
        "import asmopt.model.search.backends.openai_backend\n"
        "import asmopt.model.search.backends.vllm_backend\n"
        "import asmopt.model.search.openai_server\n"
        "heavy = ['torch', 'transformers', 'vllm', 'tokenizers', 'numpy', 'openai']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_api_key_from_settings_or_the_environment(monkeypatch) -> None:
    from asmopt.model.search.optimizer import make_policies
    from asmopt.model.settings import Settings

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("ASMOPT_API_KEY", "from-env")
    settings = Settings(policies=("openai",), endpoint="http://127.0.0.1:9/v1")
    [policy] = make_policies(settings)
    assert policy.backend._api_key == "from-env"
    [policy] = make_policies(settings.replace(api_key="given"))
    assert policy.backend._api_key == "given"
    assert "given" not in repr(settings.replace(api_key="given"))  # never in a log line
