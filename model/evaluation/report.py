"""The report of an ``asmopt bench`` run: report.json, report.md and two PNG plots.

The paper's figures (for comparison with its tables) sit beside honest ones (unclamped, with
confidence intervals, copies of the baseline not counted as successes); report.md says how
each differs. Every file is written under a temporary name and renamed into place, report.json
last, so a reader never sees a half-written report; a run with rows still missing or failed is
marked ``"status": "partial"`` in both files.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmopt.model.evaluation.metrics import (
    best_of_n,
    honest_choice,
    honest_metrics,
    paper_metrics,
    paper_speedup,
)

if TYPE_CHECKING:
    from asmopt.model.evaluation.records import BenchResult, RowResult

__all__ = ["PLOTS", "build_report", "render_markdown", "write_report"]

PLOTS = ("speedup_distribution.png", "per_program.png")
REPORT_VERSION = 1


def _row_entry(row: RowResult) -> dict[str, Any]:
    outcomes = row.outcomes()
    entry: dict[str, Any] = {
        "name": row.name,
        "row": row.row,
        "status": row.status,
        "message": row.message,
        "seconds": round(row.seconds, 3),
        "samples": [
            {
                "index": s.index,
                "policy": s.policy,
                "label": s.label,
                "verdict": s.verdict,
                "message": s.message,
                "compiled": s.outcome.compiled,
                "tests_passed": s.outcome.tests_passed,
                "tests_total": s.outcome.tests_total,
                "identical": s.outcome.identical,
                "per_test": list(s.outcome.per_test),
                "paper_speedup": paper_speedup(s.outcome),
                "speedup": s.outcome.speedup,
                "ci_low": s.outcome.ci_low,
                "ci_high": s.outcome.ci_high,
                "candidate_hash": s.candidate_hash,
            }
            for s in row.samples
        ],
    }
    if row.status == "done":
        best = best_of_n(outcomes)
        chosen = honest_choice(outcomes)
        entry["paper_best"] = best
        entry["paper_speedup"] = (
            paper_speedup(outcomes[best]) if best is not None and outcomes[best].all_passed else 1.0
        )
        entry["paper_passed"] = best is not None and outcomes[best].all_passed
        entry["honest_choice"] = chosen
        if chosen is not None:
            c = outcomes[chosen]
            entry["speedup"], entry["ci_low"], entry["ci_high"] = c.speedup, c.ci_low, c.ci_high
            entry["label"] = row.samples[chosen].label
        else:
            entry["speedup"] = entry["ci_low"] = entry["ci_high"] = 1.0
            entry["label"] = "gcc -O3 (no correct, changed candidate)"
    return entry


def build_report(
    result: BenchResult, *, data: str, options: dict[str, Any] | None = None, seed: int = 0
) -> dict[str, Any]:
    """Everything report.json holds, computed from the rows."""
    done = [r for r in result.rows if r.status == "done"]
    excluded = [r for r in result.rows if r.status == "baseline-failed"]
    errors = [r for r in result.rows if r.status == "error"]
    problems = [r.outcomes() for r in done]
    paper = paper_metrics(problems)
    honest = honest_metrics(problems, seed=seed)
    complete = result.complete
    return {
        "version": REPORT_VERSION,
        "status": "complete" if complete else "partial",
        "complete": complete,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": data,
        "policy": result.policy,
        "options": options or {},
        "counts": {
            "rows_total": result.total,
            "rows_finished": len(result.rows),
            "rows_measured": len(done),
            "rows_excluded": len(excluded),
            "rows_failed": len(errors),
            "seconds": round(result.seconds, 1),  # this run (stored rows cost nothing)
            "row_seconds": round(sum(r.seconds for r in result.rows), 1),
        },
        "paper": {
            "compile_rate": paper.compile_rate,
            "pass_rate": paper.pass_rate,
            "mean_speedup": paper.mean_speedup,
            "geomean_speedup": paper.geomean_speedup,
            "p25": paper.p25,
            "p50": paper.p50,
            "p75": paper.p75,
            "max_speedup": paper.max_speedup,
            "std_speedup": paper.std_speedup,
            "problems": paper.problems,
            "compiled_problems": paper.compiled_problems,
            "correct_problems": paper.correct_problems,
        },
        "honest": {
            "pass_rate": honest.pass_rate,
            "copy_rate": honest.copy_rate,
            "geomean_speedup": honest.geomean_speedup,
            "ci_low": honest.ci_low,
            "ci_high": honest.ci_high,
            "faster_share": honest.faster_share,
            "slower_share": honest.slower_share,
            "problems": honest.problems,
        },
        "rows": [_row_entry(r) for r in result.rows],
        "excluded": [{"name": r.name, "row": r.row, "message": r.message} for r in excluded],
        "errors": [{"name": r.name, "row": r.row, "message": r.message} for r in errors],
        "plots": list(PLOTS),
    }


# --------------------------------------------------------------------------- markdown


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: the status, both sets of metrics with what each means, every row."""
    p, h, c = report["paper"], report["honest"], report["counts"]
    status = (
        "complete"
        if report["complete"]
        else f"PARTIAL: {c['rows_finished']} of {c['rows_total']} rows finished, "
        f"{c['rows_failed']} failed in the harness; these figures are not final"
    )
    lines = [
        f"# asmopt bench: {report['policy']} on {Path(report['data']).name}",
        "",
        f"Status: **{status}**. {c['rows_measured']} rows measured, {c['rows_excluded']} "
        f"excluded (their own baseline is unusable); {c['row_seconds']} s of "
        f"verification, {c['seconds']} s in this run.",
        "",
        "## The paper's metrics",
        "",
        "Computed as the paper's code does: a failing sample counts 1.0x, per-test slow-downs "
        "are clamped to 1.0, a copy of the baseline passes; rows none of whose samples "
        "assembled are left out of the speed-up statistics.",
        "",
        "| compile | pass | mean | geomean | p25 | median | p75 |",
        "|---|---|---|---|---|---|---|",
        f"| {_pct(p['compile_rate'])} | {_pct(p['pass_rate'])} | {_x(p['mean_speedup'])} | "
        f"{_x(p['geomean_speedup'])} | {_x(p['p25'])} | {_x(p['p50'])} | {_x(p['p75'])} |",
        "",
        "## Honest metrics",
        "",
        "Pass rate without copies of the baseline; per program the speed-up of the candidate a "
        "user would be offered (highest lower CI bound among correct, changed ones), unclamped, "
        "or exactly 1.0 when there is none; the geometric mean's 95% CI is a bootstrap over "
        "programs; significance is the candidate's own 95% CI excluding 1.",
        "",
        "| pass (no copies) | copies counted as passes by the paper | geomean | 95% CI "
        "| significantly faster | significantly slower |",
        "|---|---|---|---|---|---|",
        f"| {_pct(h['pass_rate'])} | {_pct(h['copy_rate'])} | {_x(h['geomean_speedup'])} | "
        f"{_x(h['ci_low'])}–{_x(h['ci_high'])} | {_share(h['faster_share'])} | "
        f"{_share(h['slower_share'])} |",
        "",
        "## Rows",
        "",
        "| row | program | status | paper | speed-up [95% CI] | chosen | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        if row["status"] == "done":
            speed = f"{_x(row['speedup'])} [{_x(row['ci_low'])}–{_x(row['ci_high'])}]"
            note = "; ".join(f"{s['index']}: {s['verdict']}" for s in row["samples"])
            lines.append(
                f"| {row['row']} | {row['name']} | {row['status']} | "
                f"{_x(row['paper_speedup'])} | {speed} | {row['label']} | {note} |"
            )
        else:
            message = row["message"].replace("|", "\\|").replace("\n", " ")[:200]
            lines.append(
                f"| {row['row']} | {row['name']} | {row['status']} | — | — | — | {message} |"
            )
    if report["plots"]:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({name})" for name in report["plots"]]
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


def _plot(report: dict[str, Any], directory: Path) -> dict[str, Path]:
    """Write the PNGs to temporary files in ``directory``; returns final name -> temp path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    done = [r for r in report["rows"] if r["status"] == "done"]
    paper = [r["paper_speedup"] for r in done]
    honest = [r["speedup"] for r in done]
    out: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(7, 4))
    if done:
        low = min(min(paper), min(honest), 0.95) / 1.02
        high = max(max(paper), max(honest), 1.05) * 1.02
        bins = list(np.geomspace(low, high, 30))
        ax.hist(paper, bins=bins, alpha=0.6, label="paper (clamped, failures 1.0)")
        ax.hist(honest, bins=bins, alpha=0.6, label="honest (unclamped)")
        ax.set_xscale("log")
        ax.legend()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("speed-up over gcc -O3 (per program)")
    ax.set_ylabel("programs")
    ax.set_title(f"{report['policy']}: speed-up distribution ({len(done)} programs)")
    fig.tight_layout()
    out["speedup_distribution.png"] = _save(fig, directory)
    plt.close(fig)

    ordered = sorted(done, key=lambda r: r["speedup"])
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(ordered) + 2), 4))
    if ordered:
        x = np.arange(len(ordered))
        med = np.array([r["speedup"] for r in ordered])
        lo = np.array([r["ci_low"] for r in ordered])
        hi = np.array([r["ci_high"] for r in ordered])
        colours = [
            "tab:green" if r["ci_low"] > 1 else "tab:red" if r["ci_high"] < 1 else "tab:gray"
            for r in ordered
        ]
        ax.errorbar(x, med, yerr=[med - lo, hi - med], fmt="none", ecolor="black", capsize=2)
        ax.scatter(x, med, c=colours, zorder=3)
        ax.set_xticks(x)
        ax.set_xticklabels([r["name"] for r in ordered], rotation=60, ha="right", fontsize=7)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("speed-up over gcc -O3 (95% CI)")
    ax.set_title("per program: green faster, red slower (CI excludes 1), grey neither")
    fig.tight_layout()
    out["per_program.png"] = _save(fig, directory)
    plt.close(fig)
    return out


def _temp(directory: Path, prefix: str) -> Path:
    # mkstemp makes a private file; the report gets an ordinary new file's permissions.
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def _save(fig: Any, directory: Path) -> Path:
    path = _temp(directory, ".plot-")
    fig.savefig(path, dpi=110, format="png")
    return path


def _write_temp(directory: Path, text: str) -> Path:
    path = _temp(directory, ".report-")
    path.write_text(text, encoding="utf-8")
    return path


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the plots, report.md and report.json (in that order, each renamed into place
    once whole). Returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    temps: dict[str, Path] = {}
    try:
        temps.update(_plot(report, out_dir))
        temps["report.md"] = _write_temp(out_dir, render_markdown(report))
        temps["report.json"] = _write_temp(out_dir, json.dumps(report, indent=2) + "\n")
        written = []
        for name in (*PLOTS, "report.md", "report.json"):
            final = out_dir / name
            os.replace(temps.pop(name), final)
            written.append(final)
        return written
    finally:
        for leftover in temps.values():
            leftover.unlink(missing_ok=True)


def remove_report(out_dir: Path, names: Sequence[str] = ("report.json", "report.md")) -> None:
    """Take a previous report away before a run that may not finish, so an old complete
    report never stands beside new, unfinished results."""
    for name in names:
        (Path(out_dir) / name).unlink(missing_ok=True)
