"""asmopt bench end to end: directory -> parquet -> read -> bench -> report, resume, bad rows."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from asmopt.cli import main
from asmopt.executor.benchmark import BenchmarkOptions
from asmopt.executor.sandbox import SandboxLimits
from asmopt.executor.verify import VerifyOptions
from asmopt.model.evaluation.dataset import make_row, read_dataset, write_parquet
from asmopt.model.evaluation.dataset_build import BuildOptions, build_dataset
from asmopt.model.evaluation.evaluate import (
    BaselineCopyPolicy,
    BenchError,
    BenchInterrupted,
    BenchOptions,
    PolicySpec,
    run_bench,
)
from asmopt.model.evaluation.report import build_report, write_report
from asmopt.model.search.policy import Candidate, NoCandidate, Request

PROGRAMS = Path(__file__).resolve().parent.parent / "data" / "programs"
SUBSET = ("sum_ab", "gcd_lcm", "max_subarray")
VERIFY = VerifyOptions(
    bench=BenchmarkOptions(
        min_rounds=3, max_rounds=20, budget_seconds=0.3, target_rel_ci=0.05, bootstrap_resamples=200
    ),
    limits=SandboxLimits(wall_seconds=5, cpu_seconds=5),
)
INLINE = BenchOptions(workers=1, verify=VERIFY)


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    for name in SUBSET:
        shutil.copytree(PROGRAMS / name, root / "src" / name)
    build_dataset(
        root / "src", root / "ds", BuildOptions(val_fraction=0.0, timeout=5.0, bench_budget=1.0)
    )
    return root / "ds" / "train.parquet"


@dataclass
class GarbagePolicy:
    name: str = "garbage"

    def propose(self, request: Request, n: int = 1):
        return [Candidate(asm="this is not assembly\n", policy=self.name, label="garbage")] * n


@dataclass
class ClangPolicy:
    """clang -O3 of the request's C source: a real, different, correct candidate."""

    name: str = "clang"

    def propose(self, request: Request, n: int = 1):
        assert request.c_source is not None
        proc = subprocess.run(
            ["clang", "-O3", "-fno-addrsig", "-S", "-x", "c", "-", "-o", "-"],
            input=request.c_source,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            return [NoCandidate(self.name, proc.stderr[:200])]
        return [Candidate(asm=proc.stdout, policy=self.name, label="clang -O3")] * n


def three_policies():
    return [BaselineCopyPolicy(), GarbagePolicy(), ClangPolicy()]


def test_round_trip_directory_parquet_bench_report(parquet: Path, tmp_path: Path) -> None:
    data = read_dataset(parquet)
    assert sorted(p.name for p in data) == sorted(SUBSET)
    seen = []
    result = run_bench(
        data,
        three_policies,
        tmp_path,
        INLINE,
        on_row=lambda row, done, total: seen.append((row.name, done, total)),
    )
    assert result.complete and len(result.rows) == 3
    assert [s[1] for s in seen] == [1, 2, 3]
    has_clang = shutil.which("clang") is not None
    for row in result.rows:
        assert row.status == "done"
        copy, garbage, clang = row.samples
        assert copy.outcome.identical and copy.outcome.all_passed
        assert copy.verdict == "not-faster"  # a copy is never "faster"
        assert not garbage.outcome.compiled and garbage.verdict == "build-failed"
        if has_clang:
            assert clang.outcome.compiled and not clang.outcome.identical
            assert (
                clang.outcome.tests_passed
                == clang.outcome.tests_total
                == len(data.problems[row.row].tests)
            )
    report = build_report(result, data=str(parquet), options={"samples": 1})
    assert report["complete"] and report["status"] == "complete"
    assert report["paper"]["compile_rate"] == 100.0
    assert report["paper"]["pass_rate"] == 100.0  # every row has a passing (copy) sample
    for key in (
        "compile_rate",
        "pass_rate",
        "mean_speedup",
        "geomean_speedup",
        "p25",
        "p50",
        "p75",
    ):
        assert key in report["paper"]
    for key in (
        "pass_rate",
        "geomean_speedup",
        "ci_low",
        "ci_high",
        "faster_share",
        "slower_share",
    ):
        assert key in report["honest"]
    written = write_report(report, tmp_path)
    names = {p.name for p in written}
    assert {"report.json", "report.md", "speedup_distribution.png", "per_program.png"} <= names
    assert (tmp_path / "per_program.png").read_bytes().startswith(b"\x89PNG")
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert len(on_disk["rows"]) == 3 and on_disk["complete"]
    assert "Status: **complete**" in (tmp_path / "report.md").read_text()
    assert not list(tmp_path.glob("*.tmp"))


def test_an_interrupted_run_resumes_without_redoing_rows(parquet: Path, tmp_path: Path) -> None:
    data = read_dataset(parquet)
    calls: list[str] = []

    @dataclass
    class Interrupting:
        name: str = "interrupting"

        def propose(self, request: Request, n: int = 1):
            calls.append(request.c_source or "")
            if len(calls) == 2:
                raise KeyboardInterrupt
            return [Candidate(asm=request.baseline_asm, policy=self.name)] * n

    def factory():
        return [Interrupting()]

    with pytest.raises(BenchInterrupted) as info:
        run_bench(data, factory, tmp_path, INLINE, generate_in_workers=True)
    assert info.value.done == 1 and info.value.total == 3
    cached = []
    result = run_bench(
        data,
        factory,
        tmp_path,
        INLINE,
        generate_in_workers=True,
        on_row=lambda row, done, total: cached.append(row.cached),
    )
    assert result.complete
    assert cached == [True, False, False]  # the finished row came from the store
    assert len(calls) == 4  # 2 before the interruption, 2 after: row 1 was not redone
    again = run_bench(data, factory, tmp_path, INLINE, generate_in_workers=True)
    assert all(r.cached for r in again.rows) and len(calls) == 4


def test_a_baseline_that_does_not_assemble_is_excluded_not_fatal(tmp_path: Path) -> None:
    good = make_row(
        c_source="int main(void){return 0;}\n",
        o3_asm="\t.text\n\t.globl main\n\t.type main, @function\nmain:\n\txorl %eax, %eax\n\tret\n",
        inputs=["", "x\n"],
        outputs=["", ""],
        split="val",
        index=0,
        baseline_binary=None,
    )
    bad = make_row(
        c_source="int main(void){return 0;}\n",
        o3_asm="\t.text\nmain:\n\tnot_an_instruction %eax\n",
        inputs=[""],
        outputs=[""],
        split="val",
        index=1,
        baseline_binary=None,
    )
    path = write_parquet([good, bad], tmp_path / "rows.parquet")
    result = run_bench(read_dataset(path), lambda: [BaselineCopyPolicy()], tmp_path / "o", INLINE)
    statuses = {r.name: r.status for r in result.rows}
    assert statuses == {"val-0": "done", "val-1": "baseline-failed"}
    report = build_report(result, data=str(path))
    assert report["complete"]
    assert report["counts"]["rows_excluded"] == 1
    assert "does not link" in report["excluded"][0]["message"]
    assert report["paper"]["problems"] == 1


def test_process_pool(parquet: Path, tmp_path: Path) -> None:
    spec = PolicySpec(names=("baseline",))
    options = BenchOptions(workers=2, verify=VERIFY)
    result = run_bench(read_dataset(parquet), spec, tmp_path, options)
    assert result.complete
    assert all(r.status == "done" and r.samples[0].outcome.identical for r in result.rows)


def test_unreachable_ray_address_is_a_clear_error(parquet: Path, tmp_path: Path) -> None:
    options = BenchOptions(ray_address="127.0.0.1:1", verify=VERIFY)
    with pytest.raises(BenchError, match=r"no Ray cluster answers at 127.0.0.1:1|pip install"):
        run_bench(read_dataset(parquet), PolicySpec(names=("baseline",)), tmp_path, options)


@pytest.mark.slow
def test_ray_farm_on_a_local_loopback_cluster(parquet: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    options = BenchOptions(ray_address="local", workers=2, verify=VERIFY)
    result = run_bench(read_dataset(parquet), PolicySpec(names=("baseline",)), tmp_path, options)
    assert result.complete and len(result.rows) == 3
    assert all(r.samples[0].outcome.all_passed for r in result.rows)


# --------------------------------------------------------------------------- CLI


def test_cli_dataset_and_bench(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(PROGRAMS / "sum_ab", src / "sum_ab")
    shutil.copytree(PROGRAMS / "fib_mod", src / "fib_mod")
    runner = CliRunner()
    built = runner.invoke(
        main, ["dataset", "build", str(src), "--out", str(tmp_path / "ds"), "--val", "0.5"]
    )
    assert built.exit_code == 0, built.output
    assert "1 train, 1 val, 0 dropped" in built.output
    shown = runner.invoke(main, ["dataset", "show", str(tmp_path / "ds" / "train.parquet")])
    assert shown.exit_code == 0 and "train.parquet" in shown.output
    shown = runner.invoke(main, ["dataset", "show", "--json", str(tmp_path / "ds" / "val.parquet")])
    assert json.loads(shown.output)["rows"] == 1
    out = tmp_path / "bench"
    args = ["bench", str(tmp_path / "ds" / "train.parquet"), "--policy", "baseline",
            "--workers", "1", "--budget", "0.3", "--out", str(out)]  # fmt: skip
    ran = runner.invoke(main, args)
    assert ran.exit_code == 0, ran.output
    report = json.loads((out / "report.json").read_text())
    assert report["paper"]["pass_rate"] == 100.0
    assert report["honest"]["pass_rate"] == 0.0  # a copy of the baseline is no success
    assert report["honest"]["faster_share"] == 0.0


def test_cli_interrupted_bench_leaves_no_report(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "src"
    shutil.copytree(PROGRAMS / "sum_ab", src / "sum_ab")
    build_dataset(src, tmp_path / "ds", BuildOptions(val_fraction=0.0, timeout=5.0))
    out = tmp_path / "bench"
    out.mkdir()
    (out / "report.json").write_text('{"complete": true}')  # from an earlier run

    def interrupted(*args, **kwargs):
        raise BenchInterrupted(0, 1)

    monkeypatch.setattr("asmopt.model.evaluation.evaluate.run_bench", interrupted)
    ran = CliRunner().invoke(
        main,
        [
            "bench",
            str(tmp_path / "ds" / "train.parquet"),
            "--policy",
            "baseline",
            "--out",
            str(out),
        ],
    )
    assert ran.exit_code == 130
    assert not (out / "report.json").exists()


def test_cli_bench_bad_data(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"extra_info": {"inputs": [], "outputs": []}}\n')
    ran = CliRunner().invoke(main, ["bench", str(tmp_path / "x.jsonl"), "--out", str(tmp_path)])
    assert ran.exit_code == 2
    assert "row 0" in ran.output
