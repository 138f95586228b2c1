"""The real optimizer behind the server: one short run (compiler policy, 3 s benchmark
budget) ends with an honest lens, a stored result and no stuck progress."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

SETTINGS = {"policies": ["compiler"], "benchBudget": 3, "samples": 1, "testTimeout": 5}


async def test_real_optimize_function(workspace, lsp):
    # noinline: otherwise gcc folds sum_to into main and the optimizer says so instead
    source = lsp.PROG_C.replace(
        "long sum_to(long n)", "__attribute__((noinline)) long sum_to(long n)"
    )
    (workspace / "prog.c").write_text(source)
    async with lsp.session(workspace, settings=SETTINGS, optimizer="real") as s:
        uri = s.open("prog.c")
        assert await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await s.wait_for(
            lambda: s.progress_kinds() and s.progress_kinds()[0][-1] == "end",
            timeout=150,
            what="the run to end",
        )
        (values,) = s.client.progress_reports.values()
        stages = {v.message.split(":")[0] for v in values if v.kind == "report"}
        assert "baseline" in stages
        titles = await s.lenses(uri)
        assert not s.messages(), s.messages()
        end = values[-1].message
        assert titles[0].startswith(("✓", "✗", "no faster candidate")), (titles, end, s.messages())
        assert titles[1] == "Optimize"
        if titles[0].startswith("✓"):
            assert (await s.command("asmopt.applyCandidate", uri, "sum_to"))["applied"]
