"""Data sets in the paper's format: read them, check them, write them.

(~680 lines, more than most modules: the row format is read, checked and written in one
place so that the schema and its readers cannot drift apart.)

A data set is a list of :class:`Problem` values, one per program. They come from

- the paper's verl parquet (``LLM4Code/llm_superoptimizer_ds``; columns ``data_source``,
  ``prompt``, ``ability``, ``reward_model``, ``extra_info``) or the same rows as JSON lines;
- a directory of targets (DESIGN.md, "Formats"): ``[[target]]`` tables of an ``asmopt.toml``,
  or, without one, every C file with ``main`` and a ``tests/`` directory beside it.

:func:`asmopt.model.evaluation.dataset_build.build_dataset` turns a directory of targets into
parquet the paper's way (the ``gcc -O3`` assembly is the baseline, ``unoptimized_assembly``
in the paper's name for it); this module reads, checks and writes rows.

Schema facts, from the paper's code (``src/create_data/convert_to_hf_raw.py``,
``precompile.py``, the verl reward functions) and checked against what HF ``datasets``
writes for such rows: see :data:`PARQUET_SCHEMA`. Inferred where the code does not say (the
released parquet was not available here): ``unoptimized_assembly`` holds the ``gcc -O3``
assembly without fences (readers strip a fence if one is there), ``question`` is the v3
prompt with that assembly (DESIGN.md), ``data_source`` is the split name, as the paper's
script sets it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from asmopt.executor.testcases import TestCase, TestSetError, load_tests
from asmopt.model.search.policy import Request
from asmopt.model.search.prompts import build_prompt, build_prompt_c_only, chat_messages

__all__ = [
    "EXTRA_INFO_FIELDS",
    "PAPER_MAX_TESTS",
    "PAPER_MIN_SPEEDUP",
    "DataSet",
    "DatasetError",
    "Problem",
    "find_targets",
    "make_row",
    "parquet_schema",
    "problem_from_row",
    "read_dataset",
    "summarize",
    "write_jsonl",
    "write_parquet",
]

# The paper runs the first 10 tests of a row (``inputs[:10]``) in its evaluation and reward.
PAPER_MAX_TESTS = 10
# create_top_speedup.py keeps CodeNet submissions whose -O0 build is >= 3x slower than -O3.
PAPER_MIN_SPEEDUP = 3.0
# The fields of ``extra_info``, in the order the paper's scripts create them.
EXTRA_INFO_FIELDS = (
    "split",
    "index",
    "c_code",
    "question",
    "c_only_question",
    "answer",
    "inputs",
    "outputs",
    "unoptimized_assembly",
    "unoptimized_compiled",
)
# What a row must have for a candidate to be judged at all.
_REQUIRED_EXTRA = ("inputs", "outputs", "unoptimized_assembly")
_C_BLOCK = re.compile(r"```c\n(.*?)```\n\nAssembly Code:", re.DOTALL)
_C_ONLY_BLOCK = re.compile(r"```c\n(.*?)```\n\nOnly output", re.DOTALL)


class DatasetError(ValueError):
    """A data set cannot be read or built; the message names the file, row and column."""


def parquet_schema():  # -> pyarrow.Schema
    """The arrow schema of the paper's rows, as HF ``datasets`` writes them (field order and
    types included): what verl's ``RLHFDataset`` reads."""
    import pyarrow as pa

    return pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
            (
                "extra_info",
                pa.struct(
                    [
                        ("split", pa.string()),
                        ("index", pa.int64()),
                        ("c_code", pa.string()),
                        ("question", pa.string()),
                        ("c_only_question", pa.string()),
                        ("answer", pa.string()),
                        ("inputs", pa.list_(pa.string())),
                        ("outputs", pa.list_(pa.string())),
                        ("unoptimized_assembly", pa.string()),
                        ("unoptimized_compiled", pa.binary()),
                    ]
                ),
            ),
        ]
    )


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """One program to optimize: its C source, its ``gcc -O3`` assembly and its tests.

    ``name`` identifies it in reports (a target's name, or ``<split>-<index>`` for a row);
    ``row`` is its position in the file it came from. ``prompt`` is the chat list the row
    carries (what the paper's model saw); ``baseline_binary`` is the row's precompiled
    ``unoptimized_compiled``, kept for reference only: asmopt always rebuilds the baseline
    from its assembly, linked as every candidate is.
    """

    name: str
    row: int
    baseline_asm: str
    tests: tuple[TestCase, ...]
    c_source: str | None = None
    prompt: tuple[dict[str, str], ...] = ()
    split: str = ""
    index: int | None = None
    answer: str | None = None
    baseline_binary: bytes | None = field(default=None, repr=False)
    origin: str = ""  # the file or directory it was read from

    def request(self, source_path: Path | None = None, tests_dir: Path | None = None) -> Request:
        """The whole-file request a policy gets for this problem (the paper's setting)."""
        return Request(
            baseline_asm=self.baseline_asm,
            c_source=self.c_source,
            source_path=source_path,
            cflags=("-O3",),
            tests_dir=tests_dir,
        )

    def content_key(self) -> str:
        """A digest of everything that decides this problem's results (for resuming); the
        name is a label only and not part of it."""
        import hashlib

        from asmopt.executor.testcases import tests_digest

        digest = hashlib.sha256(b"asmopt-problem-v1\0")
        for part in (self.baseline_asm, self.c_source or "", tests_digest(self.tests)):
            data = part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
        return digest.hexdigest()

    def write_tests(self, directory: Path) -> Path:
        """Write the tests as ``tN.in`` / ``tN.out`` files (DESIGN.md's test format)."""
        directory.mkdir(parents=True, exist_ok=True)
        for test in self.tests:
            (directory / f"{test.name}.in").write_bytes(test.stdin)
            if test.expected is not None:
                (directory / f"{test.name}.out").write_bytes(test.expected)
        return directory


@dataclass(frozen=True)
class DataSet:
    """Problems read from one file or directory; ``skipped`` says which rows were left out
    and why (only when reading with ``skip_invalid=True``)."""

    origin: str
    problems: tuple[Problem, ...]
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.problems)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems)


def _strip_fence(text: str) -> str:
    # The paper's code strips "```assembly\n" and "```" from stored assembly before use.
    if "```" not in text:
        return text
    return text.replace("```assembly\n", "").replace("```", "")


def _where(origin: str, row: int, column: str) -> str:
    return f"{origin}: row {row}, column {column!r}"


def _as_text_list(value: Any, origin: str, row: int, column: str) -> list[str]:
    if value is None:
        raise DatasetError(f"{_where(origin, row, column)} is missing (null)")
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise DatasetError(
            f"{_where(origin, row, column)} must be a list of strings, got {type(value).__name__}"
        )
    items = list(value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise DatasetError(
                f"{_where(origin, row, column)}[{i}] must be a string, got {type(item).__name__}"
            )
    return items


def _as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):  # JSON lines carry the binary as base64
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
    if isinstance(value, list) and all(isinstance(x, int) for x in value):
        return bytes(value)
    return None


def _c_from_prompt(text: str) -> str | None:
    for pattern in (_C_BLOCK, _C_ONLY_BLOCK):
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def problem_from_row(
    row: dict[str, Any], number: int, origin: str = "<rows>", max_tests: int | None = None
) -> Problem:
    """Check one row of the paper's format and turn it into a :class:`Problem`.

    ``max_tests`` keeps the first tests only (the paper uses 10). Raises
    :class:`DatasetError` naming the row and column for anything missing or malformed:
    no ``extra_info``, no tests, ``inputs`` and ``outputs`` of different lengths, empty
    baseline assembly.
    """
    extra = _extra_info(row, number, origin)
    tests = _row_tests(extra, number, origin, max_tests)
    asm = extra["unoptimized_assembly"]
    if not isinstance(asm, str) or not _strip_fence(asm).strip():
        raise DatasetError(
            f"{_where(origin, number, 'extra_info.unoptimized_assembly')} is empty or not text"
        )
    messages = _row_messages(row, number, origin)
    c_source = extra.get("c_code")
    if not isinstance(c_source, str):
        c_source = _c_from_texts([extra.get("question"), *(m["content"] for m in messages)])
    split = extra.get("split") if isinstance(extra.get("split"), str) else ""
    if not split and isinstance(row.get("data_source"), str):
        split = row["data_source"]
    index = extra.get("index")
    index = index if isinstance(index, int) and not isinstance(index, bool) else None
    name = extra.get("name") if isinstance(extra.get("name"), str) else None
    if name is None:
        name = f"{split or 'row'}-{index if index is not None else number}"
    answer = extra.get("answer") if isinstance(extra.get("answer"), str) else None
    return Problem(
        name=name,
        row=number,
        baseline_asm=_strip_fence(asm),
        tests=tests,
        c_source=c_source,
        prompt=tuple(messages),
        split=str(split or ""),
        index=index,
        answer=answer,
        baseline_binary=_as_bytes(extra.get("unoptimized_compiled")),
        origin=origin,
    )


def _extra_info(row: Any, number: int, origin: str) -> dict[str, Any]:
    """The row's ``extra_info``, checked to hold every key a row needs."""
    if not isinstance(row, dict):
        raise DatasetError(f"{origin}: row {number} is not an object ({type(row).__name__})")
    extra = row.get("extra_info")
    if extra is None:
        raise DatasetError(
            f"{_where(origin, number, 'extra_info')} is missing: the paper's rows keep the "
            f"tests and the baseline there ({', '.join(_REQUIRED_EXTRA)})"
        )
    if not isinstance(extra, dict):
        raise DatasetError(f"{_where(origin, number, 'extra_info')} must be a struct/object")
    for key in _REQUIRED_EXTRA:
        if key not in extra or extra[key] is None:
            raise DatasetError(f"{_where(origin, number, 'extra_info.' + key)} is missing")
    return extra


def _row_tests(
    extra: dict[str, Any], number: int, origin: str, max_tests: int | None
) -> tuple[TestCase, ...]:
    """The row's first ``max_tests`` tests, from ``inputs`` and ``outputs`` (checked to pair)."""
    inputs = _as_text_list(extra["inputs"], origin, number, "extra_info.inputs")
    outputs = _as_text_list(extra["outputs"], origin, number, "extra_info.outputs")
    if not inputs:
        raise DatasetError(
            f"{_where(origin, number, 'extra_info.inputs')} is empty: the row has no tests, "
            "so no candidate can be verified; drop the row or add tests"
        )
    if len(inputs) != len(outputs):
        raise DatasetError(
            f"{_where(origin, number, 'extra_info.outputs')} has {len(outputs)} entries but "
            f"inputs has {len(inputs)}: every input needs its expected output"
        )
    keep = len(inputs) if max_tests is None else max(0, max_tests)
    return tuple(
        TestCase(name=f"t{i}", stdin=i_text.encode(), expected=o_text.encode())
        for i, (i_text, o_text) in enumerate(zip(inputs[:keep], outputs[:keep], strict=True))
    )


def _row_messages(row: dict[str, Any], number: int, origin: str) -> list[dict[str, str]]:
    """The row's ``prompt`` as chat messages (none when the column is absent)."""
    prompt = row.get("prompt")
    messages: list[dict[str, str]] = []
    if prompt is None:
        return messages
    if isinstance(prompt, str | bytes) or not isinstance(prompt, Iterable):
        raise DatasetError(f"{_where(origin, number, 'prompt')} must be a list of messages")
    for i, message in enumerate(prompt):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise DatasetError(
                f"{_where(origin, number, 'prompt')}[{i}] must have string role and content"
            )
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


def _c_from_texts(texts: Iterable[object]) -> str | None:
    """The C program quoted in the first of ``texts`` (question, prompt turns) that has one."""
    for text in texts:
        if isinstance(text, str) and (found := _c_from_prompt(text)) is not None:
            return found
    return None


# --------------------------------------------------------------------------- reading


def read_dataset(
    path: Path, *, max_tests: int | None = PAPER_MAX_TESTS, skip_invalid: bool = False
) -> DataSet:
    """Read a data set: ``.parquet``, ``.jsonl``/``.json`` (the same rows), or a directory
    of targets (``asmopt.toml`` ``[[target]]``s, or C files with a ``tests/`` directory).

    Raises :class:`DatasetError` for a missing file, a missing column, or a bad row (naming
    the row and column); with ``skip_invalid`` bad rows are left out and listed in
    ``DataSet.skipped`` instead.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist: pass a .parquet, .jsonl or a directory")
    if path.is_dir():
        return _read_targets(path, max_tests=max_tests, skip_invalid=skip_invalid)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        rows = _parquet_rows(path)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        rows = _json_rows(path)
    else:
        raise DatasetError(
            f"{path}: unknown data set format {suffix!r}; use .parquet (the paper's verl "
            "files), .jsonl (the same rows as JSON lines) or a directory of targets"
        )
    problems: list[Problem] = []
    skipped: list[str] = []
    names = _manifest_names(path.parent / "build.json")
    for number, row in rows:
        try:
            problem = problem_from_row(row, number, str(path), max_tests)
            name = names.get((problem.split, problem.index))
            problems.append(replace(problem, name=name) if name else problem)
        except DatasetError as err:
            if not skip_invalid:
                raise
            skipped.append(str(err))
    if not problems and not skipped:
        raise DatasetError(f"{path} holds no rows")
    return DataSet(str(path), tuple(problems), tuple(skipped))


def _manifest_names(path: Path) -> dict[tuple[str, int | None], str]:
    """Program names by (split, index) from the build.json that ``build_dataset`` writes
    beside its parquet files; empty when there is none (rows are then named split-index)."""
    try:
        manifest = json.loads(path.read_text())
        return {
            (split, int(entry["index"])): str(entry["name"])
            for split, entries in manifest.get("splits", {}).items()
            for entry in entries
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:  # pragma: no cover - pyarrow is in the data extra
        raise DatasetError(
            f"reading {path} needs pyarrow: pip install 'asmopt[data]' ({err})"
        ) from err
    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a bad file
        raise DatasetError(f"{path} is not a readable parquet file: {err}") from err
    names = parquet.schema_arrow.names
    if "extra_info" not in names:
        raise DatasetError(
            f"{path}: no column 'extra_info' (columns: {', '.join(names)}); the paper's rows "
            "have data_source, prompt, ability, reward_model, extra_info"
        )
    number = 0
    for batch in parquet.iter_batches(batch_size=256):
        for row in batch.to_pylist():
            yield number, row
            number += 1


def _json_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        first = handle.read(1)
        handle.seek(0)
        if first == "[":  # a JSON array of rows
            try:
                rows = json.load(handle)
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path}: not valid JSON: {err}") from err
            yield from enumerate(rows)
            return
        number = 0
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(
                    f"{path}: line {line_no} (row {number}) is not JSON: {err}"
                ) from err
            yield number, row
            number += 1


def find_targets(directory: Path) -> list[tuple[str, Path, Path | None]]:
    """(name, C source, tests directory) for every target under ``directory``: the
    ``[[target]]``s of its ``asmopt.toml`` when it has one, else every ``.c`` file with
    ``main`` (tests found as DESIGN.md says: ``tests/`` beside it, ``<stem>_tests/`` or
    ``tests/<stem>/``), in name order."""
    from asmopt.model.settings import SettingsError, default_target, has_main, load_config

    directory = Path(directory)
    try:
        config = load_config(directory)
    except SettingsError as err:
        raise DatasetError(str(err)) from err
    found: list[tuple[str, Path, Path | None]] = []
    if config.targets:
        for target in config.targets:
            c_files = [s for s in target.sources if s.suffix == ".c"]
            if len(target.sources) != 1 or not c_files:
                raise DatasetError(
                    f"{directory / 'asmopt.toml'}: target {target.name!r} has "
                    f"{len(target.sources)} sources; the paper's format holds one C file per "
                    "program"
                )
            found.append((target.name, c_files[0], target.tests))
        return found
    for source in sorted(directory.rglob("*.c")):
        if any(part.startswith(".") for part in source.relative_to(directory).parts):
            continue
        try:
            text = source.read_text(errors="replace")
        except OSError:
            continue
        if not has_main(text):
            continue
        guessed = default_target(source)
        assert guessed is not None
        found.append((source.stem, source, guessed.tests))
    return found


def _read_targets(directory: Path, *, max_tests: int | None, skip_invalid: bool) -> DataSet:
    """Problems from a directory of C programs; the baseline assembly is ``gcc -O3 -S``."""
    from asmopt.executor.toolchain import compile_to_asm

    problems: list[Problem] = []
    skipped: list[str] = []
    targets = find_targets(directory)
    if not targets:
        raise DatasetError(
            f"no targets in {directory}: expected C files with main and a tests/ directory "
            "beside each, or an asmopt.toml with [[target]] tables"
        )
    with tempfile.TemporaryDirectory(prefix="asmopt-targets-") as tmp:
        for number, (name, source, tests_dir) in enumerate(targets):
            try:
                if tests_dir is None:
                    raise DatasetError(
                        f"{source}: no tests found (looked for tests/, {source.stem}_tests/ "
                        f"and tests/{source.stem}/ beside it)"
                    )
                try:
                    tests = load_tests(tests_dir)
                except TestSetError as err:
                    raise DatasetError(f"{source}: {err}") from err
                asm_path = Path(tmp) / f"{number}.s"
                build = compile_to_asm(source, asm_path, flags=("-O3",))
                if not build.ok:
                    raise DatasetError(f"{source} does not compile: {build.stderr.strip()[:300]}")
                problems.append(
                    Problem(
                        name=name,
                        row=number,
                        baseline_asm=asm_path.read_text(errors="replace"),
                        tests=tuple(tests[:max_tests] if max_tests is not None else tests),
                        c_source=source.read_text(errors="replace"),
                        origin=str(source),
                    )
                )
            except DatasetError as err:
                if not skip_invalid:
                    raise
                skipped.append(str(err))
    return DataSet(str(directory), tuple(problems), tuple(skipped))


# --------------------------------------------------------------------------- writing


def make_row(
    *,
    c_source: str,
    o3_asm: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    split: str,
    index: int,
    baseline_binary: bytes | None,
) -> dict[str, Any]:
    """One row in the paper's format (see the module docstring for the inferred parts)."""
    question = build_prompt(c_source, o3_asm)
    return {
        "data_source": split,
        "prompt": chat_messages(question),
        "ability": "code",
        "reward_model": {"style": "rule", "ground_truth": o3_asm},
        "extra_info": {
            "split": split,
            "index": index,
            "c_code": c_source,
            "question": question,
            "c_only_question": build_prompt_c_only(c_source),
            "answer": f"```assembly\n{o3_asm}```",
            "inputs": list(inputs),
            "outputs": list(outputs),
            "unoptimized_assembly": o3_asm,
            "unoptimized_compiled": baseline_binary,
        },
    }


def _atomic_target(path: Path) -> Path:
    """A temporary file beside ``path`` (same file system, so renaming it is atomic), with
    the permissions an ordinary new file gets (mkstemp makes them private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def write_parquet(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write rows with :func:`parquet_schema` (all at once, renamed into place at the end)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(list(rows), schema=parquet_schema())
    tmp = _atomic_target(Path(path))
    try:
        pq.write_table(table, tmp, compression="snappy")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return Path(path)


def write_jsonl(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """The same rows as JSON lines; ``unoptimized_compiled`` (bytes) becomes base64 text."""
    tmp = _atomic_target(Path(path))
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            for row in rows:
                extra = dict(row["extra_info"])
                binary = extra.get("unoptimized_compiled")
                if isinstance(binary, bytes | bytearray):
                    extra["unoptimized_compiled"] = base64.b64encode(binary).decode("ascii")
                handle.write(json.dumps({**row, "extra_info": extra}, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return Path(path)


# --------------------------------------------------------------------------- summaries


def summarize(dataset: DataSet) -> dict[str, Any]:
    """Counts and sizes for ``asmopt dataset show``."""
    problems = dataset.problems
    lines = [p.baseline_asm.count("\n") for p in problems]
    tests = [len(p.tests) for p in problems]
    splits: dict[str, int] = {}
    for p in problems:
        splits[p.split or "-"] = splits.get(p.split or "-", 0) + 1

    def stats(values: Sequence[int]) -> dict[str, float]:
        if not values:
            return {"min": 0, "mean": 0.0, "max": 0}
        return {"min": min(values), "mean": sum(values) / len(values), "max": max(values)}

    return {
        "origin": dataset.origin,
        "rows": len(problems),
        "skipped": list(dataset.skipped),
        "splits": splits,
        "with_c_source": sum(1 for p in problems if p.c_source is not None),
        "with_baseline_binary": sum(1 for p in problems if p.baseline_binary),
        "asm_lines": stats(lines),
        "tests_per_row": stats(tests),
        "first": [p.name for p in problems[:5]],
        "prompt_matches_template": _prompt_share(problems),
    }


def _prompt_share(problems: Sequence[Problem]) -> float | None:
    """Share of rows whose stored prompt is exactly the paper's template filled with the
    row's C and assembly (what asmopt's LLM policies send)."""
    checked = [p for p in problems if p.prompt and p.c_source is not None]
    if not checked:
        return None
    same = sum(
        1
        for p in checked
        if p.prompt[-1]["content"] == build_prompt(p.c_source or "", p.baseline_asm)
    )
    return same / len(checked)
