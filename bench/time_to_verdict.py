"""Time to the verdict: `asmopt optimize` as it was (a git revision) against as it is now.

For each program it runs `asmopt optimize PROG.c --json` of both versions, one after the
other in alternating order (so both see the same machine), each in a fresh copy of the
program (no stored results), and prints:

- wall time to the final verdict of each, and their ratio (now / before);
- the winner of each, its speed-up and CI, and whether the new winner is the old one or one
  whose median lies within the old winner's CI;
- time to the first verified speed-up now (the first "so far:" or "faster:" line);

then an A/A check of the new code (a byte-identical copy of the baseline, timed with racing
on, is never called faster; and it is recognised as the baseline's machine code without
timing), and the time `asmopt profile` takes on the shipped align example (a program of
a few hundred milliseconds a test).

    .venv/bin/python bench/time_to_verdict.py [--before REV] [--also REV] [--only align,fizz]
        [--repeat N] [--skip-extras] [--json out]

``--also REV`` times a further revision in the same rotation (e.g. main when a piece of work
started, against which that work's own ratio is wanted); ``--repeat N`` times every program N
times and adds, per program, the ratio of the median wall times and the range of the runs'
own ratios (on a shared machine one run's ratio moves by a few hundredths either way);
``--skip-extras`` leaves out the A/A check and the profile timing.

Ratios are from this one run on this machine; the load is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import machine_line, table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The revision of main this work started from (before racing, streaming and the profile).
BEFORE = "ca767f6"
PROGRAMS = {
    "align": ROOT / "examples" / "align" / "align.c",
    "dispatch": ROOT / "examples" / "dispatch" / "dispatch.c",
    "fizz": HERE / "programs" / "fizz" / "fizz.c",  # start-up bound (~1 ms a test)
    "collatz": HERE / "compiler_programs" / "collatz" / "collatz.c",
    "nbody": HERE / "programs" / "nbody" / "nbody.c",  # float; clang -O3 wins by ~1.5x
}


def before_tree(rev: str, into: Path) -> Path:
    """An importable ``asmopt`` package of revision ``rev`` (git archive), for PYTHONPATH."""
    src = into / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    pkg = into / "pkg" / "asmopt"
    shutil.copytree(src / "asmopt", pkg)
    for layer in ("executor", "model", "server"):
        (pkg / layer).symlink_to(src / layer, target_is_directory=True)
    return into / "pkg"


def workspace(source: Path, into: Path) -> Path:
    """A fresh copy of the program and its tests, with its own (empty) result store."""
    into.mkdir(parents=True)
    shutil.copy(source, into / source.name)
    shutil.copytree(source.parent / "tests", into / "tests")
    (into / ".git").mkdir()
    return into / source.name


def run_optimize(pythonpath: Path | None, source: Path, extra: list[str]) -> dict:
    """One `asmopt optimize --json`: wall time, time of the first streamed verdict line,
    and the winner."""
    env = {**os.environ, "COLUMNS": "200"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    cmd = [sys.executable, "-m", "asmopt.cli", "optimize", source.name, "--json", *extra]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=source.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    first: dict[str, float] = {}
    err_lines: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            err_lines.append(line)
            if line.startswith(("so far:", "faster:")) and "first" not in first:
                first["first"] = time.monotonic() - started

    reader = threading.Thread(target=read_stderr)
    reader.start()
    out = proc.stdout.read() if proc.stdout else ""
    proc.wait()
    reader.join()
    wall = time.monotonic() - started
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        data = {"verdict": "error", "message": "".join(err_lines)[-400:]}
    speedup = data.get("speedup") or {}
    return {
        "wall": wall,
        "first": first.get("first"),
        "exit": proc.returncode,
        "verdict": data.get("verdict"),
        "label": data.get("label"),
        "median": speedup.get("median"),
        "ci": (speedup.get("ci_low"), speedup.get("ci_high")),
        "message": data.get("message", ""),
        "candidates": len(data.get("candidates", ())),
        # What was judged, how many rounds each was timed (0: not timed), and its figures
        # (median, CI; the screening's for a candidate not measured again).
        "trials": [_trial(c) for c in data.get("candidates", ())],
        "rounds": sum((c.get("speedup") or {}).get("runs", 0) for c in data.get("candidates", ())),
        "notes": data.get("notes", []),
    }


def _trial(c: dict) -> tuple:
    s = c.get("speedup") or {}
    return (c.get("kind"), c.get("label"), s.get("runs", 0), s.get("median"), s.get("ci_low"),
            s.get("ci_high"))  # fmt: skip


def same_or_within(before: dict, after: dict) -> str:
    if before["verdict"] != "faster" or after["verdict"] != "faster":
        return "yes" if before["verdict"] == after["verdict"] else "NO"
    if before["label"] == after["label"]:
        return "same"
    low, high = before["ci"]
    if low <= after["median"] <= high:
        return "within CI"
    # Not the criterion, but what tells a tie from a different answer: each winner's
    # median inside the other's CI.
    now_low, now_high = after["ci"]
    tie = now_low <= before["median"] <= now_high
    return "NO (ties: the old median is inside the new CI)" if tie else "NO"


def aa_check(trials: int) -> list[list[object]]:
    """A byte-identical copy of the baseline through the new portfolio: timed (same_code
    off, racing on) it must never be faster; with same_code on it is not timed at all."""
    from asmopt.executor.benchmark import BenchmarkOptions
    from asmopt.executor.sandbox import Sandbox
    from asmopt.executor.testcases import load_tests
    from asmopt.executor.verify import VerifyOptions, prepare_baseline
    from asmopt.model.search.policy import Candidate, Request
    from asmopt.model.search.portfolio import optimize

    class Copy:
        name = "copy"

        def __init__(self, asm: str) -> None:
            self.asm = asm

        def propose(self, request, n=1):
            return [Candidate(asm=self.asm, policy="copy", label="identical copy")]

    rows = []
    for name in ("align", "fizz"):
        source = PROGRAMS[name]
        tests = load_tests(source.parent / "tests")
        opts = VerifyOptions(bench=BenchmarkOptions(budget_seconds=20))
        with Sandbox() as sandbox, tempfile.TemporaryDirectory() as tmp:
            base = prepare_baseline(source, tests, Path(tmp), sandbox, options=opts)
            copy = base.asm + "\n# the same program\n"
            request = Request(baseline_asm=base.asm, source_path=source)
            faster = 0
            for _ in range(trials):
                result = optimize(
                    request, [Copy(copy)], base, sandbox, opts, mix=False, confirm=0,
                    same_code=False, workers=1,
                )  # fmt: skip
                faster += result.winner is not None
            shared = optimize(request, [Copy(copy)], base, sandbox, opts, mix=False, confirm=0)
            t = shared.trials[0]
            rows.append(
                [name, f"{faster}/{trials}", t.result.message[:50], t.result.speedup is None]
            )
    return rows


def profile_time(source: Path, tmp: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `asmopt profile` on ``source`` (fresh copy)."""
    prog = workspace(source, tmp / "profile")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "asmopt.cli", "profile", prog.name],
        cwd=prog.parent, check=True, capture_output=True,
    )  # fmt: skip
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="git revision to compare against")
    parser.add_argument("--only", default="align,dispatch,fizz", help="programs to run")
    parser.add_argument("--budget", type=float, default=None, help="--budget for both")
    parser.add_argument("--also", default=None, help="a further revision to time (main)")
    parser.add_argument("--aa-trials", type=int, default=2)
    parser.add_argument(
        "--repeat", type=int, default=1, help="time each program this many times (its spread)"
    )
    parser.add_argument("--skip-extras", action="store_true", help="no A/A check, no profile")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    extra = ["--budget", str(args.budget)] if args.budget else []
    names = [n for n in args.only.split(",") if n]
    print(machine_line(), flush=True)
    record: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ttv-") as tmp_name:
        tmp = Path(tmp_name)
        trees: dict[str, Path | None] = {"before": before_tree(args.before, tmp / "before")}
        if args.also:
            trees["also"] = before_tree(args.also, tmp / "also")
        trees["now"] = None
        runs_of = {
            _key(name, k): time_versions(name, trees, i + k, tmp / f"run{k}", extra)
            for k in range(args.repeat)
            for i, name in enumerate(names)
        }
        record.update(runs_of)
        print()
        print(results_table(runs_of, args.also))
        if args.repeat > 1:
            print()
            print(spread_table(runs_of, names))
        if not args.skip_extras:
            print()
            aa = aa_check(args.aa_trials)
            print(table(["A/A program", "copy called faster", "shared verdict", "not timed"], aa))
            wall, cpu = profile_time(PROGRAMS["align"], tmp)
            print(f"\nasmopt profile examples/align/align.c: {wall:.1f} s wall, {cpu:.1f} s CPU")
            record["aa"] = aa
            record["profile"] = {"wall": wall, "cpu": cpu}
        print(machine_line())
    if args.json:
        args.json.write_text(json.dumps(record, indent=2, default=str))
    return 0


def time_versions(
    name: str, trees: dict[str, Path | None], i: int, tmp: Path, extra: list[str]
) -> dict[str, dict]:
    """One `asmopt optimize` of ``name`` by each version, in an order rotated by ``i`` (so no
    version always meets a warmer machine), each in a fresh copy of the program."""
    order = list(trees)
    order = order[i % len(order) :] + order[: i % len(order)]
    runs = {}
    for which in order:
        src = workspace(PROGRAMS[name], tmp / which / name)
        runs[which] = r = run_optimize(trees[which], src, extra)
        print(
            f"  {name} {which}: {r['wall']:.0f} s, {r['verdict']} {r['label']} "
            f"{r['median']} {r['ci']}; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    return runs


def _key(name: str, k: int) -> str:
    """The record key of run ``k`` of ``name`` (``name`` alone for the first)."""
    return name if k == 0 else f"{name}#{k + 1}"


def spread_table(runs_of: dict[str, dict[str, dict]], names: list[str]) -> str:
    """Per program over its repeated runs: each version's wall times, the ratio of their
    medians and the range of the runs' own ratios (each run's before and now are one pair)."""
    rows = []
    for name in names:
        pairs = [r for key, r in runs_of.items() if key.split("#")[0] == name]
        before = sorted(r["before"]["wall"] for r in pairs)
        now = sorted(r["now"]["wall"] for r in pairs)
        ratios = sorted(r["now"]["wall"] / r["before"]["wall"] for r in pairs)
        rows.append([
            name, str(len(pairs)),
            " ".join(f"{w:.0f}" for w in before), " ".join(f"{w:.0f}" for w in now),
            f"{statistics.median(now) / statistics.median(before):.2f}",
            f"{ratios[0]:.2f}–{ratios[-1]:.2f}",
        ])  # fmt: skip
    headers = ["program", "runs", "before s", "now s", "median now/before", "per-run ratios"]
    return table(headers, rows)


def results_table(runs_of: dict[str, dict[str, dict]], also: str | None) -> str:
    headers = ["program", "before s"] + (["main s"] if also else []) + ["now s", "now/before"]
    headers += (["now/main"] if also else []) + ["first verified s", "winner before"]
    headers += ["winner now", "same winner"]
    rows = []
    for name, runs in runs_of.items():
        b, a = runs["before"], runs["now"]
        row = [name, f"{b['wall']:.0f}"] + ([f"{runs['also']['wall']:.0f}"] if also else [])
        row += [f"{a['wall']:.0f}", f"{a['wall'] / b['wall']:.2f}"]
        row += [f"{a['wall'] / runs['also']['wall']:.2f}"] if also else []
        row += ["—" if a["first"] is None else f"{a['first']:.0f}"]
        row += [f"{b['label']} {_x(b)}", f"{a['label']} {_x(a)}", same_or_within(b, a)]
        rows.append(row)
    return table(headers, rows)


def _x(r: dict) -> str:
    if r["verdict"] != "faster" or r["median"] is None:
        return f"({r['verdict']})"
    low, high = r["ci"]
    return f"{r['median']:.2f}x [{low:.2f}–{high:.2f}]"


if __name__ == "__main__":
    sys.exit(main())
