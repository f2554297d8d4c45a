"""A small async wrapper around one sqlite3 connection (WAL, run in a worker thread)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..connectors import ConnectorBase, ConnectorContext
from ..types import Health

T = TypeVar("T")

# SQLite creates a database's -wal, -shm and -journal files with the database file's
# own permissions, so a private main file keeps its companions private too.
SIDECARS = ("-wal", "-shm", "-journal")


def create_private_file(path: Path) -> None:
    """Make ``path`` exist and be readable and writable by its owner only (0600).

    A missing file is created 0600 atomically (never world-readable for an instant);
    an existing file and its SQLite companions lose any group or other permission.
    The parent directory is created 0700 when missing.
    """
    if str(path) == ":memory:":
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for candidate in (path, *(path.with_name(path.name + s) for s in SIDECARS)):
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            candidate.chmod(mode & 0o700)


def connect_private(path: Path, **kwargs: Any) -> sqlite3.Connection:
    """``sqlite3.connect`` to a database file that only its owner can read (0600)."""
    create_private_file(path)
    return sqlite3.connect(path, **kwargs)


class SqliteDB:
    """One connection, serialised by a lock, used from asyncio through ``to_thread``."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        conn = connect_private(self.path, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(self._schema)
        self._conn = conn

    def close(self) -> None:
        # Under the lock: closing a connection while a worker thread runs a statement on
        # it crashes the process.
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._conn is None:
                raise RuntimeError(f"database {self.path} is not open")
            return fn(self._conn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._run, fn)

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside BEGIN IMMEDIATE ... COMMIT (rolled back on error)."""

        def wrapped(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self.run(wrapped)

    async def fetchall(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return await self.run(lambda conn: conn.execute(sql, params).fetchall())

    async def execute(self, sql: str, params: Any = ()) -> int:
        return await self.run(lambda conn: conn.execute(sql, params).rowcount)


class SqliteConnector(ConnectorBase):
    """Base of the embedded SQLite connectors: one database file, shared by tenants.

    The file is ``config.path`` or ``<data_dir>/<default_file>``; every row carries
    the tenant, and every query of a subclass filters on it.
    """

    default_file: ClassVar[str] = "maxcore.sqlite3"
    schema: ClassVar[str] = ""

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
