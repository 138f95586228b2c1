"""Fixtures shared by the test packages."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Span:
    """One run the judge made (a test run or a timed run): in which thread, of which binary,
    and from when to when (``time.monotonic``)."""

    thread: int
    program: Path
    start: float
    end: float

    def overlaps(self, start: float, end: float) -> bool:
        return self.start < end and start < self.end


@pytest.fixture
def judge_runs(monkeypatch: pytest.MonkeyPatch) -> list[Span]:
    """Every run the judge makes from here on (``run_test``, through which it runs tests and
    timed runs alike), recorded as a :class:`Span` in the order the runs ended."""
    import asmopt.executor.benchmark as benchmark_module
    import asmopt.executor.verify as verify_module

    spans: list[Span] = []
    lock = threading.Lock()
    real = benchmark_module.run_test

    def recorded(session, *args, **kwargs):
        start = time.monotonic()
        try:
            return real(session, *args, **kwargs)
        finally:
            span = Span(threading.get_ident(), session.programs[0], start, time.monotonic())
            with lock:
                spans.append(span)

    monkeypatch.setattr(benchmark_module, "run_test", recorded)
    monkeypatch.setattr(verify_module, "run_test", recorded)
    return spans
