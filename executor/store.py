"""The workspace result store: every verified candidate, keyed by what determines its result.

One SQLite file, ``<workspace>/.asmopt/results.sqlite``, in WAL mode. A key
(:func:`candidate_key`) hashes everything that decides a candidate's verdict (its assembly,
the tests, the build flags, the toolchain), so the same candidate is never verified twice.
A record is the candidate's whole result as JSON; a few fields are copied into indexed
columns for "newest results of this function" and "best verified candidate" queries.

The store is used by the server, the CLI and worker processes at the same time, so:

- each thread (and each process after a fork) gets its own connection;
- writes are short ``BEGIN IMMEDIATE`` transactions, and a busy database is waited for
  (``busy_timeout``) rather than failed;
- nothing is created on disk until the first write: reading a workspace without a store
  returns nothing and leaves the workspace untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "ResultStore", "ResultStoreError", "candidate_key"]

SCHEMA_VERSION = 1
STORE_DIR = ".asmopt"
STORE_FILE = "results.sqlite"
# A verification of one candidate can hold the write lock only for a moment, so waiting
# this long means something is wrong (a hung process), not ordinary contention.
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    target TEXT,
    function TEXT,
    policy TEXT,
    verdict TEXT,
    speedup_median REAL,
    ci_low REAL,
    created_at REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_function ON results (target, function, created_at);
CREATE INDEX IF NOT EXISTS results_by_verdict ON results (target, function, verdict, ci_low);
CREATE INDEX IF NOT EXISTS results_by_time ON results (created_at);
"""


class ResultStoreError(Exception):
    """The result store cannot be opened or used (corrupt, too new, locked, read-only)."""


def candidate_key(
    asm: str,
    tests_digest: str,
    flags: Sequence[str],
    toolchain: str,
    extra: str = "",
) -> str:
    """SHA-256 (hex) naming one verification: this assembly, built with these flags by this
    toolchain, run on these tests (:func:`asmopt.executor.testcases.tests_digest`).

    ``toolchain`` should identify the compiler/assembler/linker versions (``gcc --version``
    first line, for instance); ``extra`` is for anything else that changes the result
    (measurement settings, the sandbox's limits). The assembly text is hashed as is, so a
    whitespace-only change is a new candidate; flag order counts because it does for gcc.
    Fields are length-prefixed, so no two different inputs hash the same bytes.
    """
    digest = hashlib.sha256(b"asmopt-candidate-v1\0")

    def field(text: str) -> None:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    field(asm)
    field(tests_digest)
    digest.update(len(flags).to_bytes(8, "little"))
    for flag in flags:
        field(flag)
    field(toolchain)
    field(extra)
    return digest.hexdigest()


class ResultStore:
    """Content-addressed store of candidate results under ``root/.asmopt/results.sqlite``.

    ``root`` is the workspace folder. With ``read_only=True`` every write raises
    :class:`ResultStoreError`; with or without it, reads of a store that does not exist yet
    return nothing and create nothing.

    Records are JSON objects. :meth:`put` reads these fields from them (all optional):
    ``target``, ``function``, ``policy``, ``verdict`` (strings, e.g. ``Verdict.FASTER``),
    ``speedup`` (a ``SpeedupEstimate.to_dict()``: ``median`` and ``ci_low`` are indexed) and
    ``created_at`` (Unix seconds; filled in when missing).
    """

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        self.root = Path(root)
        self.path = self.root / STORE_DIR / STORE_FILE
        self.read_only = read_only
        self._local = threading.local()
        self._lock = threading.Lock()
        # (pid, connection): connections inherited through fork() belong to the parent.
        self._connections: list[tuple[int, sqlite3.Connection]] = []

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"ResultStore({str(self.root)!r}{mode})"

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- connections

    def close(self) -> None:
        """Close every connection this object opened (in any thread of this process)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for pid, connection in connections:
            # Closing a connection inherited through fork() could checkpoint or remove
            # the parent's WAL files under it; the child just forgets it.
            if pid == os.getpid():
                connection.close()
        self._local = threading.local()

    def _connection(self, *, create: bool) -> sqlite3.Connection | None:
        """This thread's connection; None when the store does not exist and ``create`` is
        false. A connection inherited through fork() is never reused: SQLite forbids it."""
        cached: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if cached is not None and self._local.pid == os.getpid():
            return cached
        if not self.path.exists():
            if not create:
                return None
            self._make_directory()
        try:
            connection = self._open()
        except sqlite3.DatabaseError as error:
            raise self._translate(error, "open") from error
        self._local.connection = connection
        self._local.pid = os.getpid()
        with self._lock:
            self._connections.append((os.getpid(), connection))
        return connection

    def _make_directory(self) -> None:
        if not self.root.is_dir():
            raise ResultStoreError(
                f"cannot create the result store: workspace folder {self.root} does not exist"
            )
        try:
            self.path.parent.mkdir(exist_ok=True)
        except OSError as error:
            raise ResultStoreError(
                f"cannot create {self.path.parent}: {error.strerror}; make the workspace "
                f"writable, or open the store with read_only=True"
            ) from error

    def _open(self) -> sqlite3.Connection:
        if self.read_only:
            uri = self.path.absolute().as_uri() + "?mode=ro"
            connection = sqlite3.connect(
                uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
        else:
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
        try:
            # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE) so a
            # writer takes the write lock up front instead of failing on lock upgrade.
            connection.isolation_level = None
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if self.read_only:
                self._check_version(connection)
            else:
                self._prepare(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        # WAL lets readers (the editor) go on while a worker writes. The mode is stored in
        # the file, so only the first opener ever switches it.
        # Switching needs an exclusive lock and SQLite does not apply the busy timeout to
        # it, so a second process opening a brand-new store at the same moment retries.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    # On a file system without WAL support this stays in rollback mode,
                    # which still works, with less concurrency.
                    connection.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        # NORMAL is safe from corruption in WAL mode; a power cut may lose the last result,
        # which is then simply measured again.
        connection.execute("PRAGMA synchronous = NORMAL")
        if self._check_version(connection) == SCHEMA_VERSION:
            return  # the common case: no write lock needed just to open
        with _transaction(connection):
            # Another process may have created the schema while this one waited.
            if self._check_version(connection) is None:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,)
                )
            # Migrations from older schema versions will go here.

    def _check_version(self, connection: sqlite3.Connection) -> int | None:
        """The store's schema version (None for a new, empty file); raises when it is newer
        than this code understands."""
        try:
            row = connection.execute("SELECT max(version) FROM schema_version").fetchone()
        except sqlite3.OperationalError as error:
            if "no such table" not in str(error):
                raise
            return None
        version: int | None = row[0]
        if version is not None and version > SCHEMA_VERSION:
            raise ResultStoreError(
                f"{self.path} was written by a newer asmopt (store schema {version}; this "
                f"version reads up to {SCHEMA_VERSION}): upgrade asmopt, or delete "
                f"{STORE_DIR}/{STORE_FILE} to start a fresh store"
            )
        return version

    def _translate(self, error: sqlite3.DatabaseError, action: str) -> ResultStoreError:
        message = str(error)
        if isinstance(error, sqlite3.OperationalError) and (
            "locked" in message or "busy" in message
        ):
            return ResultStoreError(
                f"result store {self.path} is locked by another process (waited up to "
                f"{BUSY_TIMEOUT_MS // 1000} s during {action}); stop a hung asmopt process "
                f"holding it, then retry"
            )
        if isinstance(error, sqlite3.OperationalError) and "readonly" in message:
            return ResultStoreError(
                f"result store {self.path} is read-only ({message}) during {action}; make it "
                f"writable, or open the store with read_only=True"
            )
        if isinstance(error, sqlite3.OperationalError) and "unable to open" in message:
            return ResultStoreError(
                f"cannot open result store {self.path} ({message}); check the folder's permissions"
            )
        return ResultStoreError(
            f"result store {self.path} is unreadable or corrupt ({message}) during "
            f"{action}; delete {STORE_DIR}/{STORE_FILE} (it only caches results, which "
            f"are measured again)"
        )

    @contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection | None]:
        try:
            yield self._connection(create=False)
        except sqlite3.DatabaseError as error:
            raise self._translate(error, action) from error

    @contextmanager
    def _writing(self, action: str, *, create: bool = True) -> Iterator[sqlite3.Connection | None]:
        if self.read_only:
            raise ResultStoreError(
                f"cannot {action}: the result store {self.path} was opened read-only"
            )
        try:
            connection = self._connection(create=create)
            if connection is None:
                yield None
                return
            with _transaction(connection):
                yield connection
        except sqlite3.DatabaseError as error:
            raise self._translate(error, action) from error

    # ---------------------------------------------------------------- reading

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or None."""
        with self._reading("get") as connection:
            if connection is None:
                return None
            row = connection.execute("SELECT record FROM results WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def records(
        self,
        target: str | None = None,
        function: str | None = None,
        limit: int | None = 100,
    ) -> list[dict[str, Any]]:
        """Stored records, newest first; ``target``/``function`` filter when given (None
        means any), ``limit=None`` returns all."""
        clauses: list[str] = []
        params: list[Any] = []
        if target is not None:
            clauses.append("target = ?")
            params.append(target)
        if function is not None:
            clauses.append("function = ?")
            params.append(function)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        query = f"SELECT record FROM results {where} ORDER BY created_at DESC, rowid DESC"
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be >= 0 or None, got {limit}")
            query += " LIMIT ?"
            params.append(limit)
        with self._reading("records") as connection:
            if connection is None:
                return []
            rows = connection.execute(query, params).fetchall()
        return [json.loads(row[0]) for row in rows]

    def best(self, target: str, function: str | None) -> dict[str, Any] | None:
        """The best verified candidate for ``function`` of ``target``: verdict "faster",
        highest lower CI bound of the speed-up (then highest median, then newest).

        ``function=None`` means whole-program candidates (records stored without a
        function), not "any function".
        """
        with self._reading("best") as connection:
            if connection is None:
                return None
            row = connection.execute(
                "SELECT record FROM results"
                " WHERE target = ? AND function IS ? AND verdict = 'faster'"
                " ORDER BY ci_low DESC NULLS LAST, speedup_median DESC NULLS LAST,"
                " created_at DESC LIMIT 1",
                (target, function),
            ).fetchone()
        return None if row is None else json.loads(row[0])

    # ---------------------------------------------------------------- writing

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store ``record`` under ``key``, replacing any record already there.

        The stored record gets ``"key": key`` and, when missing, ``"created_at"`` (Unix
        seconds); the caller's dict is not modified.

        Raises:
            TypeError: the record is not a dict, or not JSON-serialisable (convert result
                dataclasses with their ``to_dict()``).
            ValueError: an indexed field has the wrong type, or ``record["key"]`` differs.
            ResultStoreError: the store cannot be written.
        """
        if not isinstance(record, dict):
            raise TypeError(f"record must be a dict, got {type(record).__name__}")
        if record.get("key", key) != key:
            raise ValueError(f"record['key'] is {record['key']!r} but it is stored as {key!r}")
        record = {**record, "key": key}
        if record.get("created_at") is None:
            record["created_at"] = time.time()
        columns = _indexed_columns(record)
        try:
            text = json.dumps(record, sort_keys=True)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"record for {key} is not JSON-serialisable ({error}); store dataclasses "
                f"via their to_dict() and bytes as text"
            ) from error
        with self._writing("put") as connection:
            assert connection is not None
            connection.execute(
                "INSERT OR REPLACE INTO results (key, target, function, policy, verdict,"
                " speedup_median, ci_low, created_at, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, *columns, text),
            )

    def delete(self, key: str) -> bool:
        """Remove the record under ``key``; True when there was one."""
        with self._writing("delete", create=False) as connection:
            if connection is None:
                return False
            cursor = connection.execute("DELETE FROM results WHERE key = ?", (key,))
            return cursor.rowcount > 0

    def clear(self) -> None:
        """Remove every record (the file stays, so other processes can keep it open)."""
        with self._writing("clear", create=False) as connection:
            if connection is not None:
                connection.execute("DELETE FROM results")


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _indexed_columns(
    record: dict[str, Any],
) -> tuple[str | None, str | None, str | None, str | None, float | None, float | None, float]:
    def text(name: str) -> str | None:
        value = record.get(name)
        if value is None:
            return None
        if not isinstance(value, str):  # str enums (Verdict) pass and store their value
            raise ValueError(f"record[{name!r}] must be a string, got {value!r}")
        return str(value.value) if hasattr(value, "value") else value

    def number(value: Any, name: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, got {value!r}")
        return float(value)

    speedup = record.get("speedup")
    if speedup is not None and not isinstance(speedup, dict):
        raise ValueError(
            f"record['speedup'] must be a dict (SpeedupEstimate.to_dict()), got {speedup!r}"
        )
    speedup = speedup or {}
    created_at = number(record["created_at"], "record['created_at']")
    assert created_at is not None
    return (
        text("target"),
        text("function"),
        text("policy"),
        text("verdict"),
        number(speedup.get("median"), "record['speedup']['median']"),
        number(speedup.get("ci_low"), "record['speedup']['ci_low']"),
        created_at,
    )
