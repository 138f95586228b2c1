"""Rewards for reinforcement learning: the paper's two designs and asmopt's default.

(~670 lines, more than most modules: the rewards, the evaluator that feeds them and verl's
entry points are one chain that verl loads by path and whose state the tests patch.)

Every reward is a pure function of what the executor found out about one candidate, a
:class:`RewardInput` (built from a :class:`~asmopt.executor.verify.VerificationResult`):

- :func:`reward_design1`, the paper's "correctness-guided" reward;
- :func:`reward_design2`, the paper's "speed-up only" reward (its released run);
- :func:`reward_asmopt`, our default, which fixes what the paper's rewards get wrong.

The same three are exposed with verl's custom-reward signature,
``compute_score(data_source, solution_str, ground_truth, extra_info)``, as
:func:`compute_score` (ours), :func:`compute_score_design1` and :func:`compute_score_design2`:
verl loads this file by path (``reward.custom_reward_function.path``) and calls the function
named by ``reward.custom_reward_function.name``. They take the text of the last ```assembly
fence of the response, build the row's baseline from ``extra_info`` (``unoptimized_assembly``,
``inputs``, ``outputs``; cached per row), verify the candidate IN THE SANDBOX and return a float.

verl calls them from many threads at once (``run_in_executor``), often for the same row
(``rollout.n > 1``): each row's baseline is built once per process, under a lock for that row,
in a folder of its own; candidates are built in private temporary folders.

:class:`~asmopt.model.training.reward_pool.RewardPool` scores a batch in parallel worker
processes (each with its own sandbox and baseline cache) for the local PPO trainer. There a
reward that cannot be computed raises :class:`RewardError` naming the row; it is never
replaced by a quiet 0, and the trainer stops (resumable). In verl's path one bad row must
not end a multi-GPU run, so the verl functions (``on_error="score"``, their default) score
such a sample as a build failure (the reward of :meth:`RewardInput.no_assembly`), log a
WARNING with the row and the reason, and, when
``$ASMOPT_REWARD_ERROR_LOG`` names a file, append a JSON line to it (``asmopt train --engine
verl`` points it at ``OUT/reward_errors.jsonl``). ``on_error="raise"`` restores the local
behaviour. A bad ``reward_kwargs`` always raises: it would fail every sample; so do
:data:`MAX_FAILURES_IN_A_ROW` failures in a row in one process (the reward itself is broken).

Settings reach verl's reward as ``reward_kwargs`` or, for the whole run, as a JSON object of
:class:`RewardSettings` fields in ``$ASMOPT_REWARD_SETTINGS`` (what ``asmopt train --engine
verl`` sets; Ray workers of a local cluster inherit it); ``reward_kwargs`` win.

Facts from the paper's code (``Anjiang-Wei/SuperCoder``,
``verl/verl/utils/reward_score/speedup_assembly_design{1,2}.py``), which these reproduce:

- the answer is taken by stripping ```` ```assembly\\n```` and ```` ``` ```` from the response
  (:func:`extract_paper_answer`, offered as ``RewardSettings(extraction="paper")``; ours, the
  default, takes the last fenced block, :func:`asmopt.model.search.prompts.extract_assembly`);
  it is "identical to the baseline" when it equals ``unoptimized_assembly`` after ``strip()``
  (checked before anything is run: design 1 gives 1, design 2 gives 0);
- ``gcc x.s -o bin -lm`` failing gives -1 (design 1), 0 (design 2);
- the first 10 tests run; a non-zero return code on any test (crash, non-zero exit, timeout)
  gives -0.5 (design 1), 0 (design 2);
- otherwise the fraction of tests whose stdout equals the expected output exactly; below 1
  that fraction is the reward (design 1), 0 (design 2);
- "speedup" is ``mean over tests of (baseline mean time / candidate mean time)`` with
  hyperfine (3 warm-ups, 10 runs), i.e. the raw ratio, not ratio - 1; when it is > 1 the reward
  is ``1 + 10 * speedup`` (design 1: ``q_val = 10``, so 1.2x earns 13.0) or ``speedup``
  (design 2); when it is <= 1 (or could not be measured) 1 (design 1), 0 (design 2).

Here the speed-up fed to the paper's designs is the same quantity from our interleaved
CPU-time benchmark: the mean over timed tests of each test's median baseline/candidate ratio
(:attr:`RewardInput.paper_speedup`). Crashes are what the paper counts as a non-zero return
code: a signal, a non-zero exit, a timeout, the memory or output limit, a sandbox kill.
"""

# No ``from __future__ import annotations`` here: verl imports this file by path without
# registering it in sys.modules, and dataclasses cannot resolve string annotations then.
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asmopt.executor.results import TestStatus
from asmopt.executor.verify import VerificationResult

log = logging.getLogger(__name__)

__all__ = [
    "REWARDS",
    "RewardConfig",
    "RewardError",
    "RewardInput",
    "RewardSettings",
    "Scored",
    "compute_score",
    "compute_score_design1",
    "compute_score_design2",
    "extract_answer",
    "extract_paper_answer",
    "reward_asmopt",
    "reward_design1",
    "reward_design2",
]

# The paper runs the first 10 tests of a row.
PAPER_MAX_TESTS = 10
# Design 1's weight on the speed-up (``q_val`` in the paper's code).
PAPER_DESIGN1_WEIGHT = 10.0

# Test outcomes the paper's code sees as a non-zero return code ("a test crashes").
_CRASHES = frozenset(
    {
        TestStatus.CRASHED,
        TestStatus.NONZERO_EXIT,
        TestStatus.TIMED_OUT,
        TestStatus.OUT_OF_MEMORY,
        TestStatus.OUTPUT_TOO_LARGE,
        TestStatus.SANDBOX_VIOLATION,
    }
)


class RewardError(RuntimeError):
    """A reward could not be computed (bad row, broken sandbox, dead worker); the message says
    which row and why. Never turned into a reward of 0."""


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class RewardInput:
    """What a reward needs to know about one candidate.

    ``speedup`` is the median over benchmark rounds of the baseline/candidate CPU-time ratio
    (summed over timed tests) with its 95% CI ``ci_low``..``ci_high``; ``paper_speedup`` is
    the paper's quantity, the mean over tests of per-test ratios. Both are None when the
    candidate was not measured (it failed, or measuring was off). ``instructions_ratio`` is
    baseline/candidate callgrind instruction counts, only when asked for.
    """

    compiled: bool
    tests_total: int = 0
    tests_passed: int = 0
    crashed: bool = False
    identical_to_baseline: bool = False
    speedup: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    paper_speedup: float | None = None
    instructions_ratio: float | None = None

    @property
    def all_passed(self) -> bool:
        return self.compiled and self.tests_total > 0 and self.tests_passed == self.tests_total

    @classmethod
    def no_assembly(cls) -> "RewardInput":
        """The response holds no assembly to build: scored like a build failure."""
        return cls(compiled=False)

    @classmethod
    def from_result(
        cls, result: VerificationResult, instructions_ratio: float | None = None
    ) -> "RewardInput":
        """The reward's view of an executor verdict."""
        compiled = result.build is not None and result.build.ok
        s = result.speedup
        paper = None
        if s is not None:
            per_test = list(s.per_test.values())
            paper = sum(per_test) / len(per_test) if per_test else s.median
        return cls(
            compiled=compiled,
            tests_total=len(result.tests),
            tests_passed=result.tests_passed,
            crashed=any(t.status in _CRASHES for t in result.tests),
            identical_to_baseline=result.identical_to_baseline,
            speedup=s.median if s else None,
            ci_low=s.ci_low if s else None,
            ci_high=s.ci_high if s else None,
            paper_speedup=paper,
            instructions_ratio=instructions_ratio,
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --------------------------------------------------------------------------- the rewards


def reward_design1(r: RewardInput) -> float:
    """The paper's design 1 (correctness-guided), value for value (see the module docstring):
    -1 no build; -0.5 a test crashes; passed/total if some fail; 1 if identical to the
    baseline or correct but not faster; ``1 + 10 * speedup`` if correct and speedup > 1."""
    if r.identical_to_baseline:
        return 1.0
    if not r.compiled or r.tests_total == 0:
        return -1.0
    if r.crashed:
        return -0.5
    if r.tests_passed < r.tests_total:
        return r.tests_passed / r.tests_total
    if r.paper_speedup is not None and r.paper_speedup > 1.0:
        return 1.0 + PAPER_DESIGN1_WEIGHT * r.paper_speedup
    return 1.0


def reward_design2(r: RewardInput) -> float:
    """The paper's design 2 (speed-up only, its released run): ``speedup`` if every test
    passes and speedup > 1, else 0; a copy of the baseline gets 0."""
    if r.identical_to_baseline or not r.all_passed:
        return 0.0
    if r.paper_speedup is not None and r.paper_speedup > 1.0:
        return float(r.paper_speedup)
    return 0.0


@dataclass(frozen=True)
class RewardConfig:
    """The constants of :func:`reward_asmopt`. Every wrong answer scores below every correct
    one; among correct ones only a measured, significant speed-up earns anything."""

    build_failed: float = -1.0  # no assembly, or it does not assemble/link
    crashed: float = -0.8  # a test crashed, exited non-zero, timed out or hit a limit
    wrong_base: float = -0.7  # wrong output: wrong_base + wrong_span * passed/total
    wrong_span: float = 0.3  # ... so in [-0.7, -0.4)
    speedup_weight: float = 5.0  # weight * log(lower CI bound) when it is > 1
    max_speedup: float = 10.0  # larger speed-ups (often a measurement artefact) are capped
    slowdown_weight: float = 1.0  # weight * log(upper CI bound) when it is < 1 ...
    max_slowdown_penalty: float = 0.3  # ... floored at -0.3: slow but right beats wrong
    metric: str = "time"  # "time" (the CI of the CPU-time ratio) or "instructions"
    instructions_tolerance: float = 0.01  # relative change in instructions that counts

    def __post_init__(self) -> None:
        if self.metric not in ("time", "instructions"):
            raise ValueError(f"metric must be 'time' or 'instructions', not {self.metric!r}")


def reward_asmopt(r: RewardInput, config: RewardConfig | None = None) -> float:
    """asmopt's default reward; fixes three faults of the paper's designs.

    - No reward for a copy of the baseline (design 1 pays it 1, the "correct" floor), and
      none for a correct answer that is not measurably faster: 0. So editing the baseline
      trivially earns nothing.
    - Speed-up credit only when the 95% CI's lower bound exceeds 1 (the paper pays any
      mean ratio > 1, and its clamped protocol shows identical binaries as >= 1.05x faster in
      about a fifth of trials here): ``speedup_weight * log(min(ci_low, max_speedup))``.
      The logarithm makes 2x and 4x one step apart, as users feel them, and keeps a noisy
      outlier from dominating a batch.
    - A significant slow-down (CI's upper bound < 1) is penalised,
      ``max(-max_slowdown_penalty, slowdown_weight * log(ci_high))``, where the paper pays it
      like a neutral answer.

    Failures keep the paper's order (no build < crash < wrong output, more tests passed is
    better) but sit below zero: -1 no build; -0.8 a crash; -0.7 + 0.3 * passed/total for wrong
    output. With ``metric="instructions"`` the callgrind instruction ratio replaces the time
    CI (deterministic, so a change beyond ``instructions_tolerance`` counts); instructions are
    not time, so it is never the default.
    """
    c = config or RewardConfig()
    if not r.compiled or r.tests_total == 0:
        return c.build_failed
    if r.crashed:
        return c.crashed
    if r.tests_passed < r.tests_total:
        return c.wrong_base + c.wrong_span * r.tests_passed / r.tests_total
    if r.identical_to_baseline:
        return 0.0
    if c.metric == "instructions":
        if r.instructions_ratio is None:
            raise RewardError(
                "metric 'instructions' needs callgrind counts: score with "
                "RewardSettings(metric='instructions')"
            )
        low = high = r.instructions_ratio
        if abs(low - 1.0) <= c.instructions_tolerance:
            return 0.0
    else:
        if r.ci_low is None or r.ci_high is None:
            return 0.0  # correct, not measured
        low, high = r.ci_low, r.ci_high
    if low > 1.0:
        return c.speedup_weight * math.log(min(low, c.max_speedup))
    if high < 1.0:
        return max(-c.max_slowdown_penalty, c.slowdown_weight * math.log(high))
    return 0.0


REWARDS: dict[str, Callable[[RewardInput], float]] = {
    "asmopt": reward_asmopt,
    "design1": reward_design1,
    "design2": reward_design2,
}


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class RewardSettings:
    """How candidates are judged while training: shorter benchmarks than ``asmopt verify``
    (a reward is needed for every sample), the same sandbox."""

    bench_budget: float = 10.0  # seconds of benchmarking per correct candidate at most
    ci_target: float = 0.03  # stop timing when the 95% CI half-width is within 3%
    test_timeout: float = 10.0
    compare: str = "tokens"  # tokens (CodeNet), exact (the paper's ==) or floats
    max_tests: int = PAPER_MAX_TESTS
    sandbox: bool = True  # only an explicit user flag may turn it off
    metric: str = "time"  # "instructions": also count callgrind instructions
    extraction: str = "asmopt"  # "asmopt": the last ```assembly fence; "paper": see module doc

    def __post_init__(self) -> None:
        if self.extraction not in EXTRACTIONS:
            raise RewardError(
                f"extraction must be one of {', '.join(EXTRACTIONS)}, not {self.extraction!r}"
            )
        if self.metric not in ("time", "instructions"):
            raise RewardError(f"metric must be 'time' or 'instructions', not {self.metric!r}")


EXTRACTIONS = ("asmopt", "paper")


def extract_paper_answer(response: str) -> str | None:
    """The paper's reading of an answer: the whole response with every ```` ```assembly\\n````
    and every ```` ``` ```` removed (prose around the fence stays, and then fails to
    assemble). None when nothing but whitespace is left."""
    answer = response.replace("```assembly\n", "").replace("```", "")
    return answer if answer.strip() else None


def extract_answer(response: str, extraction: str = "asmopt") -> str | None:
    """The candidate assembly in a model's ``response`` under ``extraction`` ("asmopt": the
    last fenced block, the default; "paper": :func:`extract_paper_answer`)."""
    if extraction == "paper":
        return extract_paper_answer(response)
    from asmopt.model.search.prompts import extract_assembly

    return extract_assembly(response)


@dataclass(frozen=True)
class Problem:
    """What a reward needs of a data-set row: the baseline assembly and the tests.

    An output of None (a directory test without ``.out``) means "whatever the baseline
    prints", as everywhere in asmopt (the executor's ``prepare_baseline`` decides it)."""

    key: str
    baseline_asm: str
    inputs: tuple[bytes, ...]
    outputs: tuple[bytes | None, ...]

    @classmethod
    def from_extra_info(cls, extra_info: dict[str, Any] | None, max_tests: int) -> "Problem":
        """The problem of a row in the paper's format (``extra_info`` of verl's parquet)."""
        from asmopt.model.evaluation.dataset import DatasetError, problem_from_row

        if not extra_info:
            raise RewardError(
                "extra_info is missing: the row must carry unoptimized_assembly, inputs and "
                "outputs (the paper's format; write it with "
                "asmopt.model.evaluation.dataset.make_row)"
            )
        try:
            problem = problem_from_row({"extra_info": dict(extra_info)}, 0, "extra_info", max_tests)
        except DatasetError as err:
            raise RewardError(f"bad row: {err}") from err
        return cls.from_dataset_problem(problem)

    @classmethod
    def from_dataset_problem(cls, problem: Any) -> "Problem":
        """From an :class:`asmopt.model.evaluation.dataset.Problem`."""
        if not problem.tests:
            raise RewardError(f"{problem.name}: no tests, so no candidate can be judged")
        inputs = tuple(t.stdin for t in problem.tests)
        outputs = tuple(t.expected for t in problem.tests)
        digest = hashlib.sha256(problem.baseline_asm.encode())
        for data in (*inputs, *outputs):
            if data is None:  # unpinned: differs from every pinned output, b"" included
                digest.update(b"\xff" * 8)
                continue
            digest.update(len(data).to_bytes(8, "little") + data)
        return cls(digest.hexdigest()[:24], problem.baseline_asm, inputs, outputs)


@dataclass(frozen=True)
class Scored:
    """One scored sample: the reward, and what it was computed from (for metrics)."""

    reward: float
    inputs: RewardInput
    message: str = ""


class Evaluator:
    """Verifies candidates against rows in one process: one sandbox, baselines cached per row.

    Thread-safe: verl calls the reward from many threads at once. Each row's baseline is
    built once, under that row's lock, in a folder of its own (never shared with a build in
    progress); candidates are verified in private temporary folders by the executor.
    """

    def __init__(self, settings: RewardSettings | None = None) -> None:
        self.settings = settings or RewardSettings()
        self._sandbox: Any = None
        self._baselines: dict[str, Any] = {}
        self._lock = threading.Lock()  # guards the sandbox, the caches and _row_locks
        self._row_locks: dict[str, threading.Lock] = {}
        self._workdir = Path(tempfile.mkdtemp(prefix="asmopt-reward-"))

    def _options(self) -> Any:
        from asmopt.executor.benchmark import BenchmarkOptions
        from asmopt.executor.sandbox import SandboxLimits
        from asmopt.executor.testcases import Comparator
        from asmopt.executor.verify import VerifyOptions

        s = self.settings
        return VerifyOptions(
            comparator=Comparator(mode=s.compare),  # type: ignore[arg-type]
            limits=SandboxLimits(wall_seconds=s.test_timeout, cpu_seconds=int(s.test_timeout) + 1),
            bench=BenchmarkOptions(target_rel_ci=s.ci_target, budget_seconds=s.bench_budget),
        )

    def sandbox(self) -> Any:
        with self._lock:
            if self._sandbox is None:
                from asmopt.executor.sandbox import Sandbox, SandboxError

                try:
                    self._sandbox = Sandbox(self._options().limits, enabled=self.settings.sandbox)
                except SandboxError as err:
                    raise RewardError(f"the sandbox cannot run: {err}") from err
            return self._sandbox

    def baseline(self, problem: Problem) -> Any:
        """The row's baseline, built and run once per process (once per row even when many
        threads ask at the same moment)."""
        with self._lock:
            cached = self._baselines.get(problem.key)
            if cached is not None:
                return cached
            row_lock = self._row_locks.setdefault(problem.key, threading.Lock())
        with row_lock:
            with self._lock:
                cached = self._baselines.get(problem.key)
            if cached is not None:
                return cached  # another thread built it while this one waited
            baseline = self._build_baseline(problem)
            with self._lock:
                self._baselines[problem.key] = baseline
            return baseline

    def _build_baseline(self, problem: Problem) -> Any:
        from asmopt.executor.testcases import TestCase
        from asmopt.executor.verify import BaselineError, prepare_baseline

        # A fresh folder per build: a build that failed (and may be retried) or one of
        # another process never shares files with this one.
        work = Path(tempfile.mkdtemp(prefix=f"{problem.key}-", dir=self._workdir))
        source = work / "unoptimized.s"
        source.write_text(problem.baseline_asm)
        tests = [
            TestCase(name=f"t{i}", stdin=i_data, expected=o_data)
            for i, (i_data, o_data) in enumerate(zip(problem.inputs, problem.outputs, strict=True))
        ]
        try:
            return prepare_baseline(
                source, tests, work / "build", self.sandbox(), options=self._options()
            )
        except BaselineError as err:
            raise RewardError(
                f"row {problem.key}: its baseline (unoptimized_assembly) cannot be judged "
                f"against: {err}; fix or drop the row"
            ) from err

    def evaluate(self, asm: str | None, problem: Problem) -> RewardInput:
        """Verify ``asm`` (None: the response had no assembly) against ``problem``."""
        if asm is None:
            return RewardInput.no_assembly()
        from asmopt.executor.judge import Judge

        baseline = self.baseline(problem)
        # The paper compares with surrounding whitespace stripped; hand the exact baseline
        # text to the executor so that it, too, knows the candidate is a copy.
        if asm.strip() == baseline.asm.strip():
            asm = baseline.asm
        judge = Judge(baseline, self.sandbox(), self._options())
        result = judge.judge(asm)
        ratio = None
        if self.settings.metric == "instructions" and result.all_passed:
            from asmopt.executor.callgrind import CallgrindError

            try:
                ratio = judge.instruction_counts(asm)["ratio"]
            except CallgrindError as err:
                raise RewardError(f"callgrind cannot count this candidate: {err}") from err
        return RewardInput.from_result(result, instructions_ratio=ratio)

    def close(self) -> None:
        import shutil

        with self._lock:
            if self._sandbox is not None:
                self._sandbox.close()
                self._sandbox = None
            self._baselines.clear()
        shutil.rmtree(self._workdir, ignore_errors=True)


# --------------------------------------------------------------------------- verl interface

# verl calls compute_score once per sample, from many threads of long-lived reward worker
# processes; the evaluator (sandbox + baselines per row) lives as long as the process so that
# each row's baseline is built once. Keyed by settings so different reward_kwargs never share.
_EVALUATORS: dict[RewardSettings, Evaluator] = {}
_EVALUATORS_LOCK = threading.Lock()

SETTINGS_ENV = "ASMOPT_REWARD_SETTINGS"  # JSON object of RewardSettings fields
ERROR_LOG_ENV = "ASMOPT_REWARD_ERROR_LOG"  # append one JSON line per reward that failed
ON_ERROR = ("score", "raise")
# A reward that fails this many times in a row in one process is broken itself (no sandbox,
# no gcc, a full disk), not one bad row: scoring on would train on noise, so it raises.
MAX_FAILURES_IN_A_ROW = 256
_failures_in_a_row = 0
_FAILURES_LOCK = threading.Lock()


def _evaluator(settings: RewardSettings) -> Evaluator:
    with _EVALUATORS_LOCK:
        evaluator = _EVALUATORS.get(settings)
        if evaluator is None:
            evaluator = _EVALUATORS[settings] = Evaluator(settings)
        return evaluator


def _settings_from(kwargs: dict[str, Any]) -> tuple[RewardSettings, str]:
    """Settings from ``$ASMOPT_REWARD_SETTINGS`` overridden by ``reward_kwargs``, and the
    ``on_error`` policy. Raises :class:`RewardError` for anything unknown or malformed."""
    known = RewardSettings.__dataclass_fields__
    merged: dict[str, Any] = {}
    env = os.environ.get(SETTINGS_ENV)
    if env:
        try:
            from_env = json.loads(env)
        except json.JSONDecodeError as err:
            raise RewardError(f"${SETTINGS_ENV} is not JSON: {err}") from err
        if not isinstance(from_env, dict):
            raise RewardError(f"${SETTINGS_ENV} must be a JSON object of reward settings")
        merged.update(from_env)
    merged.update(kwargs)
    on_error = merged.pop("on_error", "score")
    if on_error not in ON_ERROR:
        raise RewardError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    unknown = set(merged) - set(known)
    if unknown:
        raise RewardError(
            f"unknown reward_kwargs {sorted(unknown)}; known: on_error, {', '.join(sorted(known))}"
        )
    try:
        return RewardSettings(**merged), on_error
    except TypeError as err:
        raise RewardError(f"bad reward settings {merged}: {err}") from err


def _log_failure(reward_name: str, extra_info: dict[str, Any] | None, err: Exception) -> None:
    row = "?"
    if isinstance(extra_info, dict):
        row = f"{extra_info.get('split', '?')}-{extra_info.get('index', '?')}"
    reason = f"{type(err).__name__}: {err}"
    log.warning(
        "asmopt reward %s failed for row %s, scored as a build failure: %s",
        reward_name, row, reason,
    )  # fmt: skip
    path = os.environ.get(ERROR_LOG_ENV)
    if path:
        record = {"time": time.time(), "reward": reward_name, "row": row, "reason": reason}
        try:
            with open(path, "a") as handle:  # one short line per write: appends stay whole
                handle.write(json.dumps(record) + "\n")
        except OSError as log_err:
            log.warning("cannot append to $%s=%s: %s", ERROR_LOG_ENV, path, log_err)


def _score_response(
    reward_name: str,
    solution_str: str,
    extra_info: dict[str, Any] | None,
    kwargs: dict[str, Any],
) -> float:
    settings, on_error = _settings_from(kwargs)  # configuration errors always raise
    reward = _reward_function(reward_name, settings)
    try:
        problem = Problem.from_extra_info(extra_info, settings.max_tests)
        asm = extract_answer(solution_str, settings.extraction)
        value = float(reward(_evaluator(settings).evaluate(asm, problem)))
        if not math.isfinite(value):
            raise RewardError(f"the reward is {value}, not a finite number")
    except Exception as err:
        if on_error == "raise":
            raise
        _log_failure(reward_name, extra_info, err)
        _count_failure(err)
        return float(reward(RewardInput.no_assembly()))
    global _failures_in_a_row
    with _FAILURES_LOCK:
        _failures_in_a_row = 0
    return value


def _count_failure(err: Exception) -> None:
    global _failures_in_a_row
    with _FAILURES_LOCK:
        _failures_in_a_row += 1
        count = _failures_in_a_row
    if count >= MAX_FAILURES_IN_A_ROW:
        raise RewardError(
            f"{count} rewards in a row could not be computed (the last: {type(err).__name__}: "
            f"{err}): the reward itself is broken, not a row; stopping rather than training on "
            f"noise. See ${ERROR_LOG_ENV} or the log"
        ) from err


def _reward_function(name: str, settings: RewardSettings) -> Callable[[RewardInput], float]:
    if name == "asmopt":
        config = RewardConfig(metric=settings.metric)
        return lambda r: reward_asmopt(r, config)
    return REWARDS[name]


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any = None,
    extra_info: dict[str, Any] | None = None,
    **reward_kwargs: Any,
) -> float:
    """verl custom reward, asmopt's default (:func:`reward_asmopt`).

    ``reward_kwargs`` (verl's ``custom_reward_function.reward_kwargs``) may set any
    :class:`RewardSettings` field, e.g. ``bench_budget``, and ``on_error`` ("score", the
    default: a row that cannot be judged is scored as a build failure and logged; "raise").
    """
    return _score_response("asmopt", solution_str, extra_info, reward_kwargs)


def compute_score_design1(
    data_source: Any,
    solution_str: str,
    ground_truth: Any = None,
    extra_info: dict[str, Any] | None = None,
    **reward_kwargs: Any,
) -> float:
    """verl custom reward: the paper's design 1 (:func:`reward_design1`), verified here in the
    sandbox with our benchmark."""
    return _score_response("design1", solution_str, extra_info, reward_kwargs)


def compute_score_design2(
    data_source: Any,
    solution_str: str,
    ground_truth: Any = None,
    extra_info: dict[str, Any] | None = None,
    **reward_kwargs: Any,
) -> float:
    """verl custom reward: the paper's design 2 (:func:`reward_design2`)."""
    return _score_response("design2", solution_str, extra_info, reward_kwargs)


VERL_FUNCTIONS = {
    "asmopt": "compute_score",
    "design1": "compute_score_design1",
    "design2": "compute_score_design2",
}
