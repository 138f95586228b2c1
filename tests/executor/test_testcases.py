"""Loading test directories, comparing outputs, and judging runs."""

from __future__ import annotations

import math
import signal
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asmopt.executor.results import RunResult
from asmopt.executor.results import TestStatus as Status  # not a test class
from asmopt.executor.testcases import (
    MAX_DETAIL_CHARS,
    Comparator,
    TestCase,
    TestSetError,
    judge,
    load_tests,
    natural_key,
)
from asmopt.executor.testcases import tests_digest as digest_of  # "test*" names get collected


def write(directory: Path, files: Mapping[str, bytes | str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (directory / name).write_bytes(data)
    return directory


def ok_run(stdout: bytes = b"", **changes: Any) -> RunResult:
    run = RunResult(
        exit_code=0, signal=None, stdout=stdout, stderr=b"", cpu_seconds=0.25, wall_seconds=0.3
    )
    return replace(run, **changes)


# --------------------------------------------------------------------------- loading


def test_loads_pairs_inputs_only_outputs_only_and_args(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a.in": "1 2\n",
            "a.out": "3\n",
            "b.in": b"\x00\xff",
            "c.out": "hello\n",
            "c.args": "--fast\n\nlast arg\r\n",
        },
    )
    tests = load_tests(tmp_path)
    assert tests == [
        TestCase("a", b"1 2\n", b"3\n", ()),
        TestCase("b", b"\x00\xff", None, ()),  # expected comes from the baseline
        TestCase("c", b"", b"hello\n", ("--fast", "", "last arg")),  # no .in: empty stdin
    ]


def test_natural_order_of_names(tmp_path: Path) -> None:
    names = ["t10", "t2", "t1", "sample", "t02", "T3", "input_100", "input_9"]
    write(tmp_path, {f"{n}.in": "" for n in names})
    assert [t.name for t in load_tests(tmp_path)] == [
        "input_9",
        "input_100",
        "sample",
        "t1",
        "t02",
        "t2",
        "T3",
        "t10",
    ]


@given(st.lists(st.integers(0, 10**6), unique=True, min_size=1))
def test_natural_key_orders_numbers_by_value(numbers: list[int]) -> None:
    names = [f"test{n}" for n in numbers]
    assert sorted(names, key=natural_key) == [f"test{n}" for n in sorted(numbers)]


def test_other_files_hidden_files_and_folders_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, {"t1.in": "x", "README.md": "hi", ".t2.in": "hidden", "t3.ans": "?"})
    (tmp_path / "t4.in").mkdir()
    assert [t.name for t in load_tests(tmp_path)] == ["t1"]


def test_names_may_contain_dots(tmp_path: Path) -> None:
    write(tmp_path, {"case.1.in": "a", "case.1.out": "b"})
    assert load_tests(tmp_path) == [TestCase("case.1", b"a", b"b")]


def test_missing_directory_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(TestSetError, match=r"not found: .*nope.*NAME\.in.*asmopt\.toml"):
        load_tests(tmp_path / "nope")


def test_file_instead_of_directory(tmp_path: Path) -> None:
    write(tmp_path, {"tests": "x"})
    with pytest.raises(TestSetError, match="must be a directory"):
        load_tests(tmp_path / "tests")


@pytest.mark.parametrize("files", [{}, {"README": "no tests here", "t1.ans": "1"}])
def test_no_tests_names_the_expected_files(tmp_path: Path, files: dict[str, str]) -> None:
    write(tmp_path / "tests", files)
    with pytest.raises(TestSetError, match=r"no tests in .*tests: looked for NAME\.in"):
        load_tests(tmp_path / "tests")


def test_args_without_a_test_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"t1.in": "", "t01.args": "-v\n"})
    with pytest.raises(TestSetError, match=r"t01\.args has no matching t01\.in or t01\.out"):
        load_tests(tmp_path)


def test_args_must_be_text(tmp_path: Path) -> None:
    write(tmp_path, {"t1.in": "", "t1.args": b"\xff\xfe"})
    with pytest.raises(TestSetError, match="not UTF-8"):
        load_tests(tmp_path)
    write(tmp_path, {"t1.args": "a\0b"})
    with pytest.raises(TestSetError, match="NUL"):
        load_tests(tmp_path)


def test_digest_is_stable_and_sees_every_field() -> None:
    base = [TestCase("t1", b"in", b"out", ("a",)), TestCase("t2", b"", None)]
    digest = digest_of(base)
    assert digest == digest_of(list(base)) and len(digest) == 64
    variants = [
        [replace(base[0], name="t3"), base[1]],
        [replace(base[0], stdin=b"in2"), base[1]],
        [replace(base[0], expected=b"out2"), base[1]],
        [replace(base[0], args=("b",)), base[1]],
        [replace(base[0], args=("a", "")), base[1]],
        [base[0], replace(base[1], expected=b"")],  # baseline-expected != expected empty
        [base[1], base[0]],
        [base[0]],
    ]
    digests = {digest_of(v) for v in variants}
    assert digest not in digests and len(digests) == len(variants)
    # Field boundaries are part of the hash.
    assert digest_of([TestCase("t", b"ab", b"c")]) != digest_of([TestCase("t", b"a", b"bc")])


# --------------------------------------------------------------------------- comparing

token = st.binary(min_size=1, max_size=8).map(lambda b: bytes(c for c in b if c > 32) or b"x")
whitespace = st.sampled_from([b" ", b"  ", b"\t", b"\n", b"\r\n", b" \n ", b"\x0b", b"\x0c"])


@given(st.lists(token, max_size=20), st.data())
def test_tokens_ignore_whitespace_changes(tokens: list[bytes], data: st.DataObject) -> None:
    def spaced() -> bytes:
        seps = data.draw(st.lists(whitespace, min_size=len(tokens) + 1, max_size=len(tokens) + 1))
        return seps[0] + b"".join(t + s for t, s in zip(tokens, seps[1:], strict=True))

    assert Comparator("tokens").compare(spaced(), b" ".join(tokens) + b"\n") == (True, "")


@given(st.lists(token, min_size=1, max_size=20), st.data())
def test_tokens_see_a_changed_token(tokens: list[bytes], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(tokens) - 1))
    changed = [*tokens[:i], tokens[i] + b"!", *tokens[i + 1 :]]
    ok, detail = Comparator("tokens").compare(b" ".join(changed), b" ".join(tokens))
    assert not ok
    assert f"token {i + 1} " in detail


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_exact_is_exact(a: bytes, b: bytes) -> None:
    ok, detail = Comparator("exact").compare(a, b)
    assert ok == (a == b)
    assert (detail == "") == ok
    assert Comparator("exact").compare(a, a) == (True, "")


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)


@given(finite, st.floats(min_value=-0.4, max_value=0.4))
def test_floats_within_tolerance_match(x: float, fraction: float) -> None:
    comparator = Comparator("floats", rel_tol=1e-6, abs_tol=1e-9)
    y = x * (1 + fraction * 1e-6)
    assert comparator.compare(f"ans {x!r}\n".encode(), f"ans  {y:.17g}".encode())[0]


@given(finite.filter(lambda x: abs(x) > 1e-3), st.floats(min_value=2, max_value=1e6))
def test_floats_beyond_tolerance_differ(x: float, factor: float) -> None:
    comparator = Comparator("floats", rel_tol=1e-6, abs_tol=1e-9)
    y = x * (1 + factor * 1e-6)
    ok, detail = comparator.compare(repr(x).encode(), repr(y).encode())
    assert not ok
    assert "off by" in detail


@pytest.mark.parametrize(
    ("actual", "expected", "ok"),
    [
        (b"nan", b"nan", True),
        (b"-nan", b"NaN", True),
        (b"nan", b"0", False),
        (b"inf", b"inf", True),
        (b"INF", b"+inf", True),
        (b"inf", b"-inf", False),
        (b"inf", b"1e308", False),
        (b"3", b"3.0000000001", True),
        (b"0.000000000", b"1e-10", True),  # abs_tol
        (b"1_000", b"1000", False),  # Python float() syntax is not number syntax here
        (b"Yes", b"yes", False),
        (b"1.5 x", b"1.5000001 x", True),
        (b"1.5", b"1.5 2", False),
    ],
)
def test_float_tokens(actual: bytes, expected: bytes, ok: bool) -> None:
    assert Comparator("floats").compare(actual, expected)[0] is ok


def test_tokens_mode_does_not_use_tolerance() -> None:
    assert not Comparator("tokens").compare(b"1.0", b"1")[0]


@pytest.mark.parametrize(
    ("mode", "actual", "expected", "detail"),
    [
        ("tokens", b"1 2\n3 4\n", b"1 2\n3 5\n", 'token 4 (line 2): expected "5", got "4"'),
        ("tokens", b"1 2", b"1 2 3", 'token 3 (line 1 of expected) should be "3"'),
        ("tokens", b"1 2 3\n", b"1 2", 'extra output: token 3 (line 1) is "3"'),
        ("exact", b"a\nb c\n", b"a\nb  c\n", 'line 2, column 3: expected "b  c", got "b c"'),
        ("exact", b"a", b"a\n", "missing newline at the end"),
        ("exact", b"a\n\n", b"a\n", "extra newline at the end"),
        ("exact", b"a\n", b"a\nb\n", 'output ends early at line 2: expected "b"'),
        ("exact", b"a\nb\n", b"a\n", 'extra output at line 2: "b"'),
        ("exact", b"a\nb", b"a\nb\nc", 'output ends early after line 2: expected line 3 "c"'),
        ("exact", b"a\r\n", b"a\n", 'expected "a", got "a\\r"'),
        ("tokens", b"\xff\xfe", b"ok", 'expected "ok", got "\\xff\\xfe"'),
    ],
)
def test_mismatch_explains_the_first_difference(
    mode: str, actual: bytes, expected: bytes, detail: str
) -> None:
    ok, text = Comparator(mode).compare(actual, expected)  # type: ignore[arg-type]
    assert not ok
    assert detail in text


@given(st.sampled_from(["exact", "tokens", "floats"]), st.binary(), st.binary())
def test_explanations_are_short(mode: str, actual: bytes, expected: bytes) -> None:
    ok, detail = Comparator(mode).compare(actual * 50, expected * 50)  # type: ignore[arg-type]
    assert len(detail) <= MAX_DETAIL_CHARS
    assert ok or detail


def test_long_lines_are_shown_around_the_difference() -> None:
    ok, detail = Comparator("exact").compare(b"x" * 5000 + b"A", b"x" * 5000 + b"B")
    assert not ok and len(detail) <= MAX_DETAIL_CHARS
    assert "column 5001" in detail and "A" in detail and "B" in detail


@pytest.mark.parametrize("kwargs", [{"mode": "fuzzy"}, {"rel_tol": -1.0}, {"abs_tol": math.nan}])
def test_invalid_comparator(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"mode|tolerances"):
        Comparator(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- judging

TEST = TestCase("t1", b"", b"42\n")


@pytest.mark.parametrize(
    ("run", "status", "detail"),
    [
        (ok_run(b"42\n"), Status.PASSED, ""),
        (ok_run(b"42"), Status.PASSED, ""),  # tokens: the trailing newline is optional
        (ok_run(b"43\n"), Status.WRONG_OUTPUT, 'expected "42", got "43"'),
        (
            ok_run(exit_code=None, signal=signal.SIGSEGV),
            Status.CRASHED,
            "SIGSEGV (segmentation fault)",
        ),
        (
            ok_run(
                exit_code=None, signal=signal.SIGABRT, stderr=b"\na.out: x.c:3: main: Assertion"
            ),
            Status.CRASHED,
            "SIGABRT (aborted): a.out: x.c:3: main: Assertion",
        ),
        (ok_run(exit_code=None, signal=200), Status.CRASHED, "signal 200"),
        (ok_run(exit_code=None), Status.CRASHED, "neither an exit code nor a signal"),
        (
            ok_run(b"42\n", exit_code=3, stderr=b"bad input\nmore\n"),
            Status.NONZERO_EXIT,  # right output but failed exit: still a failure
            "exit code 3: bad input",
        ),
        (ok_run(exit_code=1), Status.NONZERO_EXIT, "exit code 1"),
        (ok_run(timed_out=True), Status.TIMED_OUT, "killed after"),
        (ok_run(output_truncated=True), Status.OUTPUT_TOO_LARGE, "output limit"),
        (ok_run(out_of_memory=True), Status.OUT_OF_MEMORY, "out of memory"),
        (ok_run(sandbox_violation=True), Status.SANDBOX_VIOLATION, "sandbox"),
    ],
)
def test_each_verdict(run: RunResult, status: Status, detail: str) -> None:
    verdict = judge(TEST, run, Comparator())
    assert verdict.status is status
    assert detail in verdict.detail
    assert verdict.name == "t1"
    assert verdict.cpu_seconds == 0.25
    assert verdict.passed == (status is Status.PASSED)


@pytest.mark.parametrize(
    ("flags", "status"),
    [
        ({"sandbox_violation": True, "timed_out": True}, Status.SANDBOX_VIOLATION),
        ({"sandbox_violation": True}, Status.SANDBOX_VIOLATION),
        ({"timed_out": True, "output_truncated": True}, Status.TIMED_OUT),
        ({"timed_out": True, "out_of_memory": True}, Status.TIMED_OUT),
        ({"output_truncated": True, "out_of_memory": True}, Status.OUTPUT_TOO_LARGE),
        ({"out_of_memory": True}, Status.OUT_OF_MEMORY),
        ({}, Status.CRASHED),
    ],
)
def test_limits_and_sandbox_outrank_the_kill_signal(flags: dict[str, Any], status: Status) -> None:
    # Whatever killed the program, it died of a signal; the reason decides the verdict.
    run = ok_run(exit_code=None, signal=signal.SIGKILL, **flags)
    if flags.get("sandbox_violation"):
        run = replace(run, signal=signal.SIGSYS)
    assert judge(TEST, run, Comparator()).status is status


def test_expected_argument_overrides_the_test() -> None:
    assert judge(TEST, ok_run(b"7"), Comparator(), expected=b"7\n").passed
    baseline_test = TestCase("t2", b"in", None)
    assert judge(baseline_test, ok_run(b"x"), Comparator("exact"), expected=b"x").passed
    assert not judge(baseline_test, ok_run(b"x"), Comparator("exact"), expected=b"y").passed


def test_no_expected_output_is_an_error_even_for_a_crash() -> None:
    crash = ok_run(exit_code=None, signal=signal.SIGSEGV)
    with pytest.raises(ValueError, match=r"'t2' has no expected output.*expected="):
        judge(TestCase("t2", b"", None), crash, Comparator())


def test_verdict_detail_is_short() -> None:
    run = ok_run(exit_code=2, stderr=b"e" * 10_000)
    assert len(judge(TEST, run, Comparator()).detail) <= MAX_DETAIL_CHARS
