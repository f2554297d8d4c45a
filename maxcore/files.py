"""Files only their owner can read: SQLite databases hold messages and contacts."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

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
    conn = sqlite3.connect(path, **kwargs)
    # Statement journals and sorts in memory: on disk each one was a file created, written
    # and unlinked in /var/tmp (several syscalls, up to hundreds of KB) for nearly every
    # write transaction. They never hold durable data, so memory loses nothing.
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` says another connection holds a lock ("database is locked/busy")."""
    return "locked" in str(exc) or "busy" in str(exc)


def in_write_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn(conn)`` inside ``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back if it raises
    (the write lock is taken first, so a busy database waits here, not mid-way)."""
    conn.execute("BEGIN IMMEDIATE")
    return commit_after(conn, fn)


def commit_after(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn(conn)`` in the transaction just begun, then COMMIT; ROLLBACK if it raises."""
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
