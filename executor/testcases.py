# Over 500 lines: comparing outputs and judging a run share the difference reports.
"""Test cases of a target: loading them from a directory, comparing output, judging runs.

A test directory holds ``NAME.in`` (stdin), ``NAME.out`` (expected stdout) and optionally
``NAME.args`` (command-line arguments, one per line); see DESIGN.md, "Formats". This module
turns that directory into :class:`TestCase` values, decides whether a program's output is
right (:class:`Comparator`), and maps one :class:`RunResult` to one :class:`TestVerdict`
(:func:`judge`). It runs nothing itself.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from asmopt.executor.results import RunResult, TestStatus, TestVerdict

__all__ = [
    "Comparator",
    "TestCase",
    "TestSetError",
    "judge",
    "load_tests",
    "natural_key",
    "tests_digest",
]

# Longest human explanation a verdict carries; it ends up in CodeLens and hover text.
MAX_DETAIL_CHARS = 300
# Longest excerpt of a line or token quoted in a diff.
_EXCERPT_CHARS = 80


class TestSetError(Exception):
    """A test directory is missing, malformed, or holds no tests."""

    __test__ = False  # not a pytest test class, despite its name


@dataclass(frozen=True)
class TestCase:
    """One test: what the program gets (stdin, arguments) and what it must print.

    ``expected`` is None when the directory has an input but no ``.out`` file: the
    baseline's (``gcc -O3``) output becomes the expected output.
    """

    __test__ = False  # not a pytest test class, despite its name

    name: str
    stdin: bytes
    expected: bytes | None
    args: tuple[str, ...] = ()


# --------------------------------------------------------------------------- loading


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders embedded numbers by value: ``t2`` before ``t10``.

    Ties between names that differ only in zero padding or case (``t02``/``t2``) are broken
    by the plain name so that the order is total and stable.
    """
    parts: list[tuple[int, int | str]] = []
    for i, chunk in enumerate(re.split(r"(\d+)", name)):
        # re.split with a group alternates text, number, text, ...
        parts.append((1, int(chunk)) if i % 2 else (0, chunk.casefold()))
    parts.append((2, name))
    return tuple(parts)


_SUFFIXES = (".in", ".out", ".args")


def load_tests(directory: Path) -> list[TestCase]:
    """Load every test in ``directory``, in natural order of their names.

    A test named NAME exists when ``NAME.in`` or ``NAME.out`` exists:

    - ``NAME.in`` and ``NAME.out``: stdin and expected stdout.
    - ``NAME.in`` only: expected output is None (taken from the baseline's run).
    - ``NAME.out`` only: empty stdin. Programs that read nothing (CodeNet has many) need
      no empty ``.in`` file.
    - ``NAME.args``: arguments, one per line (a final newline does not add an empty
      argument; an empty line in the middle is an empty argument). A ``.args`` file with
      neither ``.in`` nor ``.out`` is an error: it is almost always a misspelt name, and
      silently running it with empty input would hide that.

    Other files (README, hidden files) and subdirectories are ignored.

    Raises:
        TestSetError: the directory is missing or not a directory, holds no tests, has a
            stray ``.args`` file, or an ``.args`` file that is not UTF-8 text.
    """
    directory = Path(directory)
    looked_for = "NAME.in (stdin) with NAME.out (expected stdout), optional NAME.args"
    if not directory.exists():
        raise TestSetError(
            f"test directory not found: {directory}; create it and put tests in it "
            f"({looked_for}), or point the target's `tests` in asmopt.toml elsewhere"
        )
    if not directory.is_dir():
        raise TestSetError(
            f"tests must be a directory, but {directory} is a file; put tests in a "
            f"directory ({looked_for}) and point the target's `tests` at it"
        )

    files: dict[str, dict[str, Path]] = {}
    for path in directory.iterdir():
        if path.name.startswith(".") or path.suffix not in _SUFFIXES or not path.is_file():
            continue
        files.setdefault(path.stem, {})[path.suffix] = path

    tests: list[TestCase] = []
    for name in sorted(files, key=natural_key):
        parts = files[name]
        if ".in" not in parts and ".out" not in parts:
            raise TestSetError(
                f"{parts['.args']} has no matching {name}.in or {name}.out; rename it to "
                f"match a test, or add {name}.in (may be empty) to make it a test"
            )
        stdin = parts[".in"].read_bytes() if ".in" in parts else b""
        expected = parts[".out"].read_bytes() if ".out" in parts else None
        args = _read_args(parts[".args"]) if ".args" in parts else ()
        tests.append(TestCase(name=name, stdin=stdin, expected=expected, args=args))

    if not tests:
        raise TestSetError(
            f"no tests in {directory}: looked for {looked_for}; add at least one "
            f"NAME.in or NAME.out file"
        )
    return tests


def _read_args(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise TestSetError(
            f"{path} is not UTF-8 text (byte {error.start}); write one argument per line in UTF-8"
        ) from error
    if "\0" in text:
        # execve cannot pass a NUL inside an argument.
        raise TestSetError(f"{path} contains a NUL byte, which no argument can hold; remove it")
    # split("\n") rather than splitlines(): only newlines separate arguments, so a form
    # feed or other exotic line break inside an argument survives.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return tuple(line.removesuffix("\r") for line in lines)


def tests_digest(tests: Iterable[TestCase]) -> str:
    """SHA-256 (hex) of the tests' names, stdin, expected output and arguments, in order.

    Used in result-store keys: a changed test invalidates every stored verdict. Every
    field is length-prefixed, so no two different test lists hash the same bytes, and
    "expected from the baseline" (None) differs from "expected empty output".
    """
    digest = hashlib.sha256(b"asmopt-tests-v1\0")

    def field(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    for test in tests:
        field(test.name.encode("utf-8"))
        field(test.stdin)
        if test.expected is None:
            digest.update(b"N")
        else:
            digest.update(b"E")
            field(test.expected)
        digest.update(len(test.args).to_bytes(8, "little"))
        for arg in test.args:
            field(arg.encode("utf-8"))
    return digest.hexdigest()


# --------------------------------------------------------------------------- comparing

# What C's printf can print for a floating-point value (%f, %e, %g and their upper-case
# forms). Python's float() alone would also accept "1_000" and stray whitespace.
_FLOAT_TOKEN = re.compile(
    rb"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?)",
    re.IGNORECASE,
)
_TOKEN = re.compile(rb"\S+")
_SPACE = re.compile(rb"\s+")
# Tokens compared one by one before the whole output is looked at (see Comparator.compare).
_EARLY_TOKENS = 1000


_BATCH_BYTES = 1 << 20


def _token_batches(data: bytes) -> Iterator[list[bytes]]:
    """The tokens of ``data``, a list per megabyte or so (cut at white space)."""
    start, end_of_data = 0, len(data)
    while start < end_of_data:
        end = start + _BATCH_BYTES
        if end < end_of_data:
            space = _SPACE.search(data, end)
            end = space.start() if space else end_of_data
        else:
            end = end_of_data
        tokens = data[start:end].split()
        if tokens:
            yield tokens
        start = end


def _same_tokens(
    actual: bytes, expected: bytes, match: Callable[[bytes, bytes], bool] | None
) -> bool:
    """Whether both hold the same tokens (``match`` decides, else equality), read a batch at
    a time so that memory stays a few times a megabyte whatever the outputs' size."""
    got, want = _token_batches(actual), _token_batches(expected)
    a: list[bytes] = []
    b: list[bytes] = []
    while True:
        if not a:
            a = next(got, [])
        if not b:
            b = next(want, [])
        if not a or not b:
            return not a and not b
        k = min(len(a), len(b))
        if match is None:
            if a[:k] != b[:k]:
                return False
        elif not all(map(match, a[:k], b[:k])):
            return False
        a, b = a[k:], b[k:]


def _parse_float(token: bytes) -> float | None:
    if not _FLOAT_TOKEN.fullmatch(token):
        return None
    text = token.decode("ascii")
    if "nan" in text.lower():
        return math.nan  # "-nan" and "nan(0x...)" are still NaN
    return float(text)


def _show(data: bytes, around: int = 0) -> str:
    """Quote a line or token for a human: control and non-UTF-8 bytes escaped, long text
    cut to a window that starts a little before index ``around`` (the first difference)."""
    start = max(0, around - 20) if len(data) > _EXCERPT_CHARS else 0
    piece = data[start : start + _EXCERPT_CHARS]
    text = piece.decode("utf-8", "backslashreplace")
    text = "".join(
        {"\t": "\\t", "\r": "\\r", "\n": "\\n"}.get(c, f"\\x{ord(c):02x}")
        if ord(c) < 0x20 or ord(c) == 0x7F
        else c
        for c in text
    )
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + _EXCERPT_CHARS < len(data) else ""
    return f'"{prefix}{text}{suffix}"'


def _first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def _clip(message: str) -> str:
    if len(message) <= MAX_DETAIL_CHARS:
        return message
    return message[: MAX_DETAIL_CHARS - 1] + "…"


@dataclass(frozen=True)
class Comparator:
    """How a program's stdout is checked against the expected output.

    - ``exact``: byte for byte.
    - ``tokens`` (default, CodeNet style): the same whitespace-separated tokens; amount
      and kind of whitespace (spaces, tabs, newlines, a trailing newline) do not matter.
    - ``floats``: like ``tokens``, but two tokens that both read as numbers also match
      when ``math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)``; NaN matches NaN and
      an infinity matches the infinity of the same sign.
    """

    mode: Literal["exact", "tokens", "floats"] = "tokens"
    rel_tol: float = 1e-6
    abs_tol: float = 1e-9

    def __post_init__(self) -> None:
        if self.mode not in ("exact", "tokens", "floats"):
            raise ValueError(
                f"unknown comparison mode {self.mode!r}: use 'exact', 'tokens' or 'floats'"
            )
        if not (self.rel_tol >= 0 and self.abs_tol >= 0):  # also rejects NaN
            raise ValueError(
                f"tolerances must be >= 0, got rel_tol={self.rel_tol}, abs_tol={self.abs_tol}"
            )

    def compare(self, actual: bytes, expected: bytes) -> tuple[bool, str]:
        """Return (matches, explanation); the explanation is "" on a match and otherwise a
        short (at most 300 characters) description of the first difference."""
        if actual == expected:
            return True, ""
        if self.mode == "exact":
            return False, _clip(_exact_diff(actual, expected))
        # Never a list of every token at once: a hostile output of 64 MiB of one-letter
        # tokens would cost the judge gigabytes. Most wrong outputs differ early, so the first
        # tokens are looked at alone; then the token lists of one megabyte after another.
        if not self._first_tokens_agree(actual, expected):
            return False, _clip(self._token_diff(actual, expected))
        if _same_tokens(actual, expected, None if self.mode == "tokens" else self._tokens_match):
            return True, ""
        return False, _clip(self._token_diff(actual, expected))

    def _first_tokens_agree(self, actual: bytes, expected: bytes) -> bool:
        got, want = _TOKEN.finditer(actual), _TOKEN.finditer(expected)
        for g, w in itertools.islice(itertools.zip_longest(got, want), _EARLY_TOKENS):
            if g is None or w is None or not self._tokens_match(g.group(), w.group()):
                return False
        return True

    def _tokens_match(self, actual: bytes, expected: bytes) -> bool:
        if actual == expected:
            return True
        if self.mode != "floats":
            return False
        a, e = _parse_float(actual), _parse_float(expected)
        if a is None or e is None:
            return False
        if math.isnan(a) or math.isnan(e):
            return math.isnan(a) and math.isnan(e)
        # isclose treats inf == inf (same sign) as close and inf vs finite as not close.
        return math.isclose(a, e, rel_tol=self.rel_tol, abs_tol=self.abs_tol)

    def _token_diff(self, actual: bytes, expected: bytes) -> str:
        got = _TOKEN.finditer(actual)
        want = _TOKEN.finditer(expected)
        index = 0
        while True:
            g, w = next(got, None), next(want, None)
            index += 1
            if g is None and w is None:
                return "outputs differ"  # unreachable: the token lists were unequal
            if g is None:
                assert w is not None
                return (
                    f"output ends early: token {index} (line "
                    f"{_line_of(expected, w.start())} of expected) should be "
                    f"{_show(w.group())}, got end of output"
                )
            if w is None:
                return (
                    f"extra output: token {index} (line {_line_of(actual, g.start())}) is "
                    f"{_show(g.group())}, expected end of output"
                )
            if not self._tokens_match(g.group(), w.group()):
                at = _first_difference(g.group(), w.group())
                message = (
                    f"token {index} (line {_line_of(actual, g.start())}): expected "
                    f"{_show(w.group(), at)}, got {_show(g.group(), at)}"
                )
                return message + self._tolerance_note(g.group(), w.group())

    def _tolerance_note(self, actual: bytes, expected: bytes) -> str:
        if self.mode != "floats":
            return ""
        a, e = _parse_float(actual), _parse_float(expected)
        if a is None or e is None or math.isnan(a) or math.isnan(e):
            return ""
        return f" (off by {abs(a - e):.3g}; rel_tol {self.rel_tol:g}, abs_tol {self.abs_tol:g})"


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _exact_diff(actual: bytes, expected: bytes) -> str:
    got_lines = actual.split(b"\n")
    want_lines = expected.split(b"\n")
    for number, (g, w) in enumerate(zip(got_lines, want_lines, strict=False), start=1):
        if g != w:
            # A final empty piece is the end of the output, not an empty line.
            if number == len(got_lines) and not g:
                return f"output ends early at line {number}: expected {_show(w)}"
            if number == len(want_lines) and not w:
                return f"extra output at line {number}: {_show(g)}"
            at = _first_difference(g, w)
            return f"line {number}, column {at + 1}: expected {_show(w, at)}, got {_show(g, at)}"
    # One is a prefix of the other, line by line.
    if len(got_lines) < len(want_lines):
        if len(want_lines) == len(got_lines) + 1 and want_lines[-1] == b"":
            return "missing newline at the end of the output"
        return (
            f"output ends early after line {len(got_lines)}: expected line "
            f"{len(got_lines) + 1} {_show(want_lines[len(got_lines)])}"
        )
    if len(got_lines) == len(want_lines) + 1 and got_lines[-1] == b"":
        return "extra newline at the end of the output"
    return f"extra output from line {len(want_lines) + 1}: {_show(got_lines[len(want_lines)])}"


# --------------------------------------------------------------------------- judging


def _signal_name(number: int) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
    description = signal.strsignal(number)
    return f"{name} ({description.lower()})" if description else name


def _first_line(data: bytes) -> str:
    for line in data.splitlines():
        text = line.decode("utf-8", "backslashreplace").strip()
        if text:
            return text[: _EXCERPT_CHARS * 2]
    return ""


def judge(
    test: TestCase,
    run: RunResult,
    comparator: Comparator,
    expected: bytes | None = None,
) -> TestVerdict:
    """Turn one run of ``test`` into its verdict.

    ``expected`` (normally the baseline's stdout) overrides ``test.expected``. The first
    matching rule wins, in this order:

    1. ``SANDBOX_VIOLATION``: the seccomp filter killed it. A security event outranks
       everything, and its SIGSYS must not read as an ordinary crash.
    2. ``TIMED_OUT``, 3. ``OUTPUT_TOO_LARGE``, 4. ``OUT_OF_MEMORY``: the executor killed
       it for exceeding a limit; the kill signal (or a write error after the output cap)
       is a consequence, not the program's own crash.
    5. ``CRASHED``: killed by a signal, e.g. "SIGSEGV (segmentation fault)".
    6. ``NONZERO_EXIT``: "exit code 3" and the first line of stderr. A non-zero exit
       fails even if stdout is right, as in the paper.
    7. ``WRONG_OUTPUT`` with a short diff, else ``PASSED``.

    Raises:
        ValueError: neither ``expected`` nor ``test.expected`` is given. This is checked
            before anything else so that a missing baseline output is never hidden by a
            crashing candidate.
    """
    want = expected if expected is not None else test.expected
    if want is None:
        raise ValueError(
            f"test {test.name!r} has no expected output: it has no .out file, so pass the "
            f"baseline's stdout as judge(..., expected=...)"
        )

    def verdict(status: TestStatus, detail: str = "") -> TestVerdict:
        return TestVerdict(test.name, status, _clip(detail), run.cpu_seconds)

    stderr_line = _first_line(run.stderr)
    if run.sandbox_violation:
        return verdict(
            TestStatus.SANDBOX_VIOLATION,
            "a forbidden system call was blocked by the sandbox (seccomp)",
        )
    if run.timed_out:
        return verdict(
            TestStatus.TIMED_OUT,
            f"killed after {run.wall_seconds:.2f} s wall, {run.cpu_seconds:.2f} s CPU "
            "(the test_timeout setting)",
        )
    if run.output_truncated:
        return verdict(
            TestStatus.OUTPUT_TOO_LARGE,
            f"wrote more than the output limit (kept {len(run.stdout)} bytes; the "
            "max_output_mb setting raises it)",
        )
    if run.out_of_memory:
        return verdict(
            TestStatus.OUT_OF_MEMORY,
            f"ran out of memory (peak {run.max_rss_kib} KiB; the memory_mb setting raises it)",
        )
    if run.signal is not None:
        detail = f"killed by {_signal_name(run.signal)}"
        return verdict(TestStatus.CRASHED, f"{detail}: {stderr_line}" if stderr_line else detail)
    if run.exit_code is None:
        return verdict(TestStatus.CRASHED, "ended with neither an exit code nor a signal")
    if run.exit_code != 0:
        detail = f"exit code {run.exit_code}"
        return verdict(
            TestStatus.NONZERO_EXIT, f"{detail}: {stderr_line}" if stderr_line else detail
        )
    ok, diff = comparator.compare(run.stdout, want)
    if not ok:
        return verdict(TestStatus.WRONG_OUTPUT, diff)
    return verdict(TestStatus.PASSED)
