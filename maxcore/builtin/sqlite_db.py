"""A small async wrapper around one sqlite3 connection (WAL, run in a worker thread)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..connectors import ConnectorBase, ConnectorContext
from ..files import connect_private
from ..types import Health

T = TypeVar("T")

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
