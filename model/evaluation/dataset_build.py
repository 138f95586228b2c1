"""Build a data set in the paper's format from a directory of C programs with tests.

:func:`build_dataset` turns a directory of targets into parquet the paper's way: the
``gcc -O3`` assembly is the baseline (``unoptimized_assembly``), programs whose ``-O3`` build
fails their own tests are dropped, optionally so are those whose ``-O0``→``-O3`` speed-up is
below a threshold (the paper used 3x) and those longer than a token budget, and the rest is
split into train and val with a seed. Reading, checking and writing rows is
:mod:`asmopt.model.evaluation.dataset`.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asmopt.executor.testcases import Comparator, TestCase, TestSetError, load_tests
from asmopt.model.evaluation.dataset import (
    PAPER_MAX_TESTS,
    DatasetError,
    _atomic_target,
    find_targets,
    make_row,
    write_jsonl,
    write_parquet,
)
from asmopt.model.search.prompts import build_prompt

__all__ = [
    "BuildOptions",
    "BuildSummary",
    "Dropped",
    "TokenCounter",
    "build_dataset",
    "load_tokenizer",
]

TokenCounter = Callable[[str], int]


def load_tokenizer(spec: str | Path | Callable[[str], Any]) -> TokenCounter:
    """A token counter from a callable (returning a count or a sequence of tokens), a
    ``tokenizer.json`` file (``tokenizers``), or a Hugging Face tokenizer directory
    (``transformers``, local files only: nothing is downloaded)."""
    if callable(spec):
        func = spec

        def count(text: str) -> int:
            out = func(text)
            return out if isinstance(out, int) else len(out)

        return count
    path = Path(spec)
    if not path.exists():
        raise DatasetError(
            f"tokenizer {spec} not found: pass a tokenizer.json file or a model directory "
            "holding one (nothing is downloaded)"
        )
    if path.is_file():
        try:
            from tokenizers import Tokenizer
        except ImportError as err:
            raise DatasetError(f"reading {path} needs the tokenizers package ({err})") from err
        tokenizer = Tokenizer.from_file(str(path))
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
    try:
        from transformers import AutoTokenizer
    except ImportError as err:
        raise DatasetError(
            f"reading the tokenizer in {path} needs transformers: pip install 'asmopt[llm]'"
        ) from err
    try:
        hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as err:  # transformers raises OSError/ValueError/...
        raise DatasetError(f"cannot load a tokenizer from {path}: {err}") from err
    return lambda text: len(hf.encode(text, add_special_tokens=False))


@dataclass(frozen=True)
class BuildOptions:
    """How :func:`build_dataset` filters and splits."""

    min_speedup: float | None = None  # O0 -> O3 speed-up a program needs (paper: 3.0)
    val_fraction: float = 0.1
    seed: int = 0
    tokenizer: TokenCounter | None = None
    max_tokens: int | None = None  # question + answer tokens at most (paper: 4000)
    max_tests: int | None = PAPER_MAX_TESTS
    compare: str = "tokens"  # how given .out files are checked against the -O3 build
    timeout: float = 10.0  # seconds a test may run
    bench_budget: float = 10.0  # seconds to measure one O0 -> O3 speed-up
    sandbox: bool = True
    jsonl: bool = False  # also write the rows as JSON lines


@dataclass(frozen=True)
class Dropped:
    name: str
    reason: str  # "fails-own-tests", "too-slow-to-matter", "too-long", ...
    detail: str


def _dropped_dict(d: Dropped) -> dict[str, str]:
    return {"name": d.name, "reason": d.reason, "detail": d.detail}


@dataclass(frozen=True)
class BuildSummary:
    out_dir: Path
    files: tuple[Path, ...]
    train: int
    val: int
    dropped: tuple[Dropped, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "files": [str(p) for p in self.files],
            "train": self.train,
            "val": self.val,
            "dropped": [_dropped_dict(d) for d in self.dropped],
        }


def _decode(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Drop("not-text", f"{what} is not UTF-8 (byte {err.start})") from err


class _Drop(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _prepare_program(
    name: str,
    source: Path,
    tests_dir: Path | None,
    work: Path,
    sandbox: Any,
    options: BuildOptions,
) -> dict[str, Any]:
    """Everything one row needs: -O3 assembly, binary, tests with their expected outputs."""
    from asmopt.executor.sandbox import SandboxLimits
    from asmopt.executor.verify import BaselineError, VerifyOptions, prepare_baseline

    given = _given_tests(source, tests_dir, options.max_tests)
    limits = SandboxLimits(wall_seconds=options.timeout, cpu_seconds=int(options.timeout) + 1)
    verify_options = VerifyOptions(limits=limits, comparator=Comparator(mode="exact"))
    # Expected outputs are the -O3 build's own stdout (the paper compares outputs exactly);
    # a given .out must agree with it under ``options.compare``, or the program is dropped.
    unpinned = [TestCase(t.name, t.stdin, None, t.args) for t in given]
    try:
        baseline = prepare_baseline(source, unpinned, work / "o3", sandbox, options=verify_options)
    except BaselineError as err:
        reason = "does-not-build" if err.stage in ("compile", "link") else "fails-own-tests"
        raise _Drop(reason, str(err)) from err
    comparator = Comparator(mode=options.compare)  # type: ignore[arg-type]
    for test in given:
        if test.expected is None:
            continue
        ok, detail = comparator.compare(baseline.expected[test.name], test.expected)
        if not ok:
            raise _Drop(
                "fails-own-tests",
                f"the gcc -O3 build fails its own test {test.name}: {detail}",
            )
    inputs = [_decode(t.stdin, f"input {t.name}") for t in given]
    outputs = [_decode(baseline.expected[t.name], f"output of {t.name}") for t in given]
    speedup = None
    if options.min_speedup is not None:
        speedup = _o0_o3_speedup(source, work, sandbox, baseline.binary, given, options, limits)
    return {
        "name": name,
        "source": str(source),
        "c_source": source.read_text(errors="replace"),
        "o3_asm": baseline.asm,
        "binary": baseline.binary.read_bytes(),
        "inputs": inputs,
        "outputs": outputs,
        "o0_o3_speedup": speedup,
    }


def _given_tests(source: Path, tests_dir: Path | None, max_tests: int | None) -> list[TestCase]:
    """The program's first ``max_tests`` tests; dropped when it has none or they take args."""
    if tests_dir is None:
        raise _Drop("no-tests", f"{source}: no tests directory found")
    try:
        given = load_tests(tests_dir)
    except TestSetError as err:
        raise _Drop("no-tests", str(err)) from err
    if max_tests is not None:
        given = given[:max_tests]
    if any(t.args for t in given):
        raise _Drop("has-args", "tests with command-line arguments don't fit the paper's rows")
    return given


def _o0_o3_speedup(
    source: Path,
    work: Path,
    sandbox: Any,
    o3_binary: Path,
    given: list[TestCase],
    options: BuildOptions,
    limits: Any,
) -> float:
    """How much faster the -O3 build runs ``given`` than a -O0 build; dropped below
    ``options.min_speedup``."""
    from asmopt.executor.benchmark import BenchmarkError, BenchmarkOptions, benchmark
    from asmopt.executor.toolchain import build_binary, compile_to_asm

    assert options.min_speedup is not None
    o0_asm = work / "o0.s"
    o0_bin = work / "o0.bin"
    build = compile_to_asm(source, o0_asm, flags=("-O0",))
    link = build_binary([o0_asm], o0_bin, sandbox=sandbox) if build.ok else build
    if not link.ok:
        raise _Drop("does-not-build", f"the -O0 build fails: {link.stderr.strip()[:300]}")
    try:
        estimate = benchmark(
            sandbox,
            o0_bin,
            o3_binary,
            list(given),
            BenchmarkOptions(budget_seconds=options.bench_budget, target_rel_ci=0.05),
            limits=limits,
        )
    except BenchmarkError as err:
        raise _Drop("flaky", str(err)) from err
    speedup: float = estimate.median
    if speedup < options.min_speedup:
        raise _Drop(
            "below-min-speedup",
            f"-O0 -> -O3 speed-up {speedup:.2f}x < {options.min_speedup:g}x",
        )
    return speedup


def build_dataset(
    src_dir: Path,
    out_dir: Path,
    options: BuildOptions | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> BuildSummary:
    """Build ``train.parquet`` and ``val.parquet`` (and ``build.json``, which says what was
    dropped and why, and which program each row came from) from a directory of targets.

    The paper's filters, in its order: programs whose ``gcc -O3`` build fails its own tests
    are dropped; with ``min_speedup``, programs whose ``-O0`` build is not that many times
    slower than ``-O3`` (measured here by the interleaved CPU-time benchmark, not hyperfine);
    with ``max_tokens``, rows whose question plus answer exceed that many tokens. The rest are
    shuffled with ``seed`` and ``val_fraction`` of them (rounded, at least one when there are
    two or more programs and the fraction is positive) go to val.
    """
    opts = options or BuildOptions()
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    targets = _targets_to_build(src_dir, opts)
    kept, dropped = _prepare_all(targets, opts, progress)
    train_ids, val_ids = _split_ids(len(kept), opts)
    files: list[Path] = []
    manifest: dict[str, Any] = {"splits": {}, "dropped": [], "options": _options_dict(opts)}
    for split, ids in (("train", train_ids), ("val", val_ids)):
        programs = [kept[k] for k in ids]
        files.extend(_write_split(split, programs, out_dir, opts.jsonl))
        manifest["splits"][split] = [
            {
                "index": index,
                "name": program["name"],
                "source": program["source"],
                "o0_o3_speedup": program["o0_o3_speedup"],
            }
            for index, program in enumerate(programs)
        ]
    manifest["dropped"] = [_dropped_dict(d) for d in dropped]
    manifest_path = out_dir / "build.json"
    tmp_manifest = _atomic_target(manifest_path)
    tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp_manifest, manifest_path)
    files.append(manifest_path)
    return BuildSummary(out_dir, tuple(files), len(train_ids), len(val_ids), tuple(dropped))


def _targets_to_build(src_dir: Path, opts: BuildOptions) -> list[tuple[str, Path, Path | None]]:
    """The targets under ``src_dir``, after checking that ``opts`` make sense."""
    if not 0.0 <= opts.val_fraction < 1.0:
        raise DatasetError(f"val fraction must be in [0, 1), got {opts.val_fraction}")
    if opts.max_tokens is not None and opts.tokenizer is None:
        raise DatasetError("max_tokens needs a tokenizer (--tokenizer PATH)")
    if not src_dir.is_dir():
        raise DatasetError(f"{src_dir} is not a directory of C programs with tests")
    targets = find_targets(src_dir)
    if not targets:
        raise DatasetError(
            f"no targets in {src_dir}: expected C files with main and a tests/ directory "
            "beside each, or an asmopt.toml with [[target]] tables"
        )
    return targets


def _prepare_all(
    targets: list[tuple[str, Path, Path | None]],
    opts: BuildOptions,
    progress: Callable[[str, int, int], None] | None,
) -> tuple[list[dict[str, Any]], list[Dropped]]:
    """Each target prepared (in the sandbox) or dropped with the reason."""
    from asmopt.executor.sandbox import Sandbox, SandboxLimits

    kept: list[dict[str, Any]] = []
    dropped: list[Dropped] = []
    limits = SandboxLimits(wall_seconds=opts.timeout, cpu_seconds=int(opts.timeout) + 1)
    with (
        Sandbox(limits, enabled=opts.sandbox) as sandbox,
        tempfile.TemporaryDirectory(prefix="asmopt-dataset-") as tmp,
    ):
        for number, (name, source, tests_dir) in enumerate(targets):
            if progress:
                progress(name, number, len(targets))
            work = Path(tmp) / str(number)
            work.mkdir()
            try:
                program = _prepare_program(name, source, tests_dir, work, sandbox, opts)
                _check_length(program, opts)
                kept.append(program)
            except _Drop as drop:
                dropped.append(Dropped(name, drop.reason, drop.detail))
        if progress:
            progress("", len(targets), len(targets))
    return kept, dropped


def _check_length(program: dict[str, Any], opts: BuildOptions) -> None:
    """Drop a program whose question plus answer exceed ``opts.max_tokens``."""
    if opts.max_tokens is None:
        return
    assert opts.tokenizer is not None
    question = build_prompt(program["c_source"], program["o3_asm"])
    answer = f"```assembly\n{program['o3_asm']}```"
    tokens = opts.tokenizer(question) + opts.tokenizer(answer)
    if tokens > opts.max_tokens:
        raise _Drop("too-long", f"{tokens} tokens (question + answer) > {opts.max_tokens}")


def _split_ids(count: int, opts: BuildOptions) -> tuple[list[int], list[int]]:
    """Shuffle ``count`` programs with ``opts.seed``: (train, val) indices, each sorted."""
    order = list(range(count))
    random.Random(opts.seed).shuffle(order)
    n_val = round(count * opts.val_fraction)
    if opts.val_fraction > 0 and count >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, count - 1) if count else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


def _write_split(
    split: str, programs: list[dict[str, Any]], out_dir: Path, jsonl: bool
) -> list[Path]:
    """Write one split's rows as parquet (and JSON lines when asked); the files written."""
    rows = [
        make_row(
            c_source=program["c_source"],
            o3_asm=program["o3_asm"],
            inputs=program["inputs"],
            outputs=program["outputs"],
            split=split,
            index=index,
            baseline_binary=program["binary"],
        )
        for index, program in enumerate(programs)
    ]
    files = [write_parquet(rows, out_dir / f"{split}.parquet")]
    if jsonl:
        files.append(write_jsonl(rows, out_dir / f"{split}.jsonl"))
    return files


def _options_dict(opts: BuildOptions) -> dict[str, Any]:
    return {
        "min_speedup": opts.min_speedup,
        "val_fraction": opts.val_fraction,
        "seed": opts.seed,
        "max_tokens": opts.max_tokens,
        "max_tests": opts.max_tests,
        "compare": opts.compare,
    }
