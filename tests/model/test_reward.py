"""Rewards: the paper's two designs value for value, asmopt's default, the verl interface
(through the real sandboxed executor), and failures that must never become a quiet 0."""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from asmopt.executor.results import (
    BuildResult,
    SpeedupEstimate,
    TestStatus,
    TestVerdict,
    Verdict,
)
from asmopt.executor.verify import VerificationResult
from asmopt.model.training import reward as R
from asmopt.model.training.reward import (
    RewardConfig,
    RewardError,
    RewardInput,
    RewardSettings,
    reward_asmopt,
    reward_design1,
    reward_design2,
)
from asmopt.model.training.reward_pool import RewardPool

needs_sandbox = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


def ok(passed: int = 10, total: int = 10, **kw) -> RewardInput:
    return RewardInput(compiled=True, tests_total=total, tests_passed=passed, **kw)


def timed(paper: float, low: float | None = None, high: float | None = None) -> RewardInput:
    low = paper if low is None else low
    high = paper if high is None else high
    return ok(speedup=paper, ci_low=low, ci_high=high, paper_speedup=paper)


NO_BUILD = RewardInput(compiled=False)
# (case, input, design 1, design 2) — design 1: -1 / -0.5 / passed fraction / 1 / 1 + 10*s;
# design 2: s if all pass and s > 1, else 0 (speedup = the raw ratio, as in the paper's code).
PAPER_TABLE = [
    ("no assembly / no build", NO_BUILD, -1.0, 0.0),
    ("a test crashes", ok(9, 10, crashed=True), -0.5, 0.0),
    ("crash beside wrong outputs", ok(3, 10, crashed=True), -0.5, 0.0),
    ("all tests wrong", ok(0, 10), 0.0, 0.0),
    ("7 of 10 pass", ok(7, 10), 0.7, 0.0),
    ("9 of 10 pass", ok(9, 10), 0.9, 0.0),
    ("copy of the baseline", ok(identical_to_baseline=True, paper_speedup=1.08), 1.0, 0.0),
    ("correct, not measured", ok(), 1.0, 0.0),
    ("correct, slower", timed(0.8), 1.0, 0.0),
    ("correct, exactly 1.0", timed(1.0), 1.0, 0.0),
    ("correct, 1.2x", timed(1.2), 13.0, 1.2),
    ("correct, 1.01x (noise)", timed(1.01), 11.1, 1.01),
    ("correct, 2.5x", timed(2.5), 26.0, 2.5),
]


@pytest.mark.parametrize(("case", "given", "design1", "design2"), PAPER_TABLE,
                         ids=[row[0] for row in PAPER_TABLE])  # fmt: skip
def test_paper_designs_value_for_value(case, given, design1, design2):
    assert reward_design1(given) == pytest.approx(design1)
    assert reward_design2(given) == pytest.approx(design2)


ASMOPT_TABLE = [
    ("no build", NO_BUILD, -1.0),
    ("crash", ok(9, 10, crashed=True), -0.8),
    ("all wrong", ok(0, 10), -0.7),
    ("9 of 10", ok(9, 10), -0.7 + 0.3 * 0.9),
    ("copy of the baseline", ok(identical_to_baseline=True, speedup=1.1, ci_low=1.05), 0.0),
    ("correct, not measured", ok(), 0.0),
    ("noise: CI straddles 1", timed(1.04, 0.98, 1.10), 0.0),
    ("faster: CI above 1", timed(1.5, 1.4, 1.6), 5 * math.log(1.4)),
    ("huge speed-up is capped", timed(50, 40, 60), 5 * math.log(10)),
    ("slightly slower", timed(0.97, 0.95, 0.99), math.log(0.99)),
    ("much slower, floored", timed(0.2, 0.1, 0.3), -0.3),
]


@pytest.mark.parametrize(("case", "given", "expected"), ASMOPT_TABLE,
                         ids=[row[0] for row in ASMOPT_TABLE])  # fmt: skip
def test_asmopt_reward(case, given, expected):
    assert reward_asmopt(given) == pytest.approx(expected)


def test_asmopt_reward_orders_outcomes():
    # Every wrong answer below every correct one; a copy and noise earn nothing.
    ladder = [NO_BUILD, ok(9, 10, crashed=True), ok(0, 10), ok(9, 10), timed(0.2, 0.1, 0.3),
              timed(0.97, 0.95, 0.99), ok(identical_to_baseline=True), timed(1.2, 1.1, 1.3),
              timed(2.0, 1.9, 2.1)]  # fmt: skip
    values = [reward_asmopt(r) for r in ladder]
    assert values == sorted(values)
    assert max(reward_asmopt(r) for r in ladder[:4]) < min(reward_asmopt(r) for r in ladder[4:])


def test_instruction_metric_is_an_option_not_the_default():
    r = ok(speedup=1.0, ci_low=0.9, ci_high=1.1, paper_speedup=1.0, instructions_ratio=1.5)
    assert reward_asmopt(r) == 0.0  # time says: no measurable change
    assert reward_asmopt(r, RewardConfig(metric="instructions")) == pytest.approx(5 * math.log(1.5))
    with pytest.raises(RewardError, match="callgrind"):
        reward_asmopt(ok(speedup=1.0, ci_low=1, ci_high=1), RewardConfig(metric="instructions"))


def _verdict(name: str, status: TestStatus) -> TestVerdict:
    return TestVerdict(name, status)


def test_reward_input_from_executor_results():
    built = BuildResult(True, "x", ())
    failed = VerificationResult(Verdict.BUILD_FAILED, "h", BuildResult(False, None, ()))
    assert RewardInput.from_result(failed) == RewardInput(compiled=False)
    for status in (TestStatus.CRASHED, TestStatus.TIMED_OUT, TestStatus.NONZERO_EXIT,
                   TestStatus.SANDBOX_VIOLATION, TestStatus.OUT_OF_MEMORY):  # fmt: skip
        tests = (_verdict("t0", TestStatus.PASSED), _verdict("t1", status))
        r = RewardInput.from_result(VerificationResult(Verdict.TESTS_FAILED, "h", built, tests))
        assert r.crashed and reward_design1(r) == -0.5, status
    wrong = (_verdict("t0", TestStatus.PASSED), _verdict("t1", TestStatus.WRONG_OUTPUT))
    r = RewardInput.from_result(VerificationResult(Verdict.TESTS_FAILED, "h", built, wrong))
    assert not r.crashed and reward_design1(r) == 0.5
    speed = SpeedupEstimate(1.5, 1.4, 1.6, 10, 1.0, 0.66, per_test={"t0": 1.2, "t1": 1.8})
    passed = (_verdict("t0", TestStatus.PASSED), _verdict("t1", TestStatus.PASSED))
    r = RewardInput.from_result(VerificationResult(Verdict.FASTER, "h", built, passed, speed))
    # The paper's speed-up: mean over tests of per-test ratios; ours: median with its CI.
    assert r.paper_speedup == pytest.approx(1.5) and (r.ci_low, r.ci_high) == (1.4, 1.6)
    assert reward_design1(r) == pytest.approx(16.0)
    assert reward_design2(r) == pytest.approx(1.5)


# --------------------------------------------------------------------------- real executor

# A loop whose -O2 build is clearly faster than its -O0 build (shared with the other
# executor-backed model tests).
LOOP_C = (Path(__file__).parents[1] / "data" / "snippets" / "loop.c").read_text()


def compile_asm(tmp: Path, flags: str) -> str:
    src = tmp / "loop.c"
    src.write_text(LOOP_C)
    out = tmp / f"loop{flags}.s"
    subprocess.run(["gcc", flags, "-S", str(src), "-o", str(out)], check=True)
    return out.read_text()


def loop_row(tmp: Path) -> tuple[dict, str, str]:
    """A row whose baseline is gcc -O0 (slow) and a candidate gcc -O2 (about 2x faster)."""
    o0, o2 = compile_asm(tmp, "-O0"), compile_asm(tmp, "-O2")
    binary = tmp / "loop0"
    subprocess.run(["gcc", "-O0", str(tmp / "loop.c"), "-o", str(binary)], check=True)
    inputs = ["300\n", "200\n"]
    outputs = [subprocess.run([binary], input=i, capture_output=True, text=True).stdout
               for i in inputs]  # fmt: skip
    extra = {"inputs": inputs, "outputs": outputs, "unoptimized_assembly": o0, "c_code": LOOP_C}
    return extra, o0, o2


def fenced(asm: str) -> str:
    return f"Here it is.\n```assembly\n{asm}```\n"


@needs_sandbox
def test_verl_functions_through_the_sandbox(tmp_path):
    extra, o0, o2 = loop_row(tmp_path)
    wrong = o2.replace('"%ld\\n"', '"%ld7\\n"')
    assert wrong != o2
    fns = (R.compute_score_design1, R.compute_score_design2, R.compute_score)
    kw = {"bench_budget": 5.0}
    cases = {
        "prose": ("no assembly here", (-1.0, 0.0, -1.0)),
        "broken": (fenced("this is not assembly\n"), (-1.0, 0.0, -1.0)),
        "copy": (fenced(o0.rstrip() + "\n\n"), (1.0, 0.0, 0.0)),  # equal after strip()
        "wrong": (fenced(wrong), (0.0, 0.0, -0.7)),
    }
    for name, (response, expected) in cases.items():
        got = tuple(f("test", response, None, extra, **kw) for f in fns)
        assert got == pytest.approx(expected), name
    faster = [f("test", fenced(o2), None, extra, **kw) for f in fns]
    assert faster[0] > 11.0  # 1 + 10 * speedup
    assert faster[1] > 1.2
    assert faster[2] > 5 * math.log(1.2)
    assert all(isinstance(v, float) for v in faster)


def test_bad_rows_raise_or_score_as_failure_with_a_logged_reason(tmp_path, monkeypatch, caplog):
    no_tests = {"inputs": [], "outputs": [], "unoptimized_assembly": "main:\n ret\n"}
    # on_error="raise": the local trainer's rule, never a quiet 0.
    with pytest.raises(RewardError, match="extra_info is missing"):
        R.compute_score("x", "```assembly\nret\n```", None, None, on_error="raise")
    with pytest.raises(RewardError, match="no tests"):
        R.compute_score_design2("x", "```assembly\nret\n```", None, no_tests, on_error="raise")
    # verl's default: the sample scores as a build failure, and the reason is logged.
    errors = tmp_path / "reward_errors.jsonl"
    monkeypatch.setenv(R.ERROR_LOG_ENV, str(errors))
    assert R.compute_score("x", "```assembly\nret\n```", None, None) == -1.0
    assert R.compute_score_design1("x", "```assembly\nret\n```", None, no_tests) == -1.0
    assert R.compute_score_design2("x", "```assembly\nret\n```", None, no_tests) == 0.0
    assert "extra_info is missing" in caplog.text
    records = [json.loads(line) for line in errors.read_text().splitlines()]
    assert len(records) == 3 and "no tests" in records[1]["reason"]
    # So many failures in a row that the reward itself must be broken: the run stops.
    monkeypatch.setattr(R, "MAX_FAILURES_IN_A_ROW", 5)
    monkeypatch.setattr(R, "_failures_in_a_row", 0)
    for _ in range(4):
        R.compute_score("x", "```assembly\nret\n```", None, None)
    with pytest.raises(RewardError, match="5 rewards in a row could not be computed"):
        R.compute_score("x", "```assembly\nret\n```", None, None)
    monkeypatch.setattr(R, "_failures_in_a_row", 0)
    # A bad configuration would fail every sample: it always raises.
    with pytest.raises(RewardError, match="unknown reward_kwargs"):
        R.compute_score("x", "", None, no_tests, budget=3)
    monkeypatch.setenv(R.SETTINGS_ENV, '{"bench_budjet": 1}')
    with pytest.raises(RewardError, match="bench_budjet"):
        R.compute_score("x", "", None, no_tests)


def test_paper_extraction_strips_the_fences_of_the_whole_response():
    prose = "Here you go:\n```assembly\nmain:\n\tret\n```\nDone."
    assert R.extract_answer(prose) == "main:\n\tret\n"
    assert R.extract_answer(prose, "paper") == "Here you go:\nmain:\n\tret\n\nDone."
    bare = "main:\n\tret\n"
    assert R.extract_answer(bare) is None  # ours wants a fence
    assert R.extract_answer(bare, "paper") == bare  # the paper takes a bare answer as it is
    assert R.extract_answer("```assembly\n```", "paper") is None
    with pytest.raises(RewardError, match="extraction"):
        RewardSettings(extraction="last")


@needs_sandbox
def test_baseline_that_fails_its_own_tests_is_an_error(tmp_path):
    extra, _, o2 = loop_row(tmp_path)
    extra["outputs"] = ["0\n", "0\n"]
    with pytest.raises(RewardError, match="baseline"):
        R.compute_score("x", fenced(o2), None, extra, on_error="raise")
    # verl's default: a bad row scores as a build failure instead of ending the run.
    assert R.compute_score("x", fenced(o2), None, extra) == -1.0


def emulated_verl_loader(path: Path, name: str):
    """What verl's ``load_extern_object`` does: import the file by path, getattr."""
    spec = importlib.util.spec_from_file_location(f"custom_module_{hash(str(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_reward_module_loads_the_way_verl_loads_it():
    from asmopt.model.training.verl_config import reward_function_path

    path = reward_function_path()
    for name in R.VERL_FUNCTIONS.values():
        if importlib.util.find_spec("verl") is not None:
            from verl.utils.import_utils import load_extern_object

            fn = load_extern_object(module_path=str(path), object_name=name)
        else:
            fn = emulated_verl_loader(path, name)
        params = list(inspect.signature(fn).parameters)
        assert params[:4] == ["data_source", "solution_str", "ground_truth", "extra_info"]
        # verl passes reward_kwargs as keywords
        kind = inspect.signature(fn).parameters["reward_kwargs"].kind
        assert kind is inspect.Parameter.VAR_KEYWORD
        row = {"inputs": ["1\n"], "outputs": ["1\n"], "unoptimized_assembly": "x"}
        assert fn("test", "no fence", None, row) in (-1.0, 0.0)


# --------------------------------------------------------------------------- the pool


@needs_sandbox
def test_pool_caches_and_scores_in_parallel(tmp_path):
    from asmopt.model.training.reward import Problem

    extra, o0, _ = loop_row(tmp_path)
    problem = Problem.from_extra_info(extra, 10)
    with RewardPool("design1", RewardSettings(bench_budget=3.0), workers=2) as pool:
        items = [(o0, problem), (None, problem), ("garbage\n", problem), (o0, problem)]
        scored = pool.score(items)
        assert [s.reward for s in scored] == [1.0, -1.0, -1.0, 1.0]
        assert pool.executor_calls == 2  # o0 once, garbage once; None needs no executor
        pool.score(items)
        assert pool.executor_calls == 2  # everything cached


@needs_sandbox
def test_a_dead_reward_worker_is_an_error_not_a_zero(tmp_path):
    from asmopt.model.training.reward import Problem

    extra, _, o2 = loop_row(tmp_path)
    problem = Problem.from_extra_info(extra, 10)
    pool = RewardPool("asmopt", workers=1)
    try:
        pid = pool._executor().submit(os.getpid).result()
        os.kill(pid, signal.SIGKILL)  # the worker this test started
        with pytest.raises(RewardError, match="reward worker died"):
            pool.score([(o2, problem)], names=["loop"])
        # The pool restarts for the next batch.
        assert pool.score([(None, problem)])[0].reward == -1.0
    finally:
        pool.close()


# --------------------------------------------------------------------------- concurrency


def _verdict_of(r: RewardInput) -> tuple:
    """What is deterministic about a judgement (speed figures are noisy, verdicts are not)."""
    return (r.compiled, r.tests_total, r.tests_passed, r.crashed, r.identical_to_baseline)


@needs_sandbox
def test_concurrent_calls_give_the_serial_verdicts(tmp_path, monkeypatch):
    """verl's calling pattern: every sample of a batch at once from a thread pool, many on
    the same row (rollout.n > 1), some on another row, starting with no baseline built. Each
    call must judge exactly as a call on its own does; no call may fail."""
    from concurrent.futures import ThreadPoolExecutor

    extra, o0, o2 = loop_row(tmp_path)
    binary = tmp_path / "loop0"
    other = dict(extra, inputs=["50\n", "7\n"])
    other["outputs"] = [subprocess.run([binary], input=i, capture_output=True, text=True).stdout
                        for i in other["inputs"]]  # fmt: skip
    wrong = o2.replace('"%ld\\n"', '"%ld7\\n"')
    answers = {"copy": fenced(o0), "wrong": fenced(wrong), "broken": fenced("bogus\n"),
               "prose": "no assembly", "faster": fenced(o2)}  # fmt: skip
    design1 = {"copy": 1.0, "wrong": 0.0, "broken": -1.0, "prose": -1.0}
    calls = [(row, name) for row in ("same", "other") for name in answers] * 2
    calls += [("same", "copy")] * 4 + [("same", "broken")] * 4
    rows = {"same": extra, "other": other}
    kw = {"bench_budget": 0.5, "on_error": "raise"}
    settings = RewardSettings(bench_budget=0.5)

    serial = {}
    evaluator = R.Evaluator(settings)
    try:
        for row, name in dict.fromkeys(calls):
            problem = R.Problem.from_extra_info(rows[row], 10)
            serial[row, name] = evaluator.evaluate(R.extract_answer(answers[name]), problem)
    finally:
        evaluator.close()

    monkeypatch.setattr(R, "_EVALUATORS", {})  # nothing built: the race is on the first calls

    def one(call):
        row, name = call
        score = R.compute_score_design1("test", answers[name], None, rows[row], **kw)
        problem = R.Problem.from_extra_info(rows[row], 10)
        judged = R._evaluator(settings).evaluate(R.extract_answer(answers[name]), problem)
        return score, judged

    with ThreadPoolExecutor(len(calls)) as pool:
        results = list(pool.map(one, calls))
    try:
        for (row, name), (score, judged) in zip(calls, results, strict=True):
            assert _verdict_of(judged) == _verdict_of(serial[row, name]), (row, name)
            if name in design1:
                assert score == design1[name], (row, name)
            else:  # correct and about 2x faster: 1 + 10 * speed-up, whatever the noise
                assert judged.all_passed and score > 11.0, (row, name, score)
        # Each row's baseline was built once in this process, though 16 calls wanted it.
        assert len(R._evaluator(settings)._baselines) == 2
    finally:
        for ev in R._EVALUATORS.values():
            ev.close()
