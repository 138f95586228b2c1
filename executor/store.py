# Over 500 lines: one class; recovering from a busy or broken database needs all its state.
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

The store only caches results, which can always be measured again, so it never costs the
user a result:

- a corrupt file is moved aside to ``results.sqlite.corrupt-<UTC time>`` by the first writer
  that meets it, with a one-line warning, and a fresh store is started (a store opened
  read-only reports it instead);
- the store is never opened or created through a symbolic link: an ``.asmopt`` folder or a
  store file that is a link is refused (:attr:`StoreProblem.SYMLINK`);
- with ``best_effort=True`` (the CLI, the language server) nothing is raised: the store warns
  once, then keeps and finds nothing, and :attr:`ResultStore.problem` says why.

Each text field of a record (build output, test diffs, messages) is capped where records are
written (:func:`cap_record`), so a candidate that prints megabytes cannot grow the store.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "SCHEMA_VERSION",
    "TEXT_CAP_BYTES",
    "ResultStore",
    "ResultStoreError",
    "StoreProblem",
    "candidate_key",
    "cap_record",
    "cap_text",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
STORE_DIR = ".asmopt"
STORE_FILE = "results.sqlite"
# Files SQLite keeps beside the database: each is checked for links like the database.
_SIDE_FILES = ("-wal", "-shm", "-journal")
# A verification of one candidate can hold the write lock only for a moment, so waiting
# this long means something is wrong (a hung process), not ordinary contention.
BUSY_TIMEOUT_MS = 30_000
# What is kept of each text field of a stored record (build stderr, a test's diff, a
# message): enough to see what went wrong, never the megabytes a hostile build can print.
TEXT_CAP_BYTES = 4096
# Room for the marker of an excerpt already made upstream (a build's stderr), so that it is
# not cut a second time.
_MARKER_ROOM = 128
# Lists of output excerpts, and how many items of each are kept.
_CAPPED_LISTS = {"diagnostics": 50}
# The program itself, stored whole: cutting it would lose the result.
_PROGRAM_FIELDS = frozenset({"asm", "baseline_asm"})

# SQLite's primary result codes (https://sqlite.org/rescode.html) that decide what a
# failure means; errors carry them, so no message text is parsed.
_SQLITE_ERROR = 1
_SQLITE_PERM = 3
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26

_T = TypeVar("_T")


class StoreProblem(enum.StrEnum):
    """Why the result store cannot be used (:attr:`ResultStoreError.problem`)."""

    CORRUPT = "corrupt"  # not an SQLite file, damaged, or not an asmopt store
    TOO_NEW = "too-new"  # written by a newer asmopt
    SYMLINK = "symlink"  # .asmopt or a store file is a symbolic link: refused
    NOT_WRITABLE = "not-writable"  # read-only workspace, permissions, a full disk
    NO_WORKSPACE = "no-workspace"  # the workspace folder does not exist
    LOCKED = "locked"  # another process held the write lock too long
    OPENED_READ_ONLY = "opened-read-only"  # a write on a store opened with read_only=True


class ResultStoreError(Exception):
    """The result store cannot be opened or used: ``problem`` says why, ``path`` names the
    file or folder at fault."""

    def __init__(self, message: str, problem: StoreProblem, path: Path) -> None:
        super().__init__(message)
        self.problem = problem
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return (type(self), (str(self), self.problem, self.path))


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

    With ``best_effort=True`` no :class:`ResultStoreError` is ever raised: the first problem
    is passed to ``warn`` (one line; default: this module's logger) and kept in
    :attr:`problem`, and from then on reads find nothing and writes keep nothing. A corrupt
    store is moved aside either way (unless ``read_only``), with a line to ``warn``.

    Records are JSON objects. :meth:`put` reads these fields from them (all optional):
    ``target``, ``function``, ``policy``, ``verdict`` (strings, e.g. ``Verdict.FASTER``),
    ``speedup`` (a ``SpeedupEstimate.to_dict()``: ``median`` and ``ci_low`` are indexed) and
    ``created_at`` (Unix seconds; filled in when missing).
    """

    def __init__(
        self,
        root: Path,
        *,
        read_only: bool = False,
        best_effort: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.path = self.root / STORE_DIR / STORE_FILE
        self.read_only = read_only
        self.best_effort = best_effort
        self._warn = warn or logger.warning
        # Set once a best-effort store has given up: why nothing is stored.
        self.problem: ResultStoreError | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        # (pid, connection): connections inherited through fork() belong to the parent.
        self._connections: list[tuple[int, sqlite3.Connection]] = []

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        mode += ", best_effort=True" if self.best_effort else ""
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

    def _forget_connection(self) -> None:
        """Close this thread's connection (other threads keep theirs until they fail)."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            return
        pid = self._local.pid
        del self._local.connection
        with self._lock:
            self._connections = [(p, c) for p, c in self._connections if c is not connection]
        if pid == os.getpid():
            connection.close()

    def _connection(self, *, create: bool) -> sqlite3.Connection | None:
        """This thread's connection; None when the store does not exist and ``create`` is
        false. A connection inherited through fork() is never reused: SQLite forbids it."""
        cached: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if cached is not None and self._local.pid == os.getpid():
            return cached
        if not self._inspect():
            if not create:
                return None
            self._make_directory()
        connection = self._open()
        self._local.connection = connection
        self._local.pid = os.getpid()
        with self._lock:
            self._connections.append((os.getpid(), connection))
        return connection

    def _inspect(self) -> bool:
        """Whether the store file exists. Raises when the folder or a store file is a
        symbolic link: SQLite would follow it, and create or write files wherever it
        points (an ``.asmopt`` planted as a link to ``/etc``)."""
        folder = self.path.parent
        sides = [self.path.with_name(STORE_FILE + suffix) for suffix in _SIDE_FILES]
        exists = False
        for path in (folder, self.path, *sides):
            try:
                mode = os.lstat(path).st_mode
            except (FileNotFoundError, NotADirectoryError):
                if path == folder:
                    return False
                continue
            except OSError as error:
                raise ResultStoreError(
                    f"cannot read {path}: {error.strerror}; check the workspace's permissions",
                    StoreProblem.NOT_WRITABLE,
                    path,
                ) from error
            if stat.S_ISLNK(mode):
                raise self._link_error(path)
            if path == folder and not stat.S_ISDIR(mode):
                return False  # writing says so; reading finds nothing
            exists = exists or path == self.path
        return exists

    def _link_error(self, path: Path) -> ResultStoreError:
        try:
            target = f" (to {os.readlink(path)})"
        except OSError:
            target = ""
        return ResultStoreError(
            f"refusing to use the result store: {path} is a symbolic link{target}, and asmopt "
            f"never opens or creates its store through a link; remove the link to keep results",
            StoreProblem.SYMLINK,
            path,
        )

    def _make_directory(self) -> None:
        folder = self.path.parent
        if not self.root.is_dir():
            raise ResultStoreError(
                f"cannot create the result store: workspace folder {self.root} does not exist",
                StoreProblem.NO_WORKSPACE,
                self.root,
            )
        try:
            os.mkdir(folder)  # never follows a link, unlike makedirs(exist_ok=True)
        except FileExistsError:
            mode = os.lstat(folder).st_mode
            if stat.S_ISLNK(mode):  # appeared since _inspect looked
                raise self._link_error(folder) from None
            if not stat.S_ISDIR(mode):
                raise ResultStoreError(
                    f"cannot create the result store: {folder} exists and is not a folder; "
                    f"move it away to keep results",
                    StoreProblem.NOT_WRITABLE,
                    folder,
                ) from None
        except OSError as error:
            raise ResultStoreError(
                f"cannot create {folder}: {error.strerror}; make the workspace writable to "
                f"keep results",
                StoreProblem.NOT_WRITABLE,
                folder,
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
                if _primary_code(error) not in (_SQLITE_BUSY, _SQLITE_LOCKED):
                    raise
                if time.monotonic() > deadline:
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
        tables = connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()[0]
        if not tables:
            return None
        row = connection.execute("SELECT max(version) FROM schema_version").fetchone()
        version: int | None = row[0]
        if version is not None and version > SCHEMA_VERSION:
            raise ResultStoreError(
                f"{self.path} was written by a newer asmopt (store schema {version}; this "
                f"version reads up to {SCHEMA_VERSION}): upgrade asmopt, or delete "
                f"{STORE_DIR}/{STORE_FILE} to start a fresh store",
                StoreProblem.TOO_NEW,
                self.path,
            )
        return version

    def _translate(self, error: sqlite3.DatabaseError, action: str) -> ResultStoreError:
        code = _primary_code(error)
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return ResultStoreError(
                f"result store {self.path} is locked by another process (waited up to "
                f"{BUSY_TIMEOUT_MS // 1000} s during {action}); stop a hung asmopt process "
                f"holding it, then retry",
                StoreProblem.LOCKED,
                self.path,
            )
        if code in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_CANTOPEN, _SQLITE_FULL, _SQLITE_IOERR):
            return ResultStoreError(
                f"cannot use result store {self.path} ({error}) during {action}; make the "
                f"workspace writable, with free disk space, to keep results",
                StoreProblem.NOT_WRITABLE,
                self.path,
            )
        # SQLITE_CORRUPT, SQLITE_NOTADB, and SQLITE_ERROR ("no such table": a database that
        # is not an asmopt store).
        return ResultStoreError(
            f"result store {self.path} is unreadable or corrupt ({error}) during {action}; "
            f"asmopt moves it aside the next time it stores a result, or delete "
            f"{STORE_DIR}/{STORE_FILE} (it only caches results, which are measured again)",
            StoreProblem.CORRUPT,
            self.path,
        )

    # ---------------------------------------------------------------- failures

    def _call(
        self,
        action: str,
        body: Callable[[sqlite3.Connection], _T],
        *,
        empty: _T,
        write: bool = False,
        create: bool = False,
    ) -> _T:
        """Run ``body`` on this thread's connection (in a write transaction when ``write``);
        ``empty`` when there is no store. Moves a corrupt store aside and tries once more;
        a best-effort store turns any problem into ``empty``."""
        if self.problem is not None:
            return empty
        try:
            if write and self.read_only:
                raise ResultStoreError(
                    f"cannot {action}: the result store {self.path} was opened read-only",
                    StoreProblem.OPENED_READ_ONLY,
                    self.path,
                )
            try:
                return self._attempt(action, body, empty, write=write, create=create)
            except ResultStoreError as error:
                if error.problem is not StoreProblem.CORRUPT or self.read_only:
                    raise
                self._move_aside(error)
            return self._attempt(action, body, empty, write=write, create=create)
        except ResultStoreError as error:
            if not self.best_effort:
                raise
            self._give_up(error)
            return empty

    def _attempt(
        self,
        action: str,
        body: Callable[[sqlite3.Connection], _T],
        empty: _T,
        *,
        write: bool,
        create: bool,
    ) -> _T:
        try:
            connection = self._connection(create=create)
            if connection is None:
                return empty
            if not write:
                return body(connection)
            with _transaction(connection):
                return body(connection)
        except sqlite3.DatabaseError as error:
            raise self._translate(error, action) from error

    def _move_aside(self, error: ResultStoreError) -> None:
        """Rename a corrupt store (and its journal) to ``results.sqlite.corrupt-<time>``
        so that the next attempt starts a fresh one."""
        self._forget_connection()
        with self._lock:  # threads of this process: one moves it, the others reconnect
            if not self._still_corrupt():
                return  # another thread or process has already started a fresh store
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            target = self.path.with_name(f"{STORE_FILE}.corrupt-{stamp}")
            n = 1
            while os.path.lexists(target):
                n += 1
                target = self.path.with_name(f"{STORE_FILE}.corrupt-{stamp}-{n}")
            try:
                os.rename(self.path, target)
                for suffix in ("-wal", "-journal"):
                    side = self.path.with_name(STORE_FILE + suffix)
                    if os.path.lexists(side):
                        os.rename(side, target.with_name(target.name + suffix))
                self.path.with_name(STORE_FILE + "-shm").unlink(missing_ok=True)
            except OSError as os_error:
                raise ResultStoreError(
                    f"{error}; moving it aside failed: {os_error.strerror}",
                    StoreProblem.NOT_WRITABLE,
                    self.path,
                ) from os_error
        cause = error.__cause__ or error
        self._warn(
            f"result store {self.path} was corrupt ({cause}); moved it to {target.name} "
            f"and started a fresh one"
        )

    def _still_corrupt(self) -> bool:
        """Whether the file now at :attr:`path` is still unusable (another process may have
        replaced it with a fresh store since this one failed)."""
        if not os.path.lexists(self.path):
            return False
        try:
            probe = self._open()
            try:
                check = probe.execute("PRAGMA quick_check(1)").fetchone()
                probe.execute("SELECT key FROM results LIMIT 1").fetchall()
            finally:
                probe.close()
        except sqlite3.DatabaseError as error:
            return _primary_code(error) in (_SQLITE_CORRUPT, _SQLITE_NOTADB, _SQLITE_ERROR)
        return check is None or check[0] != "ok"

    def _give_up(self, error: ResultStoreError) -> None:
        with self._lock:
            first = self.problem is None
            if first:
                self.problem = error
        if first:
            self._forget_connection()
            self._warn(f"results are not stored: {error}")

    # ---------------------------------------------------------------- reading

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or None."""

        def body(connection: sqlite3.Connection) -> dict[str, Any] | None:
            row = connection.execute("SELECT record FROM results WHERE key = ?", (key,)).fetchone()
            return None if row is None else _loads(row[0])

        return self._call("get", body, empty=None)

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

        def body(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = connection.execute(query, params).fetchall()
            return [r for r in (_loads(row[0]) for row in rows) if r is not None]

        return self._call("records", body, empty=[])

    def best(self, target: str, function: str | None) -> dict[str, Any] | None:
        """The best verified candidate for ``function`` of ``target``: verdict "faster",
        highest lower CI bound of the speed-up (then highest median, then newest).

        ``function=None`` means whole-program candidates (records stored without a
        function), not "any function".
        """

        def body(connection: sqlite3.Connection) -> dict[str, Any] | None:
            row = connection.execute(
                "SELECT record FROM results"
                " WHERE target = ? AND function IS ? AND verdict = 'faster'"
                " ORDER BY ci_low DESC NULLS LAST, speedup_median DESC NULLS LAST,"
                " created_at DESC LIMIT 1",
                (target, function),
            ).fetchone()
            return None if row is None else _loads(row[0])

        return self._call("best", body, empty=None)

    # ---------------------------------------------------------------- writing

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store ``record`` under ``key``, replacing any record already there.

        The stored record gets ``"key": key`` and, when missing, ``"created_at"`` (Unix
        seconds), and its text fields are capped (:func:`cap_record`); the caller's dict
        is not modified.

        Raises:
            TypeError: the record is not a dict, or not JSON-serialisable (convert result
                dataclasses with their ``to_dict()``).
            ValueError: an indexed field has the wrong type, or ``record["key"]`` differs.
            ResultStoreError: the store cannot be written (never with ``best_effort``).
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
            text = json.dumps(cap_record(record), sort_keys=True)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"record for {key} is not JSON-serialisable ({error}); store dataclasses "
                f"via their to_dict() and bytes as text"
            ) from error

        def body(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT OR REPLACE INTO results (key, target, function, policy, verdict,"
                " speedup_median, ci_low, created_at, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, *columns, text),
            )

        self._call("put", body, empty=None, write=True, create=True)

    def delete(self, key: str) -> bool:
        """Remove the record under ``key``; True when there was one."""

        def body(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute("DELETE FROM results WHERE key = ?", (key,))
            return cursor.rowcount > 0

        return self._call("delete", body, empty=False, write=True)

    def clear(self) -> None:
        """Remove every record (the file stays, so other processes can keep it open)."""

        def body(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM results")

        self._call("clear", body, empty=None, write=True)


def cap_text(text: str, limit: int = TEXT_CAP_BYTES) -> str:
    """``text`` cut to about ``limit`` bytes of UTF-8: its start and its end (where a tool's
    summary line often is) around a ``… (N bytes cut)`` line; text up to ``limit`` bytes
    (and a cut marker's worth more) is returned as is."""
    if len(text) <= limit // 4:  # cannot be longer than limit bytes: skip encoding
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit + _MARKER_ROOM:
        return text
    head = data[: limit * 3 // 4].decode("utf-8", "ignore")
    tail = data[len(data) - limit // 4 :].decode("utf-8", "ignore")
    cut = len(data) - len(head.encode("utf-8")) - len(tail.encode("utf-8"))
    return f"{head}\n… ({cut} bytes cut)\n{tail}"


def cap_record(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` as it is stored: every string cut by :func:`cap_text` except the
    program itself (``asm``, ``baseline_asm``), and each list of diagnostics cut to its first
    items, with ``diagnostics_cut`` saying how many were left out."""
    capped = _capped(record, None)
    assert isinstance(capped, dict)
    return capped


def _capped(value: Any, key: str | None) -> Any:
    if isinstance(value, str):
        return value if key in _PROGRAM_FIELDS else cap_text(value)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for name, item in value.items():
            keep = _CAPPED_LISTS.get(name)
            if keep is not None and isinstance(item, list | tuple) and len(item) > keep:
                out[f"{name}_cut"] = len(item) - keep
                item = item[:keep]
            out[name] = _capped(item, name)
        return out
    if isinstance(value, list | tuple):
        return [_capped(item, key) for item in value]
    return value


def _loads(text: str) -> dict[str, Any] | None:
    """A stored record; None for one that does not parse (it is measured again)."""
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _primary_code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


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
