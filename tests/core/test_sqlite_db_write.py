"""``SqliteDB.write``: small write transactions on the event loop's thread, a worker
thread when the file is busy, checkpoints kept off the loop."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from maxcore.builtin import sqlite_db
from maxcore.builtin.sqlite_db import SqliteDB

SCHEMA = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);"


@pytest.fixture
def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    handle = SqliteDB(tmp_path / "store.sqlite3", SCHEMA)
    handle.open()
    yield handle
    handle.close()


def insert(value: str):  # type: ignore[no-untyped-def]
    def work(conn: sqlite3.Connection) -> tuple[int, str]:
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        return threading.get_ident(), value

    return work


def count(path: Path) -> int:
    with sqlite3.connect(path) as other:
        return int(other.execute("SELECT COUNT(*) FROM t").fetchone()[0])


async def test_a_free_file_is_written_on_the_loop_thread_and_committed(db: SqliteDB, tmp_path: Path) -> None:
    thread, value = await db.write(insert("a"))
    assert (thread, value) == (threading.get_ident(), "a")
    assert count(tmp_path / "store.sqlite3") == 1  # committed: another connection sees it


async def test_a_failing_write_is_rolled_back_and_raises(db: SqliteDB, tmp_path: Path) -> None:
    def fails(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES ('kept?')")
        conn.execute("INSERT INTO t (v) VALUES (NULL)")  # NOT NULL

    with pytest.raises(sqlite3.IntegrityError):
        await db.write(fails)
    assert count(tmp_path / "store.sqlite3") == 0
    await db.write(insert("after"))  # the connection is usable again, not left in a transaction
    assert count(tmp_path / "store.sqlite3") == 1


async def test_another_process_lock_sends_the_write_to_a_thread_and_the_loop_keeps_running(
        db: SqliteDB, tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "store.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # as a `maxcore memory forget` in another process would
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(ticker())
    write = asyncio.create_task(db.write(insert("waited")))
    await asyncio.sleep(0.3)
    assert not write.done()
    assert ticks >= 5  # the loop kept running while the write waited for the lock
    other.execute("COMMIT")
    thread, _ = await asyncio.wait_for(write, 10)
    beat.cancel()
    assert thread != threading.get_ident()  # it waited for the lock in a worker thread
    assert count(tmp_path / "store.sqlite3") == 1
    other.close()


async def test_the_wal_is_checkpointed_every_so_many_writes_off_the_loop(
        db: SqliteDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_db, "CHECKPOINT_EVERY", 5)
    path = tmp_path / "store.sqlite3"
    for n in range(5):
        await db.write(insert(str(n)))
    for _ in range(100):  # the checkpoint runs in a worker thread
        await asyncio.sleep(0.01)
        if db._shared().checkpoint is None:
            break
    # The database file alone (no WAL beside it) holds the five rows.
    alone = tmp_path / "copy.sqlite3"
    shutil.copyfile(path, alone)
    assert count(alone) == 5
