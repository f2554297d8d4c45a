"""The embedded stores' SQLite access: one writer and one reader connection per database
file for the whole process, whichever tenants use it (WAL mode)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

from ..connectors import ConnectorBase, ConnectorContext
from ..files import commit_after, connect_private, in_write_transaction, is_busy
from ..types import Health

T = TypeVar("T")


class SharedFile:
    """The connections of one database file, shared by every tenant whose connector uses
    it: a writer (statements run in a worker thread, one at a time under ``lock``) and
    a reader used on the event loop's thread only, for small indexed reads that WAL lets
    run beside any writer (no thread hop, no lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer = _connect(path)
        self.reader = _connect(path) if str(path) != ":memory:" else self.writer
        self.lock = threading.Lock()
        self.schemas: set[str] = set()
        self.users = 0
        self.commits_since_checkpoint = 0
        self.checkpoint: asyncio.Future[None] | None = None

    def checkpoint_due(self) -> bool:
        """Count a write; whether the WAL is due a checkpoint (automatic ones are off: on
        the loop's thread one would stall every request for its fsync)."""
        self.commits_since_checkpoint += 1
        return self.commits_since_checkpoint >= CHECKPOINT_EVERY

    def close(self) -> None:
        # Under the lock: closing a connection while a worker thread runs a statement on
        # it crashes the process.
        with self.lock:
            if self.reader is not self.writer:
                self.reader.close()
            self.writer.close()


def _connect(path: Path) -> sqlite3.Connection:
    conn = connect_private(path, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous=NORMAL")
    # Checkpoints run in a worker thread every CHECKPOINT_EVERY writes (SqliteDB.write),
    # and when the last connection closes.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


BUSY_TIMEOUT_MS = 10_000
CHECKPOINT_EVERY = 256  # writes between two WAL checkpoints (a few MB of WAL at most)


# Open database files by resolved path: one SharedFile per file in the process.
_FILES: dict[str, SharedFile] = {}
_FILES_LOCK = threading.Lock()


def _key(path: Path) -> str:
    return str(path) if str(path) == ":memory:" else str(path.expanduser().resolve())


def open_files() -> int:
    """How many database files the embedded connectors hold open (tests, health)."""
    return len(_FILES)


def _checkpoint(shared: SharedFile) -> None:
    """Copy the WAL into the database, under ``shared.lock`` in a worker thread."""
    shared.commits_since_checkpoint = 0
    if str(shared.path) != ":memory:":
        shared.writer.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _write_now(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
    """``fn`` in a write transaction if the write lock is free right now: (True, its
    result), or (False, None) with nothing done. Never waits for another process."""
    conn.execute("PRAGMA busy_timeout=0")
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                return False, None
            raise
        return True, commit_after(conn, fn)
    finally:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


class SqliteDB:
    """A connector's handle on a database file; the file's connections are shared.

    Opened by the first query when ``open()`` was not called (the embedded stores are
    used by the CLI and by tests without ceremony); unusable after ``close()``.
    """

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._file: SharedFile | None = None
        self._closed = False

    def open(self) -> None:
        if self._file is not None:
            return
        key = _key(self.path)
        with _FILES_LOCK:
            shared = _FILES.get(key)
            if shared is None:
                shared = _FILES[key] = SharedFile(self.path)
            shared.users += 1
            self._file = shared
        self._closed = False
        if self._schema not in shared.schemas:
            with shared.lock:
                if self._schema not in shared.schemas:
                    shared.writer.executescript(self._schema)
                    shared.schemas.add(self._schema)

    def close(self) -> None:
        shared, self._file = self._file, None
        self._closed = True
        if shared is None:
            return
        with _FILES_LOCK:
            shared.users -= 1
            if shared.users > 0:
                return
            _FILES.pop(_key(self.path), None)
        shared.close()

    def _shared(self) -> SharedFile:
        if self._file is None:
            if self._closed:
                raise RuntimeError(f"database {self.path} is not open")
            self.open()
        assert self._file is not None
        return self._file

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        shared = self._shared()
        with shared.lock:
            if self._file is None:
                raise RuntimeError(f"database {self.path} is not open")
            result = fn(shared.writer)
            if shared.checkpoint_due():
                _checkpoint(shared)
            return result

    def _checkpoint(self) -> None:
        shared = self._file
        if shared is None:
            return
        with shared.lock:
            try:
                _checkpoint(shared)
            except sqlite3.Error:  # closed meanwhile, or busy: the next one catches up
                pass

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A small write transaction (a few statements on an index) on the event loop's
        thread; in a worker thread, as :meth:`transaction`, when a thread is using the
        connection or another process holds the write lock.

        A thread hop costs more than such a transaction: handing the statements to a
        thread and taking the result back woke threads and moved the interpreter lock
        several times per message. With ``synchronous=NORMAL`` a WAL commit does not
        wait for the disk, and checkpoints run in a thread (CHECKPOINT_EVERY writes).
        """
        shared = self._shared()
        if shared.lock.acquire(blocking=False):
            try:
                if self._file is None:
                    raise RuntimeError(f"database {self.path} is not open")
                done, result = _write_now(shared.writer, fn)
                if done:
                    result = cast(T, result)
                    if shared.checkpoint_due() and shared.checkpoint is None:
                        shared.checkpoint = asyncio.ensure_future(asyncio.to_thread(self._checkpoint))
                        shared.checkpoint.add_done_callback(lambda _: setattr(shared, "checkpoint", None))
                    return result
            finally:
                shared.lock.release()
        return await self.transaction(fn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer connection, in a worker thread."""
        self._shared()  # opened here, on the loop's thread, if it was not
        return await asyncio.to_thread(self._run, fn)

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside BEGIN IMMEDIATE ... COMMIT (rolled back on error)."""
        return await self.run(lambda conn: in_write_transaction(conn, fn))

    async def fetchall(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return await self.run(lambda conn: conn.execute(sql, params).fetchall())

    def read(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """A small indexed read, on the event loop's thread (WAL: never waits on a writer).

        Only for bounded queries on an index (a chat's last turns, one lead by id):
        anything that may scan goes through :meth:`fetchall`.
        """
        shared = self._shared()
        if shared.reader is shared.writer:  # ":memory:": one connection, behind the lock
            with shared.lock:
                return shared.writer.execute(sql, params).fetchall()
        return shared.reader.execute(sql, params).fetchall()

    async def execute(self, sql: str, params: Any = ()) -> int:
        return await self.run(lambda conn: conn.execute(sql, params).rowcount)


class SqliteConnector(ConnectorBase):
    """Base of the embedded SQLite connectors: one database file, shared by tenants.

    The file is ``config.path`` or ``<data_dir>/<default_file>``; every row carries
    the tenant, and every query of a subclass filters on it.
    """

    default_file: ClassVar[str] = "maxcore.sqlite3"
    schema: ClassVar[str] = ""
    # The first query opens the database when open() was not called (see SqliteDB).
    opens_lazily: ClassVar[bool] = True

    def __init__(self, config: Any, context: ConnectorContext) -> None:
        super().__init__(config, context)
        configured = getattr(config, "path", None)
        path = Path(configured) if configured else context.data_dir / self.default_file
        self.db = SqliteDB(path, self.schema)

    async def open(self) -> None:
        self.db.open()

    async def close(self) -> None:
        self.db.close()

    async def health(self) -> Health:
        try:
            await self.db.fetchall("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return Health.down(f"cannot query {self.db.path}: {exc}")
        return Health.ok(str(self.db.path))
