"""Per-instruction cost from llvm-mca's instruction info (``-instruction-info``): latency,
reciprocal throughput and micro-ops of one instruction on a CPU model. A model, not a
measurement. Cached per (CPU, instruction text); one llvm-mca run answers a whole batch."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import threading
from dataclasses import dataclass

_ERROR_LINE = re.compile(r"<stdin>:(\d+):\d+: error", re.M)
_CACHE: dict[tuple[str, str], InstructionCost | None] = {}
_LOCK = threading.Lock()
MAX_CACHE = 100_000


@dataclass(frozen=True)
class InstructionCost:
    """llvm-mca's view of one instruction on ``cpu``."""

    latency: int
    reciprocal_throughput: float
    micro_ops: int
    may_load: bool
    may_store: bool
    cpu: str


@functools.lru_cache(maxsize=1)
def default_cpu() -> str:
    """This machine's CPU as llvm-mca names it (see asmopt.executor.estimate.host_cpu)."""
    from asmopt.executor.estimate import host_cpu

    return host_cpu()


def instruction_text(line: str) -> str | None:
    """The instruction on an assembly line (labels and comments dropped), or None for a
    directive, a label alone or a blank line."""
    code = line.split("#", 1)[0]
    code = re.sub(r"^\s*(?:[A-Za-z_.$][\w.$]*|\d+)\s*:(?!:)", "", code).strip()
    if not code or code.startswith(".") or ";" in code or "=" in code.split(None, 1)[0]:
        return None
    if not code.isascii():  # no x86 mnemonic or register is; llvm-mca reads bytes
        return None
    return " ".join(code.split())


def cached(text: str, cpu: str) -> tuple[bool, InstructionCost | None]:
    """(known, cost) from the cache."""
    key = (cpu, text)
    with _LOCK:
        if key in _CACHE:
            return True, _CACHE[key]
    return False, None


def costs(texts: list[str], cpu: str, intel: bool = False) -> dict[str, InstructionCost | None]:
    """Costs of ``texts`` (None for what llvm-mca cannot read); blocking, one llvm-mca run
    for all that are not cached (two when some are rejected)."""
    wanted = [t for t in dict.fromkeys(texts) if not cached(t, cpu)[0]]
    if wanted:
        found = _run(wanted, cpu, intel)
        with _LOCK:
            if len(_CACHE) + len(found) > MAX_CACHE:
                _CACHE.clear()
            for text in wanted:
                _CACHE[(cpu, text)] = found.get(text)
    return {t: cached(t, cpu)[1] for t in texts}


def _run(texts: list[str], cpu: str, intel: bool) -> dict[str, InstructionCost | None]:
    from asmopt.executor.estimate import _llvm_mca

    remaining = list(texts)
    for _ in range(3):  # drop the lines llvm-mca rejects, then ask again
        if not remaining:
            return {}
        source = (".intel_syntax noprefix\n" if intel else "") + "\n".join(remaining) + "\n"
        try:
            done = subprocess.run(
                [_llvm_mca(), f"-mcpu={cpu}", "-json", "-iterations=1", "-"],
                input=source,
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return {}
        if done.returncode == 0:
            try:
                region = json.loads(done.stdout)["CodeRegions"][0]
                infos = region["InstructionInfoView"]["InstructionList"]
            except (ValueError, KeyError, IndexError):
                return {}
            out: dict[str, InstructionCost | None] = {}
            for info in infos:
                index = info.get("Instruction", -1)
                if 0 <= index < len(remaining):
                    out[remaining[index]] = InstructionCost(
                        latency=int(info.get("Latency", 0)),
                        reciprocal_throughput=float(info.get("RThroughput", 0.0)),
                        micro_ops=int(info.get("NumMicroOpcodes", 0)),
                        may_load=bool(info.get("mayLoad")),
                        may_store=bool(info.get("mayStore")),
                        cpu=cpu,
                    )
            return out
        offset = 1 if intel else 0
        bad = {int(n) - 1 - offset for n in _ERROR_LINE.findall(done.stderr)}
        if not bad:
            return {}
        remaining = [t for i, t in enumerate(remaining) if i not in bad]
    return {}


def describe(text: str, cost: InstructionCost) -> str:
    """The hover text for one instruction."""
    memory = " · ".join(
        word for word, flag in (("loads", cost.may_load), ("stores", cost.may_store)) if flag
    )
    return (
        f"**`{text}`** on `{cost.cpu}` (llvm-mca model, not a measurement)\n\n"
        f"| latency | reciprocal throughput | micro-ops |\n|---|---|---|\n"
        f"| {cost.latency} cycles | {cost.reciprocal_throughput:.2f} cycles | {cost.micro_ops} |"
        + (f"\n\n{memory}" if memory else "")
    )
