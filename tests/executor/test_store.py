"""The workspace result store: keys, round trips, queries, concurrency, and failure modes."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from asmopt.executor.results import SpeedupEstimate, Verdict
from asmopt.executor.store import (
    SCHEMA_VERSION,
    ResultStore,
    ResultStoreError,
    StoreProblem,
    candidate_key,
)


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


def _garbage_store(root: Path) -> Path:
    (root / ".asmopt").mkdir()
    path = root / ".asmopt" / "results.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    return path


def test_a_corrupt_store_opened_read_only_is_reported_and_left_alone(tmp_path: Path) -> None:
    path = _garbage_store(tmp_path)
    with pytest.raises(ResultStoreError, match=r"results\.sqlite.*corrupt.*delete") as caught:
        ResultStore(tmp_path, read_only=True).get("k")
    assert caught.value.problem is StoreProblem.CORRUPT
    assert path.read_bytes() == b"this is not sqlite" * 100
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.sqlite"]


def test_a_corrupt_store_is_moved_aside_and_a_fresh_one_started(tmp_path: Path) -> None:
    path = _garbage_store(tmp_path)
    warnings: list[str] = []
    with ResultStore(tmp_path, warn=warnings.append) as store:
        assert store.get("k") is None  # the first read meets it and moves it aside
        store.put("k", record())
        assert [r["key"] for r in store.records()] == ["k"]
    assert len(warnings) == 1
    assert re.fullmatch(
        r"result store .*results\.sqlite was corrupt \(file is not a database\); moved it to "
        r"results\.sqlite\.corrupt-\d{8}T\d{6}Z and started a fresh one",
        warnings[0],
    ), warnings
    names = sorted(p.name for p in path.parent.iterdir())
    moved = [n for n in names if n.startswith("results.sqlite.corrupt-")]
    assert len(moved) == 1  # kept, for a post-mortem
    assert (path.parent / moved[0]).read_bytes() == b"this is not sqlite" * 100
    assert ResultStore(tmp_path, read_only=True).get("k") is not None


def test_a_store_damaged_inside_is_moved_aside_too(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        for i in range(300):
            store.put(f"k{i}", record(message="x" * 2000))
    path = tmp_path / ".asmopt" / "results.sqlite"
    data = bytearray(path.read_bytes())
    assert len(data) > 100_000
    data[4096:-4096] = b"\xa5" * (len(data) - 8192)  # every page but the first and last
    path.write_bytes(bytes(data))
    warnings: list[str] = []
    with ResultStore(tmp_path, warn=warnings.append) as store:
        assert store.records(limit=None) == []
        store.put("fresh", record())
        assert [r["key"] for r in store.records()] == ["fresh"]
    assert len(warnings) == 1 and "was corrupt" in warnings[0]


def test_threads_meeting_a_corrupt_store_move_it_aside_once(tmp_path: Path) -> None:
    path = _garbage_store(tmp_path)
    warnings: list[str] = []
    errors: list[BaseException] = []
    store = ResultStore(tmp_path, warn=warnings.append)
    barrier = threading.Barrier(4)

    def work(n: int) -> None:
        try:
            barrier.wait()
            store.put(f"k{n}", record())
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.records()) == 4
    store.close()
    assert len(warnings) == 1
    assert len([p for p in path.parent.iterdir() if ".corrupt-" in p.name]) == 1


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


# --------------------------------------------------------------------------- links


@pytest.mark.parametrize("link", [".asmopt", "results.sqlite", "results.sqlite-wal"])
def test_the_store_is_never_used_through_a_symbolic_link(tmp_path: Path, link: str) -> None:
    workspace, elsewhere = tmp_path / "ws", tmp_path / "etc"  # elsewhere: think /etc
    workspace.mkdir()
    elsewhere.mkdir()
    if link == ".asmopt":
        (workspace / ".asmopt").symlink_to(elsewhere)
    else:
        (workspace / ".asmopt").mkdir()
        (workspace / ".asmopt" / link).symlink_to(elsewhere / "planted")  # dangling
    with pytest.raises(ResultStoreError, match=r"symbolic link.*never opens or creates") as caught:
        ResultStore(workspace).put("k", record())
    assert caught.value.problem is StoreProblem.SYMLINK
    with pytest.raises(ResultStoreError, match="symbolic link"):
        ResultStore(workspace, read_only=True).records()

    warnings: list[str] = []
    with ResultStore(workspace, best_effort=True, warn=warnings.append) as store:
        store.put("k", record())  # the result is not stored, and nothing is raised
        assert store.get("k") is None and store.records() == []
        assert store.problem is not None and store.problem.problem is StoreProblem.SYMLINK
    assert len(warnings) == 1 and warnings[0].startswith("results are not stored: refusing")
    assert list(elsewhere.iterdir()) == []  # nothing was created through the link


# --------------------------------------------------------------------------- unwritable


def test_a_best_effort_store_warns_once_and_keeps_nothing(tmp_path: Path) -> None:
    (tmp_path / ".asmopt").write_text("a file where the store folder would be\n")
    warnings: list[str] = []
    with ResultStore(tmp_path, best_effort=True, warn=warnings.append) as store:
        assert store.get("k") is None
        for i in range(3):
            store.put(f"k{i}", record())
        assert store.records() == [] and store.delete("k0") is False
        assert store.problem is not None
        assert store.problem.problem is StoreProblem.NOT_WRITABLE
    assert warnings == [
        f"results are not stored: cannot create the result store: {tmp_path / '.asmopt'} "
        "exists and is not a folder; move it away to keep results"
    ]
    with pytest.raises(ResultStoreError, match="is not a folder"):
        ResultStore(tmp_path).put("k", record())


def test_a_store_error_crosses_process_boundaries() -> None:
    error = ResultStoreError("cannot create x", StoreProblem.NOT_WRITABLE, Path("/w/.asmopt"))
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.problem, copy.path) == (str(error), error.problem, error.path)


_ON_READ_ONLY_MOUNT = """
import sys
from pathlib import Path
from asmopt.executor.store import ResultStore
warnings = []
store = ResultStore(Path(sys.argv[1]), best_effort=True, warn=warnings.append)
store.put("new", {"verdict": "faster"})
print(store.problem.problem if store.problem else None)
print(warnings)
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
@pytest.mark.parametrize("with_store", [False, True])
def test_a_read_only_workspace_keeps_nothing_and_says_so(tmp_path: Path, with_store: bool) -> None:
    """A real read-only mount (root ignores file permissions, so chmod proves nothing)."""
    if with_store:
        with ResultStore(tmp_path) as store:
            store.put("old", record())
    script = (
        f'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
        f'exec {sys.executable} -c "$2" "$1"'
    )
    proc = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", script, "sh", str(tmp_path),
         _ON_READ_ONLY_MOUNT],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if proc.returncode != 0 and "mount" in proc.stderr + proc.stdout:
        pytest.skip(f"no read-only bind mount here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    problem, warnings = proc.stdout.splitlines()
    assert problem == "not-writable"
    assert warnings.startswith("['results are not stored: cannot")
    assert "writable" in warnings
    with ResultStore(tmp_path, read_only=True) as store:
        assert store.get("new") is None
        assert (store.get("old") is not None) == with_store


# --------------------------------------------------------------------------- size


def _stored_bytes(root: Path, key: str) -> int:
    connection = sqlite3.connect(root / ".asmopt" / "results.sqlite")
    (size,) = connection.execute(
        "SELECT length(CAST(record AS BLOB)) FROM results WHERE key = ?", (key,)
    ).fetchone()
    connection.close()
    return int(size)


def test_a_huge_build_output_is_stored_cut(store: ResultStore, tmp_path: Path) -> None:
    stderr = "".join(f"x.s:{i}: Warning: .warning directive invoked\n" for i in range(250_000))
    assert len(stderr) > 10_000_000
    original = record(
        build={"ok": False, "stderr": stderr, "diagnostics": [{"message": "w"}] * 30_000},
        message="build failed: " + stderr,
        verdict=Verdict.BUILD_FAILED,
        asm="\tnop\n" * 20_000,  # the program itself is kept whole
    )
    store.put("k", original)
    assert _stored_bytes(tmp_path, "k") < 16 * 1024 + len(json.dumps(original["asm"]))
    got = store.get("k")
    assert got is not None
    assert got["asm"] == original["asm"]
    assert got["build"]["stderr"].startswith("x.s:0: Warning")
    assert got["build"]["stderr"].endswith("x.s:249999: Warning: .warning directive invoked\n")
    assert re.search(r"\n… \(\d+ bytes cut\)\n", got["build"]["stderr"])
    assert len(got["build"]["stderr"].encode()) < 4200
    assert len(got["build"]["diagnostics"]) == 50 and got["build"]["diagnostics_cut"] == 29_950
    assert got["verdict"] == "build-failed" and got["target"] == "prog"
    assert original["build"]["stderr"] is stderr  # the caller's record is left alone


def test_a_record_with_ten_megabytes_of_stderr_stores_under_16_kb(
    store: ResultStore, tmp_path: Path
) -> None:
    store.put("k", {"build": {"stderr": "e" * 10_000_000}, "message": "m" * 10_000_000})
    assert _stored_bytes(tmp_path, "k") < 16 * 1024
    stderr = store.get("k")["build"]["stderr"]  # type: ignore[index]
    assert stderr == "e" * 3072 + "\n… (9995904 bytes cut)\n" + "e" * 1024
    # An excerpt made upstream, with its own marker, is not cut again.
    excerpt = "w" * 4096 + "\n… (123456 more characters cut)"
    store.put("excerpt", {"build": {"stderr": excerpt}})
    assert store.get("excerpt")["build"]["stderr"] == excerpt  # type: ignore[index]
