"""One settings type for `asmopt.toml`, command-line flags and the editor's settings.

The same field names are used everywhere: snake_case in TOML and Python, camelCase on the
LSP wire (``maxNewTokens``); both spellings are accepted on input. Targets (what to build and
which tests to run) come from ``[[target]]`` tables in the workspace's ``asmopt.toml``, or,
without one, from the defaults of DESIGN.md: a C file with ``main`` is its own target and its
tests are the ``tests/`` directory beside it.

A target can also name its sources by glob (``src/*.c``) and give its tests and benchmark as
commands (``test_command``, ``bench_command``) that run the built program, whose path is
written ``{bin}``; a library file without ``main`` is optimized through the target whose
program calls it (:meth:`Config.targets_containing`, :func:`starter_target`).

:class:`Workspace` decides, for the CLI and the editor alike, which ``asmopt.toml`` applies
and where the result store is. (Over 500 lines because settings, targets and the workspace
are one configuration, read together: split, each part would import the others.)
"""

from __future__ import annotations

import dataclasses
import glob
import re
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmopt.executor.sandbox import MiB, SandboxLimits

if TYPE_CHECKING:
    from asmopt.executor.store import ResultStore

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
    refine_rounds: int = 1  # revisions after the verifier's findings (0: plain sampling)
    tensor_parallel_size: int = 1  # vllm: GPUs one model is split over
    max_model_len: int = 8192  # vllm: prompt + answer tokens at most
    # openai: bearer token (else $ASMOPT_API_KEY, then $OPENAI_API_KEY); never printed
    api_key: str | None = field(default=None, repr=False)
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
    # Stop timing when the 95% CI half-width is within this share of the median. ±3%, not
    # ±2%: the CI misses as rarely (bench/ci_coverage.py), and where rounds spread 5% (a busy
    # 2-core machine) it takes half the rounds; set 0.02 for the narrower figure.
    ci_target: float = 0.03
    bench_budget: float = 60.0  # seconds of benchmarking per measurement (a screening: half)
    compare: str = "tokens"
    tolerance: float = 1e-6
    workers: int = 0  # 0: one per core
    # Race candidates: stop timing those that surely cannot win (executor.benchmark).
    racing: bool = True
    # Optimize even a program whose run is mostly process start-up and libc (by its
    # instruction profile); without it the job says so and stops.
    go_on: bool = False
    # The editor profiles a file's target (valgrind instructions per function, in the
    # sandbox) when the file is opened, to show each function's share in its lens; off: only
    # when asked (the "hottest functions" command).
    profile_on_open: bool = True
    # compile_commands.json (or the folder that holds it) relative to the workspace; unset:
    # the workspace root, then build/ (see compile_db.py)
    compile_commands: str | None = None

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
        if self.refine_rounds < 0:
            raise SettingsError("refine_rounds must be 0 (no revisions) or more")
        for name in ("tensor_parallel_size", "max_model_len", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1")
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
    # Tests and benchmark as commands that run the built program ({bin}): a string runs in
    # /bin/sh, a list is one argv. Each passes on exit 0 with the output ``*_output`` names.
    test_command: str | tuple[str, ...] | None = None
    bench_command: str | tuple[str, ...] | None = None
    test_output: str | None = None  # None: the baseline's stdout; "ignore"; or a file
    bench_output: str | None = None
    root: Path | None = None  # the folder of the asmopt.toml that declared it

    def owns(self, path: Path) -> bool:
        path = path.resolve()
        return any(path == src.resolve() for src in self.sources)

    @property
    def has_commands(self) -> bool:
        return self.test_command is not None or self.bench_command is not None


@dataclass(frozen=True)
class Config:
    """A workspace's `asmopt.toml`: settings plus targets."""

    root: Path
    settings: Settings = field(default_factory=Settings)
    targets: tuple[Target, ...] = ()

    def target_for(self, source: Path) -> Target | None:
        """The configured target that builds ``source`` (the first one in ``asmopt.toml``
        when several do), else the default target for it."""
        for target in self.targets:
            if target.owns(source):
                return target
        return default_target(source)

    def targets_containing(self, source: Path) -> tuple[Target, ...]:
        """Every configured target whose sources include ``source``, in file order."""
        return tuple(t for t in self.targets if t.owns(source))

    def target_named(self, name: str) -> Target:
        for target in self.targets:
            if target.name == name:
                return target
        known = ", ".join(t.name for t in self.targets) or "none"
        raise SettingsError(f"no target {name!r} in {self.root / CONFIG_FILE} (targets: {known})")


def config_root(source: Path, workspace: Path | None = None) -> Path:
    """The folder whose ``asmopt.toml`` governs ``source`` (or should: where a new one goes).

    The nearest folder upwards from the file, not above ``workspace`` (when given), that
    holds an ``asmopt.toml``; else the nearest that looks like a project's root (its
    ``compile_commands.json``, at the root or in ``build/``, or ``.git``); else
    ``workspace`` or the file's folder.
    """
    start = Path(source).resolve().parent
    top = Path(workspace).resolve() if workspace is not None else None
    folders = [start]
    for folder in start.parents:
        if folders[-1] == top:
            break
        folders.append(folder)
    for marks in ((CONFIG_FILE,), PROJECT_MARKERS):
        for folder in folders:
            if any((folder / mark).exists() for mark in marks):
                return folder
    return top or start


# What marks a project's root when it has no asmopt.toml yet.
PROJECT_MARKERS = ("compile_commands.json", "build/compile_commands.json", ".git")


def starter_target(source: Path, root: Path) -> str:
    """A starter ``[[target]]`` entry for a file without ``main``, for the user to finish:
    the program that calls its functions (a test runner or benchmark) goes in ``sources``,
    and the commands that run it in ``test_command`` / ``bench_command``."""
    source = Path(source).resolve()
    try:
        rel = source.relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        rel = source.as_posix()
    harness = _guess_harness(source, Path(root))
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", source.stem) or "target"
    lines = [
        "[[target]]",
        f'name = "{name}"',
        "# this file, plus the program that calls its functions (your test runner or",
        '# benchmark, the file with main); globs work: "src/*.c"',
        f'sources = ["{rel}", "{harness}"]',
        "# run the built program ({bin}); exit status 0 passes; its output must match",
        '# the gcc -O3 build\'s unless test_output = "ignore" or names a file',
        'test_command = "{bin}"',
        "# what to time (default: the test command)",
        '# bench_command = "{bin} 100000"',
    ]
    return "\n".join(lines) + "\n"


def _guess_harness(source: Path, root: Path) -> str:
    """The likeliest program calling ``source``'s functions: a C file with ``main`` that
    includes a header named after it (a test runner before a benchmark), else a
    placeholder."""
    header = f'"{source.stem}.h"'
    try:
        # A test runner first, then a benchmark, then anything else.
        candidates = sorted(
            root.resolve().rglob("*.c"),
            key=lambda p: ("test" not in str(p).lower(), "bench" not in str(p).lower(), p),
        )[:2000]
    except OSError:
        candidates = []
    for path in candidates:
        if path == source or any(part.startswith(".") for part in path.parts):
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if has_main(text) and (header in text or f"/{source.stem}.h" in text):
            try:
                return path.relative_to(root.resolve()).as_posix()
            except ValueError:
                return path.as_posix()
    return "tests/test_main.c"


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
        unknown = set(table) - _TARGET_KEYS
        if unknown:
            raise SettingsError(
                f"{path}: [[target]] {table['name']}: unknown keys {', '.join(sorted(unknown))}"
                f"; known keys: {', '.join(sorted(_TARGET_KEYS))}"
            )
        where = f"{path}: [[target]] {table['name']}"
        commands: dict[str, Any] = {key: _command(table.get(key), where, key)
                    for key in ("test_command", "bench_command")}  # fmt: skip
        outputs: dict[str, Any] = {key: _output(table.get(key), where, key)
                   for key in ("test_output", "bench_output")}  # fmt: skip
        if table.get("tests") and commands["test_command"] is not None:
            raise SettingsError(
                f"{where}: give either tests (a folder of NAME.in/NAME.out) or test_command, "
                "not both"
            )
        targets.append(
            Target(
                name=str(table["name"]),
                sources=_sources(root, table["sources"], where),
                tests=(root / table["tests"]).resolve() if table.get("tests") else None,
                args=tuple(_str_list(table.get("args", []))),
                compiler=table.get("compiler"),
                cflags=tuple(_split_flags(table["cflags"])) if "cflags" in table else None,
                ldflags=tuple(_split_flags(table.get("ldflags", ["-lm"]))),
                compare=table.get("compare"),
                benchmark_tests=tuple(_str_list(table["benchmark_tests"]))
                if "benchmark_tests" in table
                else None,
                root=root.resolve(),
                **commands,
                **outputs,
            )
        )
    return Config(root=root, settings=settings, targets=tuple(targets))


_TARGET_KEYS = {
    "name", "sources", "tests", "args", "compiler", "cflags", "ldflags", "compare",
    "benchmark_tests", "test_command", "bench_command", "test_output", "bench_output",
}  # fmt: skip


def _sources(root: Path, value: Any, where: str) -> tuple[Path, ...]:
    """The target's sources, globs expanded (sorted, each file once, in the order given)."""
    found: list[Path] = []
    for pattern in _str_list(value):
        if glob.has_magic(pattern):
            matches = sorted(Path(p).resolve() for p in glob.glob(str(root / pattern),
                                                                  recursive=True))  # fmt: skip
            matches = [m for m in matches if m.is_file()]
            if not matches:
                raise SettingsError(
                    f"{where}: sources pattern {pattern!r} matches no file under {root}; "
                    "fix the pattern (it is relative to the folder of asmopt.toml)"
                )
        else:
            matches = [(root / pattern).resolve()]
        found += [m for m in matches if m not in found]
    return tuple(found)


def _command(value: Any, where: str, key: str) -> str | tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise SettingsError(f"{where}: {key} is empty")
        try:
            shlex.split(value)
        except ValueError as err:
            raise SettingsError(
                f"{where}: {key} cannot be parsed as a shell command: {err}"
            ) from err
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise SettingsError(
        f"{where}: {key} must be a shell command (a string) or an argument list, with "
        '{bin} for the built program, e.g. "{bin} --check"'
    )


def _output(value: Any, where: str, key: str) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise SettingsError(
        f'{where}: {key} must be "ignore" or the path of a file with the expected output'
    )


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


@dataclass(frozen=True)
class Workspace:
    """Where a file's job lives, decided once for the CLI and the editor alike: ``root`` is
    the folder of the nearest ``asmopt.toml`` upwards from the file (see :func:`config_root`),
    ``config`` what that file says (read once), and the result store is ``root/.asmopt/``.

    ``problem`` says why the ``asmopt.toml`` could not be used when it was read leniently (the
    editor goes on with the defaults); strictly read, the error is raised instead."""

    root: Path
    config: Config
    problem: str | None = None

    @classmethod
    def of(cls, source: Path, top: Path | None = None, *, strict: bool = True) -> Workspace:
        """The workspace of ``source``; ``top`` (the editor's folder) bounds the search.
        Strict: a broken ``asmopt.toml`` raises :class:`SettingsError`."""
        root = config_root(source, top)
        try:
            return cls(root, load_config(root))
        except SettingsError as err:
            if strict:
                raise
            return cls(root, Config(root=root), str(err))
        except OSError as err:
            if strict:
                raise SettingsError(f"{root / CONFIG_FILE} cannot be read: {err}") from err
            return cls(root, Config(root=root), f"{root / CONFIG_FILE} cannot be read: {err}")

    def open_store(self, warn: Callable[[str], None] | None = None) -> ResultStore:
        """The result store under ``root``, best effort: one that cannot be used (corrupt and
        moved aside, a read-only workspace, a symbolic link) costs a warning (``warn``),
        never the result."""
        return open_store(self.root, warn)


def open_store(root: Path, warn: Callable[[str], None] | None = None) -> ResultStore:
    """The best-effort result store of the workspace whose root is ``root``."""
    from asmopt.executor.store import ResultStore

    return ResultStore(root, best_effort=True, warn=warn)
