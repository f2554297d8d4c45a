"""The group committer runs a batch's statements on the event loop's thread and its
COMMIT in a thread of its own, and never makes the loop wait for another process's
write lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from maxcore.durable_inbox import connect
from maxcore.group_commit import GroupCommitter


def table(path: Path) -> sqlite3.Connection:
    conn = connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
    return conn


async def test_many_writers_share_few_commits_and_each_gets_its_result(tmp_path: Path) -> None:
    committer = GroupCommitter(table(tmp_path / "inbox.sqlite3"))
    committer.start()
    try:
        results = await asyncio.gather(*(
            committer.write(lambda conn, n=n: conn.execute("INSERT INTO t VALUES (?)", (n,)).lastrowid)
            for n in range(300)))
        assert sorted(results) == list(range(1, 301))
        assert committer.batches < 30 and committer.largest_batch > 10
    finally:
        await committer.close()
    with sqlite3.connect(tmp_path / "inbox.sqlite3") as check:
        assert check.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 300


async def test_a_failing_operation_is_rolled_back_alone_its_neighbours_commit(tmp_path: Path) -> None:
    committer = GroupCommitter(table(tmp_path / "inbox.sqlite3"))
    committer.start()
    ran: list[int] = []

    def insert(n: int) -> object:
        def run(conn: sqlite3.Connection) -> object:
            ran.append(n)
            conn.execute("INSERT INTO t VALUES (?)", (n,))
            if n == 3:  # wrote a row, then failed: that row must not stay
                raise sqlite3.IntegrityError("refused")
            return n
        return run

    try:
        results = await asyncio.gather(*(committer.write(insert(n)) for n in range(6)),
                                       return_exceptions=True)
    finally:
        await committer.close()
    assert [r if not isinstance(r, Exception) else "failed" for r in results] == [0, 1, 2, "failed", 4, 5]
    # One batch: run whole until the failure, undone, then run operation by operation.
    assert committer.batches == 1 and ran == [0, 1, 2, 3, 0, 1, 2, 3, 4, 5]
    with sqlite3.connect(tmp_path / "inbox.sqlite3") as check:
        assert sorted(n for (n,) in check.execute("SELECT n FROM t")) == [0, 1, 2, 4, 5]


@pytest.fixture
async def locked(tmp_path: Path) -> AsyncIterator[tuple[GroupCommitter, sqlite3.Connection]]:
    """A running committer, and another connection holding the write lock (as another
    process would)."""
    path = tmp_path / "inbox.sqlite3"
    committer = GroupCommitter(table(path))
    committer.start()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    yield committer, other
    await committer.close()
    other.close()


async def test_another_process_lock_is_waited_for_off_the_loop(
        tmp_path: Path, locked: tuple[GroupCommitter, sqlite3.Connection]) -> None:
    committer, other = locked
    write = asyncio.ensure_future(committer.write(lambda conn: conn.execute("INSERT INTO t VALUES (1)")))
    ticks = 0
    for _ in range(20):  # the loop keeps running while the write waits
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 20 and not write.done()
    released = threading.Timer(0.05, lambda: other.execute("COMMIT"))
    released.start()
    await asyncio.wait_for(write, 10)
    released.join()
    with sqlite3.connect(tmp_path / "inbox.sqlite3") as check:
        assert check.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1


async def test_closing_while_a_batch_waits_for_the_lock_fails_it_cleanly(
        tmp_path: Path, locked: tuple[GroupCommitter, sqlite3.Connection]) -> None:
    committer, other = locked
    write = asyncio.ensure_future(committer.write(lambda conn: conn.execute("INSERT INTO t VALUES (1)")))
    await asyncio.sleep(0.05)
    closing = asyncio.ensure_future(committer.close())
    await asyncio.sleep(0.05)
    other.execute("COMMIT")  # too late: the batch was cancelled before it could begin
    await asyncio.wait_for(closing, 15)
    assert write.done() and write.exception() is not None
    with sqlite3.connect(tmp_path / "inbox.sqlite3") as check:
        assert check.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0


async def test_statements_run_on_the_loop_and_the_commit_in_its_own_thread(tmp_path: Path) -> None:
    conn = table(tmp_path / "inbox.sqlite3")
    threads: dict[str, set[int]] = {}
    conn.set_trace_callback(lambda sql: threads.setdefault(sql.split()[0], set()).add(threading.get_ident()))
    committer = GroupCommitter(conn)
    committer.start()
    loop_thread = threading.get_ident()
    queued_during_commit: list[int] = []
    try:
        first = committer.write(lambda c: c.execute("INSERT INTO t VALUES (1)").lastrowid)
        await asyncio.sleep(0)  # the batch begins, its COMMIT goes to the thread
        # Queued while the first COMMIT may still run: committed by the next batch.
        second = committer.write(lambda c: queued_during_commit.append(1) or c.execute(
            "INSERT INTO t VALUES (2)").lastrowid)
        assert await asyncio.gather(first, second) == [1, 2]
    finally:
        await committer.close()
    assert threads["INSERT"] == {loop_thread}
    assert loop_thread not in threads["COMMIT"] and len(threads["COMMIT"]) == 1
    assert queued_during_commit == [1]
