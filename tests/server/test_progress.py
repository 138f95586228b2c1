"""Server-initiated work-done progress: create, then begin / report (one per stage) / end,
and asmopt/status notifications."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.asyncio


async def test_progress_begin_report_end_with_stages(workspace, lsp):
    lsp.set_fake(workspace, "faster")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await s.wait_for_lens(uri, "✓")
        await s.wait_for(lambda: any(k and k[-1] == "end" for k in s.progress_kinds()), what="end")
        ((_token, values),) = s.client.progress_reports.items()
        kinds = [v.kind for v in values]
        assert kinds[0] == "begin" and kinds[-1] == "end"
        assert set(kinds[1:-1]) == {"report"}
        begin = values[0]
        assert begin.cancellable is True
        assert "sum_to" in begin.title
        stages = [v.message.split(":")[0] for v in values[1:-1]]
        for stage in ("baseline", "generate", "verify", "benchmark"):
            assert stage in stages
        assert "1.31×" in values[-1].message
        states = [st["state"] if isinstance(st, dict) else st.state for st in s.statuses]
        assert "running" in states and states[-1] == "idle"


async def test_no_progress_without_client_support(workspace, lsp):
    from lsprotocol import types

    caps = types.ClientCapabilities()
    lsp.set_fake(workspace, "faster")
    async with lsp.session(workspace, capabilities=caps) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await s.wait_for_lens(uri, "✓")
        assert s.client.progress_reports == {}


async def test_the_lens_follows_the_progress_stage_and_a_refresh_follows_each(workspace, lsp):
    """Each stage change is followed by a lens refresh, and a lens asked for then shows the
    stage the progress last reported (never an older one)."""
    # Each stage lasts a second: time for a look at it on a loaded machine.
    lsp.set_fake(workspace, "faster", stage_delay=1.0)
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        seen = []
        while True:
            values = next(iter(s.client.progress_reports.values()), [])
            if values and values[-1].kind == "end":
                break
            reports = [v for v in values if v.kind == "report"]
            if reports:
                stage = reports[-1].message.split(":")[0]
                refreshes = s.refreshes
                await s.wait_for(
                    lambda r=refreshes, st=stage: s.refreshes > r or st in seen, timeout=5
                )
                titles = await s.lenses(uri)
                running = [t for t in titles if t.startswith("running")]
                latest = next(v for v in reversed(values) if v.kind == "report")
                # Unless the stage changed meanwhile (another report of the same stage, such
                # as a verdict line, changes nothing the lens shows).
                if running and latest.message.split(":")[0] == stage:
                    assert running[0] == f"running… ({stage})", (running, stage)
                    seen.append(stage)
            await asyncio.sleep(0.05)
        # (benchmark is the fake's last and shortest stage: the run may end before a look)
        assert {"baseline", "generate", "verify"} <= set(seen), seen
        await s.wait_for_lens(uri, "✓")


async def test_a_verified_speed_up_shows_beside_the_stage(workspace, lsp):
    """Once a candidate is verified faster the running lens says so, and still names the
    stage: the speed-up never takes the stage's place (the editor's stage stays true)."""
    lsp.set_fake(workspace, "so_far", stage_delay=0.8)
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await s.wait_for_lens(uri, "running… (verify · 1.31x so far, still measuring)")
        await s.wait_for_lens(uri, "✓")
