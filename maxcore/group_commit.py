"""Group commit: many writers, one SQLite connection, one COMMIT per batch.

The inbox, the journal and the audit outbox write to one database file through one
:class:`GroupCommitter`: every write queued while a batch commits joins the next one, so
one fsync covers many writes under load.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from loguru import logger

from .files import is_busy
from .inbox import InboxFull

# How long a write waits for another process's write lock before it fails.
BUSY_TIMEOUT_MS = 10_000
LOCK_RETRY_S = 0.001  # how often a group commit tries again for another process's lock
CLOSE_WAIT_S = 15.0  # how long closing waits for the last batches


class InboxUnavailable(InboxFull):
    """The inbox storage failed: answer 503 so that the provider redelivers later."""

    def __init__(self, reason: str, retry_after: int = 5) -> None:
        Exception.__init__(self, f"inbox storage unavailable ({reason}); try again later")
        self.retry_after = retry_after


@attrs.define
class _Op:
    """One statement for the next group commit; ``on_commit`` runs after COMMIT."""

    run: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    on_commit: Callable[[Any], None] | None = None


class GroupCommitter:
    """Serialises writes on one connection and commits them in batches.

    A batch's statements run on the event loop's thread, between two awaits. Run in a
    worker thread, each statement gave the interpreter lock back and waited to retake it
    behind a busy event loop (up to the 5 ms switch interval each time): with 256
    writers and a loaded loop, a batch's COMMIT took 0.2-0.6 s and a write's p99 reached
    1.8 s, against 1 ms per batch on the loop's thread. Its COMMIT alone (the fsync) runs
    in a thread of its own: one hand-over per batch, and the loop serves requests during
    the fsync instead of waiting for it (on the loop, the fsync bounded webhook intake
    at one batch per fsync). What callers queue meanwhile forms the next batch.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        # The loop never blocks on another process's write lock (a --role web/worker
        # pair, a `maxcore inbox` command): BEGIN fails at once and _begin tries again.
        conn.execute("PRAGMA busy_timeout=0")
        self._batch: Sequence[_Op] = ()
        self._ops: list[_Op] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._lock_wait = asyncio.Event()  # set while a batch waits for another process's lock
        # One thread for the COMMITs: never queued behind other work in the default pool.
        self._committer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inbox-commit")
        self.batches = 0
        self.largest_batch = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="inbox-group-commit")

    async def write(
        self, run: Callable[[sqlite3.Connection], Any], on_commit: Callable[[Any], None] | None = None
    ) -> Any:
        return await self.submit(run, on_commit)

    def submit(
        self, run: Callable[[sqlite3.Connection], Any], on_commit: Callable[[Any], None] | None = None
    ) -> asyncio.Future[Any]:
        """Queue ``run`` now; its future resolves once committed. Operations are applied in
        the order they were queued, so a write queued later commits with or after it."""
        if self._task is None or self._task.done():
            raise InboxUnavailable("the inbox is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._ops.append(_Op(run, future, on_commit))
        self._wake.set()
        return future

    async def _begin(self) -> None:
        """BEGIN IMMEDIATE; while another process holds the write lock, try again every
        millisecond, the loop free in between, up to the busy timeout.

        SQLite's own busy handler would block the loop, and it sleeps longer and longer
        (up to 100 ms a try): a ``--role web`` process writing beside a busy worker saw
        its acknowledgements wait seconds.
        """
        deadline: float | None = None
        while True:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._lock_wait.clear()
                return
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + BUSY_TIMEOUT_MS / 1000
                if now >= deadline:
                    self._lock_wait.clear()
                    raise
            self._lock_wait.set()
            await asyncio.sleep(LOCK_RETRY_S)

    def _apply(self, batch: Sequence[_Op]) -> list[tuple[bool, Any]]:
        """Run ``batch`` in the transaction :meth:`_begin` opened (:meth:`_commit` ends
        it). When an operation fails, the batch is undone and run again with each
        operation in its own savepoint: the one that fails is rolled back alone and
        reported to its caller, its neighbours commit. (Savepoints for every operation
        cost two statements each, on every batch, for a failure that almost never
        happens.)"""
        conn = self._conn
        try:
            outcomes: list[tuple[bool, Any]] = []
            conn.execute("SAVEPOINT batch")
            try:
                outcomes = [(True, op.run(conn)) for op in batch]
                conn.execute("RELEASE batch")
            except Exception:  # noqa: BLE001 - isolated below, operation by operation
                conn.execute("ROLLBACK TO batch")
                conn.execute("RELEASE batch")
                outcomes = self._apply_isolated(batch)
        except BaseException:
            self._rollback()
            raise
        return outcomes

    async def _commit(self) -> None:
        """COMMIT in the commit thread. The loop goes on meanwhile, but nothing else
        touches the connection: the next batch starts once this one returned."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._committer, self._conn.execute, "COMMIT")
        except asyncio.CancelledError:
            raise  # the thread still ends its COMMIT: close() waits for it, the loop must not
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _apply_isolated(self, batch: Sequence[_Op]) -> list[tuple[bool, Any]]:
        conn = self._conn
        outcomes: list[tuple[bool, Any]] = []
        for op in batch:
            conn.execute("SAVEPOINT op")
            try:
                outcomes.append((True, op.run(conn)))
            except Exception as exc:  # noqa: BLE001 - this operation fails, not the batch
                conn.execute("ROLLBACK TO op")
                outcomes.append((False, exc))
            conn.execute("RELEASE op")
        return outcomes

    async def _loop(self) -> None:
        while not (self._closing and not self._ops):
            await self._wake.wait()
            self._wake.clear()
            while self._ops:
                batch, self._ops = self._ops, []
                self._batch = batch
                self.batches += 1
                self.largest_batch = max(self.largest_batch, len(batch))
                try:
                    await self._begin()
                    outcomes = self._apply(batch)
                    await self._commit()
                except Exception as exc:  # noqa: BLE001 - the commit itself failed: nothing stored
                    logger.opt(exception=exc).error(
                        "[INBOX] commit of {} operation(s) failed: {}", len(batch), exc)
                    for op in batch:
                        if not op.future.done():
                            op.future.set_exception(InboxUnavailable(type(exc).__name__))
                    continue
                self._deliver(batch, outcomes)
                # Let the callers (and the webhooks waiting for their 2xx) run before the
                # next batch: it then holds everything they queued meanwhile.
                await asyncio.sleep(0)

    def _deliver(self, batch: Sequence[_Op], outcomes: Sequence[tuple[bool, Any]]) -> None:
        """Hand each caller its result, in commit order."""
        for op, (ok, result) in zip(batch, outcomes, strict=True):
            if not ok:
                logger.opt(exception=result).error(
                    "[INBOX] one operation failed and was rolled back alone: {}: {}",
                    type(result).__name__, result)
                if not op.future.done():
                    op.future.set_exception(InboxUnavailable(type(result).__name__))
                continue
            try:
                if op.on_commit is not None:
                    op.on_commit(result)
            except Exception as exc:  # noqa: BLE001 - committed: the callers still get it
                logger.opt(exception=exc).error("[INBOX] after-commit step failed: {}", exc)
            if not op.future.done():
                op.future.set_result(result)

    async def close(self) -> None:
        """Commit what is queued (and what is queued meanwhile), then stop. A batch that
        waits for another process's write lock is cut: its callers are told the inbox
        closed."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            # The loop ends once nothing is queued, unless a batch waits for another
            # process's lock (cut at once: it never began).
            locked = asyncio.ensure_future(self._lock_wait.wait())
            await asyncio.wait({self._task, locked}, timeout=CLOSE_WAIT_S,
                               return_when=asyncio.FIRST_COMPLETED)
            locked.cancel()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._committer.shutdown(wait=True)  # a cut COMMIT still ends before the connection closes
        # A batch cancelled while it waited for the lock never began: its callers fail.
        for op in (*self._batch, *self._ops):
            if not op.future.done():
                op.future.set_exception(InboxUnavailable("the inbox is closed"))
        self._ops = []
