"""One settings type for `asmopt.toml`, command-line flags and the editor's settings.

The same field names are used everywhere: snake_case in TOML and Python, camelCase on the
LSP wire (``maxNewTokens``); both spellings are accepted on input. Targets (what to build and
which tests to run) come from ``[[target]]`` tables in the workspace's ``asmopt.toml``, or,
without one, from the defaults of DESIGN.md: a C file with ``main`` is its own target and its
tests are the ``tests/`` directory beside it.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from asmopt.executor.sandbox import MiB, SandboxLimits

POLICY_NAMES = ("compiler", "transformers", "openai", "vllm")
COMPARE_MODES = ("tokens", "exact", "floats")
# x86-64 micro-architecture levels (the psABI's): what the code may assume of the CPU it runs
# on. "x86-64" is the portable baseline every x86-64 CPU runs.
MARCH_LEVELS = ("x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4")
CONFIG_FILE = "asmopt.toml"


class SettingsError(ValueError):
    """A setting has the wrong type or value; the message names it and says what fits."""


@dataclass(frozen=True)
class Settings:
    """Everything a user can choose about an optimization run."""

    policies: tuple[str, ...] = ("compiler",)  # plus any configured LLM back-end
    model: str | None = None  # checkpoint directory or .gguf (transformers, vllm)
    endpoint: str | None = None  # OpenAI-compatible base URL (openai)
    samples: int = 4
    temperature: float = 0.5
    max_new_tokens: int = 2000
    llm_timeout: float = 300.0  # seconds for one generation request
    test_timeout: float = 10.0  # wall seconds a test may run at most
    # What a program under test may use; raise them for programs that need more.
    max_output_mb: int = SandboxLimits().output_bytes // MiB  # stdout + stderr of one run
    memory_mb: int = SandboxLimits().memory_bytes // MiB  # address space of one run
    sandbox: bool = True
    compiler: str = "gcc"
    cflags: tuple[str, ...] = ("-O3",)
    allow_native: bool = False  # may candidates use -march=native (non-portable)?
    # The level of CPU the code will run on: above the baseline, candidates built for it
    # are tried too (labelled with what they require).
    march_level: str = "x86-64"
    ci_target: float = 0.02  # stop timing when the 95% CI half-width is within this
    bench_budget: float = 60.0  # seconds of benchmarking per candidate at most
    compare: str = "tokens"
    tolerance: float = 1e-6
    workers: int = 0  # 0: one per core
    # Race candidates: stop timing those that surely cannot win (executor.benchmark).
    racing: bool = True
    # Optimize even a program whose run is mostly process start-up and libc (by its
    # instruction profile); without it the job says so and stops.
    go_on: bool = False

    def effective_policies(self) -> tuple[str, ...]:
        """The policies to run: those asked for, plus any LLM back-end that is configured
        when the user left the default."""
        policies = list(self.policies)
        if policies == ["compiler"]:
            if self.endpoint:
                policies.append("openai")
            elif self.model:
                policies.append("transformers")
        return tuple(policies)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated (None values are ignored)."""
        return Settings.from_mapping(changes, base=self)

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, base: Settings | None = None) -> Settings:
        """Settings from a TOML table or an LSP settings object; unknown keys are errors so
        that a typo never passes silently."""
        base = base or cls()
        if not data:
            return base
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for raw_key, value in data.items():
            key = _snake(raw_key)
            if key not in known:
                close = ", ".join(sorted(known))
                raise SettingsError(f"unknown setting {raw_key!r}; known settings: {close}")
            if value is None:
                continue
            values[key] = _coerce(key, value, known[key].type)
        result = dataclasses.replace(base, **values)
        result.validate()
        return result

    def validate(self) -> None:
        for policy in self.policies:
            if policy not in POLICY_NAMES:
                raise SettingsError(
                    f"unknown policy {policy!r}: choose from {', '.join(POLICY_NAMES)}"
                )
        if self.samples < 1:
            raise SettingsError("samples must be at least 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise SettingsError("temperature must be between 0 and 2")
        if self.march_level not in MARCH_LEVELS:
            raise SettingsError(f"march_level must be one of {', '.join(MARCH_LEVELS)}")
        if self.compare not in COMPARE_MODES:
            raise SettingsError(f"compare must be one of {', '.join(COMPARE_MODES)}")
        for name in ("test_timeout", "llm_timeout", "bench_budget", "ci_target"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")
        for name in ("max_output_mb", "memory_mb"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1")
        if self.workers < 0:
            raise SettingsError("workers must be 0 (one per core) or more")

    def to_dict(self, camel: bool = False) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
        return {_camel(k): v for k, v in data.items()} if camel else data


@dataclass(frozen=True)
class Target:
    """A program to optimize: its sources, how to build it, and its tests."""

    name: str
    sources: tuple[Path, ...]
    tests: Path | None
    args: tuple[str, ...] = ()
    compiler: str | None = None
    cflags: tuple[str, ...] | None = None
    ldflags: tuple[str, ...] = ("-lm",)
    compare: str | None = None
    benchmark_tests: tuple[str, ...] | None = None  # None: time every test

    def owns(self, path: Path) -> bool:
        path = path.resolve()
        return any(path == src.resolve() for src in self.sources)


@dataclass(frozen=True)
class Config:
    """A workspace's `asmopt.toml`: settings plus targets."""

    root: Path
    settings: Settings = field(default_factory=Settings)
    targets: tuple[Target, ...] = ()

    def target_for(self, source: Path) -> Target | None:
        """The configured target that builds ``source``, else the default target for it."""
        for target in self.targets:
            if target.owns(source):
                return target
        return default_target(source)


def default_target(source: Path) -> Target | None:
    """DESIGN.md's default: a C (or assembly) file is its own target; its tests are the
    ``tests/`` directory beside it (or ``<stem>_tests/``, or ``tests/<stem>/``)."""
    source = source.resolve()
    folder = source.parent
    for candidate in (folder / f"{source.stem}_tests", folder / "tests" / source.stem,
                      folder / "tests"):  # fmt: skip
        if candidate.is_dir():
            return Target(name=source.stem, sources=(source,), tests=candidate)
    return Target(name=source.stem, sources=(source,), tests=None)


def has_main(c_text: str) -> bool:
    return re.search(r"\bint\s+main\s*\(", c_text) is not None


def load_config(root: Path) -> Config:
    """Read ``root/asmopt.toml`` if it exists; a missing file gives the defaults."""
    root = Path(root)
    path = root / CONFIG_FILE
    if not path.exists():
        return Config(root=root)
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise SettingsError(f"{path}: not valid TOML: {err}") from err
    settings_table = data.get("settings", {})
    if not isinstance(settings_table, dict):
        raise SettingsError(f"{path}: [settings] must be a table")
    try:
        settings = Settings.from_mapping(settings_table)
    except SettingsError as err:
        raise SettingsError(f"{path}: {err}") from err
    targets = []
    for i, table in enumerate(data.get("target", [])):
        if not isinstance(table, dict) or "name" not in table or "sources" not in table:
            raise SettingsError(f"{path}: [[target]] #{i + 1} needs at least name and sources")
        unknown = set(table) - {"name", "sources", "tests", "args", "compiler", "cflags",
                                "ldflags", "compare", "benchmark_tests"}  # fmt: skip
        if unknown:
            raise SettingsError(f"{path}: [[target]] {table['name']}: unknown keys {unknown}")
        targets.append(
            Target(
                name=str(table["name"]),
                sources=tuple((root / s).resolve() for s in _str_list(table["sources"])),
                tests=(root / table["tests"]).resolve() if table.get("tests") else None,
                args=tuple(_str_list(table.get("args", []))),
                compiler=table.get("compiler"),
                cflags=tuple(_split_flags(table["cflags"])) if "cflags" in table else None,
                ldflags=tuple(_split_flags(table.get("ldflags", ["-lm"]))),
                compare=table.get("compare"),
                benchmark_tests=tuple(_str_list(table["benchmark_tests"]))
                if "benchmark_tests" in table
                else None,
            )
        )
    return Config(root=root, settings=settings, targets=tuple(targets))


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise SettingsError(f"expected a string or a list of strings, got {value!r}")


def _split_flags(value: Any) -> list[str]:
    return value.split() if isinstance(value, str) else _str_list(value)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower().replace("-", "_")


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    kind = str(annotation)
    try:
        if "tuple" in kind:
            return tuple(_split_flags(value)) if key == "cflags" else tuple(_str_list(value))
        if kind.startswith("bool"):
            if isinstance(value, bool):
                return value
            raise TypeError
        if kind.startswith("int"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError
            if int(value) != value:
                raise TypeError
            return int(value)
        if kind.startswith("float"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError
            return float(value)
        if "str" in kind:
            if not isinstance(value, str):
                raise TypeError
            return value or None if "None" in kind else value
    except (TypeError, SettingsError) as err:
        raise SettingsError(
            f"setting {key!r} has the wrong type: {value!r} (expected {kind})"
        ) from err
    return value
