"""A stand-in for ``asmopt.model.search.optimizer.optimize`` that the worker loads through
``ASMOPT_WORKER_OPTIMIZE``: same signature, same result types, no sandbox or benchmark.

What it does is read from ``fake.json`` beside the source (read on every call, so a test can
change it between runs): ``{"mode": ..., "stage_delay": seconds}`` with mode

- ``faster``: a winner 1.31× [1.27–1.35], 10/10 tests (the default);
- ``fail``: no winner, the closest candidate failed 3/10 tests;
- ``none``: no winner, a candidate that passed but was not faster;
- ``slow``: starts child processes in sessions of their own (as the sandbox does), then waits
  for the cancel event; ``stubborn``: the same but ignores the cancel;
- ``error``: raises OptimizeError; ``crash``: the process dies.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import types
from pathlib import Path

from asmopt.executor.results import SpeedupEstimate, TestStatus, TestVerdict, Verdict
from asmopt.executor.verify import VerificationResult
from asmopt.model.search.optimizer import OptimizeError, OptimizeOutcome, Stage
from asmopt.model.search.policy import Candidate
from asmopt.model.search.portfolio import Trial

MARKER = "# asmopt-fake-candidate"
CHILD_MARKER = "1000.4242"  # `sleep 1000.4242`: easy to find in /proc


def _baseline(source: Path) -> str:
    if source.suffix == ".c":
        done = subprocess.run(
            ["gcc", "-O3", "-S", str(source), "-o", "-"], capture_output=True, text=True, check=True
        )
        return done.stdout
    return source.read_text()


def _candidate(baseline: str, function: str | None) -> str:
    lines = baseline.splitlines()
    for i, line in enumerate(lines):
        if function is None or line.strip() == f"{function}:":
            lines.insert(i + 1, f"\t{MARKER}")
            break
    return "\n".join(lines) + "\n"


def _result(verdict: Verdict, passed: int, total: int, median: float | None) -> VerificationResult:
    tests = tuple(
        TestVerdict(
            f"t{i}",
            TestStatus.PASSED if i < passed else TestStatus.WRONG_OUTPUT,
            "" if i < passed else "expected 3, got 4",
        )
        for i in range(total)
    )
    speedup = None
    if median is not None:
        speedup = SpeedupEstimate(median, median - 0.04, median + 0.04, 40, 0.1, 0.1 / median)
    return VerificationResult(verdict, "c0ffee" + verdict.value, None, tests, speedup)


def optimize(request, *, store=None, progress=None, cancel=None, on_update=None, **_):
    outcome = _optimize(request, progress=progress, cancel=cancel, on_update=on_update)
    if store is not None:  # as the real one does
        outcome.record().save(store)
    return outcome


def _optimize(request, *, progress=None, cancel=None, on_update=None):
    source = Path(request.source)
    control = source.parent / "fake.json"
    config = json.loads(control.read_text()) if control.exists() else {}
    mode = config.get("mode", "faster")
    delay = float(config.get("stage_delay", 0.05))
    say = progress or (lambda stage, message: None)
    # What the real optimizer names: the target (a file without asmopt.toml is its own) and
    # the resolved source.
    target = request.config.target_for(source) if request.config is not None else None
    named = {"target": target.name if target else source.stem, "source": str(source.resolve())}
    (source.parent / "settings-seen.json").write_text(json.dumps(request.settings.to_dict()))
    if mode == "error":
        raise OptimizeError("no tests found for prog.c: put NAME.in files in a tests/ folder")
    if mode == "crash":
        os._exit(9)
    say(Stage.BASELINE, "gcc -O3: building")
    baseline = _baseline(source)
    if mode in ("slow", "stubborn"):
        # What the real optimizer leaves in the temporary folder while it works.
        scratch = Path(tempfile.mkdtemp(prefix="asmopt-cand-"))
        (scratch / "candidate.s").write_text(baseline if isinstance(baseline, str) else "x")
        children = [
            subprocess.Popen(["sleep", CHILD_MARKER], start_new_session=True) for _ in range(3)
        ]
        say(Stage.VERIFY, "running tests")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if mode == "slow" and cancel is not None and cancel.is_set():
                break
            time.sleep(0.02)
        del children  # left running on purpose: the worker and the server must kill them
        return OptimizeOutcome(
            None, (), baseline, request.function, "cancelled", cancelled=True, **named
        )
    for stage in (Stage.GENERATE, Stage.VERIFY, Stage.BENCHMARK):
        time.sleep(delay)
        say(stage, f"{stage} step")
        if mode == "so_far" and stage is Stage.GENERATE and on_update is not None:
            # What the real optimizer reports once a candidate is verified faster.
            on_update(types.SimpleNamespace(ci_low=1.27, median=1.31, label="clang -O3"))
    asm = _candidate(baseline, request.function)
    c = Candidate(asm=asm, policy="compiler", label="clang -O3", function=request.function)
    if mode in ("faster", "so_far"):
        ranked = Trial(c, _result(Verdict.FASTER, 10, 10, 1.31))
        return OptimizeOutcome(ranked, (ranked,), baseline, request.function, "1 faster", **named)
    if mode == "fail":
        ranked = Trial(c, _result(Verdict.TESTS_FAILED, 7, 10, None))
        return OptimizeOutcome(None, (ranked,), baseline, request.function, "all failed", **named)
    ranked = Trial(c, _result(Verdict.NOT_FASTER, 10, 10, 1.0))
    return OptimizeOutcome(None, (ranked,), baseline, request.function, "none faster", **named)


def profile_program(request, *, budget=8.0, every_test=False):
    """A stand-in for ``profile_program``: the profile under ``"profile"`` in ``fake.json``
    (``{"functions": {name: instructions}, "total": n}``, optional ``delay`` in seconds and
    ``fail``, a message to fail with after the delay), else none (an OptimizeError, so the
    sessions of the other tests show no shares). Each call appends a line to
    ``profiles-made.txt`` beside the source."""
    from asmopt.executor.profile import FunctionShare, Profile

    source = Path(request.source)
    control = source.parent / "fake.json"
    config = json.loads(control.read_text()) if control.exists() else {}
    wanted = config.get("profile")
    if not wanted:
        raise OptimizeError("fake: no profile asked for in fake.json")
    with open(source.parent / "profiles-made.txt", "a") as made:
        made.write(f"{source.name}\n")
    time.sleep(float(wanted.get("delay", 0.0)))
    if wanted.get("fail"):  # a profile that fails once it ran a while
        raise OptimizeError(str(wanted["fail"]))
    total = int(wanted["total"])
    counts = sorted(wanted["functions"].items(), key=lambda kv: -kv[1])
    functions = tuple(FunctionShare(n, v, v / total) for n, v in counts)
    own = sum(v for _, v in counts)
    return source.stem, Profile(total, own, functions, tests=("small",), seconds=0.1)
