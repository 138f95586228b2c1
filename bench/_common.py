"""Shared pieces of the bench scripts: the programs under bench/programs, builds, hyperfine
(the paper's protocol), and plain-text tables.

Every script prints ratios measured in one run on this machine; none of them claims an
absolute time.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "programs"

try:
    from asmopt.executor.testcases import TestCase, load_tests
    from asmopt.executor.toolchain import build_binary, compile_to_asm
except ImportError as err:  # run with the system Python instead of the project's venv
    sys.exit(f"cannot import asmopt ({err}): run with .venv/bin/python, or pip install -e .")

# Programs whose tests run 20–200 ms each at gcc -O3, and programs whose runs are ~1 ms,
# where process start-up is nearly all of the time.
COMPUTE = ("sieve", "collatz", "editdist", "imatmul", "nbody", "isort", "hashcount", "mandel")
STARTUP = ("sumints", "gcd", "revwords", "fizz")


@dataclass(frozen=True)
class Program:
    name: str
    source: Path
    tests: tuple[TestCase, ...]


def load_program(name: str) -> Program:
    folder = PROGRAMS / name
    return Program(name, folder / f"{name}.c", tuple(load_tests(folder / "tests")))


def build(source: Path, out_dir: Path, tag: str, compiler: str, flags: Sequence[str]) -> Path:
    """``compiler -S flags`` then ``gcc x.s -o bin -lm`` (how every candidate is linked)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    asm = out_dir / f"{tag}.s"
    result = compile_to_asm(source, asm, compiler=compiler, flags=tuple(flags))
    if not result.ok:
        raise SystemExit(f"{compiler} {' '.join(flags)} {source} failed:\n{result.stderr}")
    binary = out_dir / f"{tag}.bin"
    result = build_binary([asm], binary)
    if not result.ok:
        raise SystemExit(f"linking {asm} failed:\n{result.stderr}")
    return binary


def identical_copy(binary: Path, copy: Path) -> Path:
    """A byte-identical copy of ``binary`` in a different file (a different inode)."""
    shutil.copyfile(binary, copy)
    os.chmod(copy, 0o755)
    if copy.read_bytes() != binary.read_bytes():
        raise SystemExit(f"copy of {binary} differs from the original")
    return copy


def require_hyperfine() -> str:
    path = shutil.which("hyperfine")
    if path is None:
        raise SystemExit(
            "hyperfine not found (the paper's protocol uses it): apt-get install hyperfine"
        )
    return path


# hyperfine 1.15 has no --input, and -N (no shell) cannot redirect stdin; through a shell,
# hyperfine subtracts the shell's spawn time and reports 0.0 s for ~1 ms programs. So each
# command is ``stdin_exec IN BIN``: a static helper that opens IN as stdin and execve()s BIN
# (the same process, no fork), timed by hyperfine -N. Both sides pay the same extra exec.
_STDIN_EXEC_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 3) return 127;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0 || dup2(fd, 0) < 0) { perror(argv[1]); return 127; }
    if (fd != 0) close(fd);
    execv(argv[2], argv + 2);
    perror(argv[2]);
    return 127;
}
"""


def stdin_exec(folder: Path) -> Path:
    """Build the stdin-redirecting exec helper (static when a static libc is installed)."""
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "stdin_exec.c"
    src.write_text(_STDIN_EXEC_C)
    out = folder / "stdin_exec"
    for flags in (["-O2", "-static"], ["-O2"]):
        proc = subprocess.run(["gcc", *flags, str(src), "-o", str(out)], capture_output=True)
        if proc.returncode == 0:
            return out
    raise SystemExit(f"cannot build the stdin helper:\n{proc.stderr.decode()}")


def hyperfine_means(
    helper: Path, commands: Sequence[tuple[Path, Path]], warmup: int = 3, runs: int = 10
) -> list[float]:
    """The paper's timing of one test: ``hyperfine --warmup 3 --runs 10`` over commands given
    as (binary, stdin file); returns each command's mean wall time in seconds.

    hyperfine runs all of the first command's runs, then all of the second's (sequential,
    not interleaved), timing wall-clock time.
    """
    exe = require_hyperfine()
    with tempfile.TemporaryDirectory(prefix="bench-hf-") as tmp:
        out = Path(tmp) / "hf.json"
        cmd = [exe, "-N", "--warmup", str(warmup), "--runs", str(runs), "--style", "none"]
        cmd += ["--export-json", str(out)]
        cmd += [shlex.join([str(helper), str(i), str(b)]) for b, i in commands]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"hyperfine failed:\n{proc.stderr}")
        data = json.loads(out.read_text())
    return [float(r["mean"]) for r in data["results"]]


def write_inputs(tests: Sequence[TestCase], folder: Path) -> list[Path]:
    """Each test's stdin as a file (hyperfine reads stdin from a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in tests:
        if t.args:
            raise SystemExit(f"test {t.name} has arguments; the bench programs take stdin only")
        p = folder / f"{t.name}.in"
        p.write_bytes(t.stdin)
        paths.append(p)
    return paths


def paper_speedup(base_means: Sequence[float], cand_means: Sequence[float]) -> float:
    """The paper's figure: per test mean_baseline / mean_candidate, clamped below at 1.0,
    averaged over tests."""
    per_test = [max(1.0, b / c) for b, c in zip(base_means, cand_means, strict=True)]
    return sum(per_test) / len(per_test)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, columns right-aligned except the first."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        rest = zip(r[1:], widths[1:], strict=True)
        parts = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in rest]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def machine_line() -> str:
    """Date, CPU count and load: the context every figure needs."""
    load = os.getloadavg()
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')}  {platform.machine()}  {os.cpu_count()} CPUs  "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}  {platform.processor() or ''}".rstrip()
    )


def percentile(values: Sequence[float], q: float) -> float:
    data = sorted(values)
    if not data:
        raise ValueError("no values")
    k = (len(data) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)
