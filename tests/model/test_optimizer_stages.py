"""The real optimizer (compiler policy, small budgets) reports its progress as typed stages,
and passes through every stage in order: baseline, generate, verify, benchmark."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from asmopt.model.search.optimizer import OptimizeRequest, Stage, optimize
from asmopt.model.settings import Settings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap"),
]

PROGRAM = """\
#include <stdio.h>

__attribute__((noinline)) long sum_to(long n)
{
    long s = 0;
    for (long i = 1; i <= n; i++)
        s += i * i % 7;
    return s;
}

int main(void)
{
    long n;
    if (scanf("%ld", &n) != 1)
        return 1;
    printf("%ld\\n", sum_to(n));
    return 0;
}
"""


def test_the_real_optimizer_reports_every_stage_in_order(tmp_path: Path) -> None:
    (tmp_path / "prog.c").write_text(PROGRAM)
    (tmp_path / "tests").mkdir()
    for name, n in (("small", 1000), ("big", 300000)):
        (tmp_path / "tests" / f"{name}.in").write_text(f"{n}\n")
    settings = Settings(policies=("compiler",), bench_budget=1.0, samples=1, test_timeout=5,
                        go_on=True)  # fmt: skip
    seen: list[tuple[Stage, str]] = []
    outcome = optimize(
        OptimizeRequest(tmp_path / "prog.c", "sum_to", settings),
        progress=lambda stage, message: seen.append((stage, message)),
    )
    assert all(type(stage) is Stage for stage, _ in seen), seen
    first_seen = list(dict.fromkeys(stage for stage, _ in seen))
    assert first_seen == [Stage.BASELINE, Stage.GENERATE, Stage.VERIFY, Stage.BENCHMARK], seen
    assert seen[-1][0] is Stage.BENCHMARK  # nothing is said of an earlier stage afterwards
    assert outcome.candidates  # it did verify something
    record = outcome.record()
    assert record.verdict in ("faster", "not-faster") and record.target == "prog"
