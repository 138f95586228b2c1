"""The typed messages between the language server and a worker: what goes over the wire
comes back as it was sent, a line that does not fit is refused, and a job that cannot run
says where it stopped and which policies were unavailable as fields, not in its text."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from asmopt.model.search.outcome import RunRecord, Speedup, TestCounts
from asmopt.model.search.stages import Stage
from asmopt.server import messages as m
from asmopt.server import worker


def _wire(message: m.Message) -> m.Message:
    return m.decode(json.loads(json.dumps(m.encode(message))))


def test_messages_cross_the_wire_unchanged() -> None:
    record = RunRecord("prog", "f", "/w/prog.c", "faster", "1 faster", TestCounts(2, 2),
                       Speedup(1.3, 1.2, 1.4, 12), asm="f:\n\tret\n")  # fmt: skip
    for message in (
        m.RunJob("/w/prog.c", "f", {"samples": 2}, "/w", "prog"),
        m.CancelJob(),
        m.ProgressMessage(Stage.VERIFY, "[1/3] clang -O3: faster", "1.30x so far"),
        m.ResultMessage(record, "1 faster"),
        m.ResultMessage(None, "cancelled", cancelled=True),
        m.ErrorMessage("no model", Stage.GENERATE, ("openai",)),
    ):
        assert _wire(message) == message
    progress = _wire(m.ProgressMessage(Stage.BENCHMARK))
    assert isinstance(progress, m.ProgressMessage) and progress.stage is Stage.BENCHMARK


@pytest.mark.parametrize(
    "data",
    [[], {"type": "nonsense"}, {"type": "progress", "stage": "thinking"}, {"type": "result"}],
)
def test_a_line_that_does_not_fit_is_refused(data: Any) -> None:
    with pytest.raises(m.MessageError):
        m.decode(data)


class _Out:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


def test_an_error_says_its_stage_and_the_unavailable_policies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asmopt.model.search.optimizer import OptimizeError

    (tmp_path / "prog.c").write_text("int main(void) { return 0; }\n")

    def optimize(request, **_kwargs):
        raise OptimizeError("policy openai cannot run: no endpoint", stage=Stage.GENERATE,
                            unavailable=("openai",))  # fmt: skip

    monkeypatch.setattr(worker, "_load_optimize", lambda: optimize)
    out = _Out()
    request = {"source": str(tmp_path / "prog.c"), "workspace": str(tmp_path), "settings": {}}
    worker.run(request, out, threading.Event())  # type: ignore[arg-type]
    (error,) = [m.decode(json.loads(json.dumps(x))) for x in out.messages]
    assert error == m.ErrorMessage(
        "policy openai cannot run: no endpoint", Stage.GENERATE, ("openai",)
    )
