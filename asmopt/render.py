"""Terminal rendering of verdicts (rich), shared by `verify`, `optimize` and `bench`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from asmopt.executor.results import SpeedupEstimate
    from asmopt.executor.verify import VerificationResult

STATUS_STYLE = {
    "passed": "green",
    "wrong-output": "red",
    "crashed": "red",
    "nonzero-exit": "red",
    "timed-out": "yellow",
    "out-of-memory": "yellow",
    "output-too-large": "yellow",
    "blocked-by-sandbox": "magenta",
    "inconsistent": "magenta",
}


def format_speedup(s: SpeedupEstimate | None) -> str:
    """`1.31× [1.27–1.35]`, the one way a speed-up is written everywhere."""
    if s is None:
        return "—"
    return f"{s.median:.2f}× [{s.ci_low:.2f}–{s.ci_high:.2f}]"


def format_wall(s: SpeedupEstimate | None) -> str:
    """The wall-clock ratio beside the CPU figure: `wall 1.29× [1.20–1.37]`."""
    if s is None or s.wall_median is None:
        return ""
    return f"wall {s.wall_median:.2f}× [{s.wall_ci_low:.2f}–{s.wall_ci_high:.2f}]"


def print_verification(console: Console, result: VerificationResult, name: str) -> None:
    """Per-test verdicts, then the speed-up with its CI and how it was measured."""
    if result.build is not None and not result.build.ok:
        console.print(f"[bold red]build failed[/] for {name}")
        for d in result.build.diagnostics:
            where = f"{d.file}:{d.line}" if d.line else (d.file or "")
            console.print(escape(f"  {where}: {d.severity.value}: {d.message}"))
        if not result.build.diagnostics:
            console.print(escape(result.build.stderr))
        return
    table = Table(title=f"{name}: {result.tests_passed}/{len(result.tests)} tests passed")
    table.add_column("test")
    table.add_column("verdict")
    table.add_column("detail", overflow="fold")
    for t in result.tests:
        style = STATUS_STYLE.get(t.status.value, "white")
        table.add_row(escape(t.name), f"[{style}]{t.status.value}[/]", escape(t.detail))
    console.print(table)
    s = result.speedup
    if s is not None:
        source = "cgroup" if s.cpu_source == "cgroup" else "rusage"
        console.print(
            f"speed-up vs baseline: [bold]{format_speedup(s)}[/] (median of {s.runs} "
            f"interleaved rounds, 95% CI of the median; CPU time of every process, by "
            f"{source}: {s.baseline_cpu_seconds * 1e3:.1f} ms → "
            f"{s.candidate_cpu_seconds * 1e3:.1f} ms); {format_wall(s)}"
        )
        if s.note:
            console.print(f"[yellow]note:[/] {escape(s.note)}")
    colour = {"faster": "green", "not-faster": "yellow"}.get(result.verdict.value, "red")
    console.print(f"verdict: [bold {colour}]{result.verdict.value}[/] — {escape(result.message)}")


def print_outcome(console: Console, outcome, limit: int = 12) -> None:  # OptimizeOutcome
    """The candidates table (policy, tests passed, speed-up with CI) and the winner; the best
    ``limit`` candidates are listed, the rest counted (``--json`` lists them all)."""
    title = f"{outcome.target}: candidates vs gcc -O3"
    if outcome.function:
        title += f" (function {outcome.function})"
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("policy")
    table.add_column("candidate", overflow="fold")
    table.add_column("tests")
    table.add_column("speed-up [95% CI]", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for i, ranked in enumerate(outcome.candidates[:limit], 1):
        r = ranked.result
        tests = f"{r.tests_passed}/{len(r.tests)}" if r.tests else "—"
        colour = {"faster": "green", "not-faster": "yellow"}.get(r.verdict.value, "red")
        label = ranked.candidate.label or ranked.candidate.policy
        table.add_row(
            str(i),
            ranked.candidate.policy,
            escape(label),
            tests,
            format_speedup(r.speedup),
            f"[{colour}]{r.verdict.value}[/]",
        )
    console.print(table)
    hidden = len(outcome.candidates) - limit
    if hidden > 0:
        failed = sum(1 for c in outcome.candidates[limit:] if not c.result.all_passed)
        console.print(
            f"[dim]… and {hidden} more candidates ({failed} failed a test); --json lists all[/]"
        )
    for reason in outcome.unusable:
        console.print(f"[dim]no candidate: {escape(reason)}[/]")
    for note in getattr(outcome, "target_notes", ()):
        console.print(f"[dim]note: {escape(note)}[/]")
    if outcome.winner is not None:
        w = outcome.winner
        console.print(
            f"[bold green]winner:[/] {escape(w.candidate.label or w.candidate.policy)} — "
            f"{w.result.tests_passed}/{len(w.result.tests)} tests, "
            f"[bold]{format_speedup(w.result.speedup)}[/] vs gcc -O3"
        )
        if w.result.speedup is not None and w.result.speedup.note:
            console.print(f"[yellow]note:[/] {escape(w.result.speedup.note)}")
    else:
        console.print(f"[yellow]no faster candidate:[/] {escape(outcome.message)}")


def print_instructions(console: Console, counts: dict) -> None:
    """callgrind counts, named as instructions: they are not time."""
    if "error" in counts:
        console.print(f"[yellow]instructions: not counted[/] — {escape(counts['error'])}")
        return
    ratio = counts.get("ratio")
    if ratio is None:
        change = ""
    elif ratio >= 1:
        change = f" ({ratio:.2f}× fewer)"
    else:
        change = f" ({1 / ratio:.2f}× more)"
    console.print(
        "instructions executed (callgrind, the program's own code; not time): "
        f"{counts['baseline']:,} → {counts['candidate']:,}{change}"
    )
