"""A broken result store (corrupt, a symbolic link, not writable) never stops the language
server: the worker still sends its result, saying it was not saved, and stored results that
cannot be read are logged and skipped."""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from asmopt.executor.store import ResultStore
from asmopt.server import worker
from asmopt.server.results import load_results

FAKE = Path(__file__).with_name("fake_optimizer.py")


def _fake_optimize():
    spec = importlib.util.spec_from_file_location("_fake_optimizer_for_store", FAKE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.optimize


class _Out:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


def _corrupt(workspace: Path, elsewhere: Path) -> None:
    (workspace / ".asmopt").mkdir()
    (workspace / ".asmopt" / "results.sqlite").write_bytes(b"not sqlite" * 300)


def _linked(workspace: Path, elsewhere: Path) -> None:
    (workspace / ".asmopt").symlink_to(elsewhere)


def _blocked(workspace: Path, elsewhere: Path) -> None:
    (workspace / ".asmopt").write_text("a file\n")


@pytest.mark.parametrize(
    ("spoil", "saved"),
    [(_corrupt, True), (_linked, False), (_blocked, False)],
    ids=["corrupt", "symlink", "not-writable"],
)
def test_the_worker_sends_its_result_whatever_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spoil, saved: bool
) -> None:
    workspace, elsewhere = tmp_path / "ws", tmp_path / "etc"
    workspace.mkdir()
    elsewhere.mkdir()
    (workspace / "prog.c").write_text("int main(void) { return 0; }\n")
    spoil(workspace, elsewhere)
    fake = _fake_optimize()

    def optimize(request, *, store=None, **kwargs):
        assert store is not None
        store.get("a candidate's key")  # as the judge does before verifying
        return fake(request, store=store, **kwargs)

    monkeypatch.setattr(worker, "_load_optimize", lambda: optimize)
    out = _Out()
    request = {"source": str(workspace / "prog.c"), "workspace": str(workspace), "settings": {}}
    worker.run(request, out, threading.Event())  # type: ignore[arg-type]

    result = [m for m in out.messages if m["type"] == "result"]
    assert len(result) == 1, out.messages
    assert result[0]["record"]["verdict"] == "faster"
    assert ("not saved" not in result[0]["message"]) == saved
    assert list(elsewhere.iterdir()) == []
    if saved:
        assert len(ResultStore(workspace, read_only=True).records()) == 1


@pytest.mark.parametrize("spoil", [_corrupt, _linked], ids=["corrupt", "symlink"])
def test_unreadable_stored_results_are_logged_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, spoil
) -> None:
    workspace, elsewhere = tmp_path / "ws", tmp_path / "etc"
    workspace.mkdir()
    elsewhere.mkdir()
    spoil(workspace, elsewhere)
    with caplog.at_level(logging.WARNING, logger="asmopt.server.results"):
        assert load_results(workspace, "prog", str(workspace / "prog.c")) == []
    assert any("stored results not loaded" in r.getMessage() for r in caplog.records)
    assert list(elsewhere.iterdir()) == []
