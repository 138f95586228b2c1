"""The workspace result store: keys, round trips, queries, concurrency, and failure modes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from asmopt.executor.results import SpeedupEstimate, Verdict
from asmopt.executor.store import SCHEMA_VERSION, ResultStore, ResultStoreError, candidate_key


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with ResultStore(tmp_path) as opened:
        yield opened


def record(
    target: str = "prog",
    function: str | None = "main",
    verdict: str = "faster",
    median: float = 1.2,
    ci_low: float = 1.1,
    **extra: Any,
) -> dict[str, Any]:
    speedup = SpeedupEstimate(median, ci_low, median + 0.1, 20, 1.0, 1.0 / median)
    return {
        "target": target,
        "function": function,
        "candidate": "abc123",
        "build": {"ok": True},
        "verdicts": [{"name": "t1", "status": "passed", "detail": "", "cpu_seconds": 0.1}],
        "samples": [1.19, 1.21],
        "speedup": speedup.to_dict(),
        "estimate": None,
        "policy": "flags",
        "verdict": verdict,
        **extra,
    }


# --------------------------------------------------------------------------- keys


def test_candidate_key_is_stable_and_sees_every_input() -> None:
    base = ("mov %eax, %eax\n", "d" * 64, ("-O3", "-lm"), "gcc 12.2", "")
    key = candidate_key(*base)
    assert key == candidate_key(*base) and len(key) == 64
    int(key, 16)
    variants = [
        ("mov %eax, %eax \n", *base[1:]),
        (base[0], "e" * 64, *base[2:]),
        (*base[:2], ("-lm", "-O3"), *base[3:]),  # flag order matters to gcc
        (*base[:2], ("-O3 -lm",), *base[3:]),  # argument boundaries matter
        (*base[:2], ("-O3", "-lm", ""), *base[3:]),
        (*base[:3], "gcc 13.1", ""),
        (*base[:4], "cpu=znver4"),
    ]
    keys = {candidate_key(*v) for v in variants}
    assert key not in keys and len(keys) == len(variants)


# --------------------------------------------------------------------------- round trip


def test_round_trip(store: ResultStore) -> None:
    original = record()
    store.put("k1", original)
    got = store.get("k1")
    assert got is not None
    assert got == {**original, "key": "k1", "created_at": got["created_at"]}
    assert isinstance(got["created_at"], float)
    assert "key" not in original  # the caller's dict is left alone
    assert "k1" in store and "k2" not in store
    assert store.get("k2") is None


def test_put_replaces_and_keeps_a_given_created_at(store: ResultStore) -> None:
    store.put("k", record(median=1.0, created_at=100.0))
    store.put("k", record(median=2.0, created_at=200.0))
    got = store.get("k")
    assert got is not None and got["speedup"]["median"] == 2.0 and got["created_at"] == 200.0
    assert len(store.records()) == 1


def test_enums_are_stored_as_their_values(store: ResultStore) -> None:
    store.put("k", record(verdict=Verdict.FASTER))
    assert store.best("prog", "main") == store.get("k")
    assert store.get("k")["verdict"] == "faster"  # type: ignore[index]


def test_results_persist_across_reopen(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as first:
        first.put("k", record())
    with ResultStore(tmp_path) as second:
        assert second.get("k") is not None
        assert [r["key"] for r in second.records()] == ["k"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".asmopt"]


def test_records_newest_first_with_filters_and_limit(store: ResultStore) -> None:
    store.put("a", record(target="p", function="f", created_at=1.0))
    store.put("b", record(target="p", function="g", created_at=3.0))
    store.put("c", record(target="q", function="f", created_at=2.0))
    store.put("d", record(target="p", function="f", created_at=4.0))
    keys = lambda rs: [r["key"] for r in rs]  # noqa: E731
    assert keys(store.records()) == ["d", "b", "c", "a"]
    assert keys(store.records(target="p")) == ["d", "b", "a"]
    assert keys(store.records(target="p", function="f")) == ["d", "a"]
    assert keys(store.records(function="f")) == ["d", "c", "a"]
    assert keys(store.records(limit=2)) == ["d", "b"]
    assert keys(store.records(limit=None)) == ["d", "b", "c", "a"]
    assert store.records(target="nope") == []
    with pytest.raises(ValueError, match="limit"):
        store.records(limit=-1)


def test_best_is_the_verified_faster_one_with_highest_ci_low(store: ResultStore) -> None:
    assert store.best("prog", "main") is None
    store.put("slow-but-sure", record(median=1.10, ci_low=1.08))
    store.put("fast-but-noisy", record(median=1.50, ci_low=1.02))
    store.put("failed", record(verdict="tests-failed", median=3.0, ci_low=2.9))
    store.put("not-faster", record(verdict="not-faster", median=1.01, ci_low=0.99))
    store.put("other-function", record(function="helper", median=2.0, ci_low=1.9))
    store.put("whole-program", record(function=None, median=1.3, ci_low=1.2))
    best = store.best("prog", "main")
    assert best is not None and best["key"] == "slow-but-sure"
    assert store.best("prog", "helper")["key"] == "other-function"  # type: ignore[index]
    assert store.best("prog", None)["key"] == "whole-program"  # type: ignore[index]
    assert store.best("other", "main") is None


def test_delete_and_clear(store: ResultStore) -> None:
    store.put("a", record())
    store.put("b", record())
    assert store.delete("a") is True
    assert store.delete("a") is False
    assert store.get("a") is None and store.get("b") is not None
    store.clear()
    assert store.records() == [] and store.get("b") is None


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ({"blob": b"\x00"}, TypeError, "not JSON-serialisable.*to_dict"),
        ({"target": 3}, ValueError, r"record\['target'\] must be a string"),
        ({"speedup": 1.5}, ValueError, r"record\['speedup'\] must be a dict"),
        ({"speedup": {"median": "fast"}}, ValueError, "median.*must be a number"),
        ({"key": "other"}, ValueError, "stored as 'k'"),
    ],
)
def test_bad_records_are_refused(
    store: ResultStore, bad: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        store.put("k", record(**bad))
    assert store.get("k") is None


# --------------------------------------------------------------------------- read-only use


def test_reading_a_workspace_without_a_store_creates_nothing(tmp_path: Path) -> None:
    for read_only in (False, True):
        with ResultStore(tmp_path, read_only=read_only) as store:
            assert store.get("k") is None
            assert store.records() == []
            assert store.best("prog", "main") is None
            assert "k" not in store
            if not read_only:
                assert store.delete("k") is False
                store.clear()
    assert list(tmp_path.iterdir()) == []


def test_read_only_store_reads_but_refuses_writes(tmp_path: Path) -> None:
    reader = ResultStore(tmp_path, read_only=True)
    with pytest.raises(ResultStoreError, match=r"cannot put.*read-only"):
        reader.put("k", record())
    assert list(tmp_path.iterdir()) == []
    with ResultStore(tmp_path) as writer:
        writer.put("k", record())
        assert reader.get("k") is not None  # sees another connection's writes
    for write in (lambda: reader.delete("k"), reader.clear):
        with pytest.raises(ResultStoreError, match="read-only"):
            write()
    assert reader.get("k") is not None
    reader.close()


def test_missing_workspace_folder_is_reported(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "gone")
    assert store.get("k") is None
    with pytest.raises(ResultStoreError, match=r"workspace folder .*gone does not exist"):
        store.put("k", record())


# --------------------------------------------------------------------------- broken stores


def test_corrupt_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / ".asmopt").mkdir()
    (tmp_path / ".asmopt" / "results.sqlite").write_bytes(b"this is not sqlite" * 100)
    for read_only in (False, True):
        with pytest.raises(ResultStoreError, match=r"results\.sqlite.*corrupt.*delete"):
            ResultStore(tmp_path, read_only=read_only).get("k")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.put("k", record())
    path = tmp_path / ".asmopt" / "results.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    connection.close()
    for read_only in (False, True):
        with pytest.raises(ResultStoreError, match=r"newer asmopt.*upgrade asmopt.*delete"):
            ResultStore(tmp_path, read_only=read_only).records()


def test_store_uses_wal_and_records_its_schema(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.put("k", record())
    connection = sqlite3.connect(tmp_path / ".asmopt" / "results.sqlite")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("SELECT version FROM schema_version").fetchall() == [
        (SCHEMA_VERSION,)
    ]
    connection.close()


# --------------------------------------------------------------------------- concurrency


def test_threads_share_one_store_object(store: ResultStore) -> None:
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for i in range(25):
                store.put(f"{thread}-{i}", record(function=f"f{thread}"))
                assert store.get(f"{thread}-{i}") is not None
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.records(limit=None)) == 150


def _write_many(root: str, worker: int, count: int) -> None:
    # A fresh store in each process, as separate asmopt processes would have.
    with ResultStore(Path(root)) as store:
        for i in range(count):
            store.put(f"w{worker}-{i}", record(function=f"f{worker}", samples=[i]))


def _write_with_inherited(store: ResultStore, worker: int, count: int) -> None:
    for i in range(count):
        store.put(f"inherited{worker}-{i}", record())


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")  # fork: test modules are not importable
    workers = [context.Process(target=_write_many, args=(str(tmp_path), n, 100)) for n in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert [w.exitcode for w in workers] == [0, 0]
    with ResultStore(tmp_path) as store:
        assert len(store.records(limit=None)) == 200
        assert len(store.records(function="f1", limit=None)) == 100
        assert store.get("w0-99")["samples"] == [99]  # type: ignore[index]


def test_a_forked_child_does_not_reuse_the_parents_connection(store: ResultStore) -> None:
    store.put("parent", record())  # the parent now holds an open connection
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_write_with_inherited, args=(store, 0, 20))
    child.start()
    store.put("parent-2", record())
    child.join(timeout=30)
    assert child.exitcode == 0
    assert len(store.records(limit=None)) == 22
