"""What the verdict-integrity checks cost per candidate, against the code before them.

The checks: candidates assembled and linked inside the sandbox, every timed run's output
checked, tests and timing in one sandbox session per binary, CPU time from the sandbox's
cgroup. "Before" is commit 11f456c (builds on the host, one sandbox per test, unchecked
timing in one shared session, rusage), run from a git worktree of that commit in a
subprocess; "now" is this checkout. Both verify the same candidates (compiler variants of
bench programs against their gcc -O3 build) with the same fixed amount of timing (10 rounds,
so the work does not depend on how fast a CI narrows), alternating before/now per program so
both see the same machine. A third column times the build alone: host vs sandbox.

Run:  .venv/bin/python bench/integrity_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BEFORE = "11f456c"
PROGRAMS = ["collatz", "sieve", "isort", "hashcount", "mandel", "sumints"]
VARIANTS = {"gcc -O2": ("gcc", ["-O2"]), "clang -O3": ("clang", ["-O3", "-fno-addrsig"])}

WORKER = r"""
import json, sys, time, tempfile, subprocess
from pathlib import Path
from asmopt.executor.benchmark import BenchmarkOptions
from asmopt.executor.sandbox import Sandbox
from asmopt.executor.testcases import load_tests
from asmopt.executor.verify import VerifyOptions, prepare_baseline, verify_candidate
program, rounds = Path(sys.argv[1]), int(sys.argv[2])
variants = json.loads(sys.argv[3])
tests = load_tests(program / "tests")[:5]
timing = BenchmarkOptions(min_rounds=rounds, max_rounds=rounds, budget_seconds=1e9)
opts = VerifyOptions(bench=timing)
out = {}
with tempfile.TemporaryDirectory() as tmp, Sandbox() as sb:
    source = program / (program.name + ".c")
    base = prepare_baseline(source, tests, Path(tmp) / "b", sb, options=opts)
    for label, (cc, flags) in variants.items():
        asm = subprocess.run([cc, "-S", *flags, "-o", "-", str(program / (program.name + ".c"))],
                             capture_output=True, text=True, check=True).stdout
        t = time.perf_counter()
        r = verify_candidate(asm, base, sb, opts)
        out[label] = {"seconds": time.perf_counter() - t, "verdict": r.verdict.value,
                      "median": r.speedup.median if r.speedup else None}
print("RESULT " + json.dumps(out))
"""

BUILD_WORKER = r"""
import json, sys, time, subprocess, tempfile
from pathlib import Path
from asmopt.executor.sandbox import Sandbox
from asmopt.executor.toolchain import build_binary
program = Path(sys.argv[1])
asm = subprocess.run(["gcc", "-O2", "-S", "-o", "-", str(program / (program.name + ".c"))],
                     capture_output=True, text=True, check=True).stdout
res = {"host": [], "sandbox": []}
with tempfile.TemporaryDirectory() as tmp, Sandbox() as sb:
    src = Path(tmp) / "c.s"; src.write_text(asm)
    for _ in range(5):
        for mode in ("host", "sandbox"):
            t = time.perf_counter()
            r = build_binary([src], Path(tmp) / "c.bin", sandbox=sb if mode == "sandbox" else None)
            assert r.ok, r.stderr
            res[mode].append(time.perf_counter() - t)
print("RESULT " + json.dumps(res))
"""


def _shim(checkout: Path, dest: Path) -> Path:
    """A folder that imports ``checkout`` as the ``asmopt`` package, as its install does."""
    pkg = dest / "asmopt"
    pkg.mkdir(parents=True)
    for f in (checkout / "asmopt").iterdir():
        (pkg / f.name).symlink_to(f)
    for layer in ("executor", "model", "server"):
        (pkg / layer).symlink_to(checkout / layer)
    return dest


def _run(pythonpath: Path, code: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd="/"
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"worker failed:\n{proc.stderr[-2000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="two programs, 4 rounds")
    args = ap.parse_args()
    programs = PROGRAMS[:2] if args.quick else PROGRAMS
    rounds = 4 if args.quick else 10
    with tempfile.TemporaryDirectory(prefix="asmopt-integrity-") as tmp:
        tmp_path = Path(tmp)
        before = tmp_path / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), BEFORE],
            check=True,
            capture_output=True,
        )
        try:
            paths = {
                "before": _shim(before, tmp_path / "p-before"),
                "now": _shim(ROOT, tmp_path / "p-now"),
            }
            rows = []
            started = time.monotonic()
            for i, name in enumerate(programs):
                prog = HERE / "programs" / name
                order = ("before", "now") if i % 2 == 0 else ("now", "before")
                got = {
                    side: _run(paths[side], WORKER, str(prog), str(rounds), json.dumps(VARIANTS))
                    for side in order
                }
                for label in VARIANTS:
                    b, n = got["before"][label], got["now"][label]
                    rows.append(
                        (
                            name,
                            label,
                            b["seconds"],
                            n["seconds"],
                            b["verdict"],
                            n["verdict"],
                            b["median"],
                            n["median"],
                        )
                    )
                    print(
                        f"{name:10s} {label:10s} before {b['seconds']:6.2f} s  "
                        f"now {n['seconds']:6.2f} s  ratio {n['seconds'] / b['seconds']:.2f}  "
                        f"verdicts {b['verdict']}/{n['verdict']}  "
                        f"speed-up {b['median'] or 0:.2f}/{n['median'] or 0:.2f}",
                        flush=True,
                    )
            build = _run(paths["now"], BUILD_WORKER, str(HERE / "programs" / programs[0]))
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)],
                capture_output=True,
            )
    ratios = [n / b for _, _, b, n, *_ in rows]
    host, box = statistics.median(build["host"]), statistics.median(build["sandbox"])
    print()
    print(
        f"candidates: {len(rows)}, {rounds} timing rounds each, {time.monotonic() - started:.0f} s"
    )
    print(
        f"verify time per candidate, now / before: median {statistics.median(ratios):.2f}, "
        f"min {min(ratios):.2f}, max {max(ratios):.2f}"
    )
    print(
        f"build alone (gcc x.s -o bin -lm), sandbox / host: {box / host:.2f} "
        f"({box * 1000:.0f} ms vs {host * 1000:.0f} ms, median of 5)"
    )
    same = sum(1 for r in rows if r[4] == r[5])
    print(f"same verdict before and now: {same}/{len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
