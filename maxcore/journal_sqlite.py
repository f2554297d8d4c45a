"""The journal and the audit outbox in the durable inbox's SQLite database.

Every write goes through the inbox's group committer (``SqliteInbox.write``): a step's
journal entry and its audit rows are one statement batch in one commit, shared with the
inbox's own writes of that moment, so a crash keeps both or neither.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .durable_inbox import connect
from .files import in_write_transaction
from .group_commit import InboxUnavailable
from .journal import DONE, SEND_STEPS, JournalWrite, OutboxRow, StepRecord, pseudonymise
from .types import AuditEntry, InboundMessage, hash_chat_id

T = TypeVar("T")
Write = Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]
WriteLater = Callable[[Callable[[sqlite3.Connection], T]], "asyncio.Future[T]"]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS journal (
        message_key TEXT NOT NULL,
        step TEXT NOT NULL,
        tenant TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        state TEXT NOT NULL,
        result TEXT,
        started_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (message_key, step)
    )""",
    "CREATE INDEX IF NOT EXISTS journal_chat ON journal (tenant, chat_id)",
    "CREATE INDEX IF NOT EXISTS journal_updated ON journal (updated_at)",
    """CREATE TABLE IF NOT EXISTS audit_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        chat_id TEXT,
        action TEXT NOT NULL,
        details TEXT NOT NULL,
        message_id TEXT,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    )""",
)
PURGE_BATCH = 1000


def ensure_schema(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        conn.execute(statement)


class SqliteJournalStore:
    """Journals and outbox rows next to the inbox rows they belong to.

    ``path`` (the inbox's file) serves once the inbox is closed: the audit outbox's last
    shipment at shutdown still reads and deletes its rows there.
    """

    def __init__(self, write: Write[Any], path: Path | None = None,
                 write_later: WriteLater[Any] | None = None) -> None:
        self._write = write
        self._write_later = write_later
        self._path = path
        self._ready = False

    def _with_schema(self, fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
        if self._ready:
            return fn

        def with_schema(conn: sqlite3.Connection) -> T:
            ensure_schema(conn)
            return fn(conn)

        return with_schema

    def _schema_committed(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._ready = True

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            result: T = await self._write(self._with_schema(fn))
        except InboxUnavailable:
            if self._path is None or not self._path.exists():
                raise
            result = await asyncio.to_thread(self._direct, self._with_schema(fn))
        self._ready = True
        return result

    def _direct(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = connect(self._path)  # type: ignore[arg-type]  # checked by _run
        try:
            return in_write_transaction(conn, fn)
        finally:
            conn.close()

    async def load(self, message_key: str) -> dict[str, StepRecord]:
        def read(conn: sqlite3.Connection) -> dict[str, StepRecord]:
            rows = conn.execute(
                "SELECT step, state, result, started_at FROM journal WHERE message_key = ?",
                (message_key,),
            ).fetchall()
            return {
                row[0]: StepRecord(row[1], json.loads(row[2]) if row[2] else None, row[3])
                for row in rows
            }

        return await self._run(read)

    async def record(
        self, message: InboundMessage, step: str | None, state: str,
        result: dict[str, Any] | None, audits: Sequence[AuditEntry],
    ) -> float:
        return (await self.record_batch(message, [JournalWrite(step, state, result, audits)]))[0]

    async def record_batch(self, message: InboundMessage, writes: Sequence[JournalWrite]) -> list[float]:
        return await self._run(_statements(message, writes))

    def record_later(self, message: InboundMessage,
                     writes: Sequence[JournalWrite]) -> Awaitable[list[float]]:
        statements = _statements(message, writes)
        if self._write_later is not None:
            try:
                # Queued now, in order with what this message writes next.
                queued = self._write_later(self._with_schema(statements))
            except InboxUnavailable:
                pass
            else:
                if not self._ready:
                    queued.add_done_callback(self._schema_committed)
                return queued
        return asyncio.ensure_future(self._run(statements))

    async def clear(self, message_key: str, step: str) -> None:
        await self._run(lambda conn: conn.execute(
            "DELETE FROM journal WHERE message_key = ? AND step = ? AND state != ?",
            (message_key, step, DONE)))

    async def sent_ids(self, tenant: str, chat_id: str, since: float) -> set[str]:
        def read(conn: sqlite3.Connection) -> set[str]:
            rows = conn.execute(
                "SELECT step, result FROM journal WHERE tenant = ? AND chat_id = ? AND state = ? "
                "AND updated_at >= ?", (tenant, chat_id, DONE, since)).fetchall()
            ids: set[str] = set()
            for step, result in rows:
                if step.startswith(SEND_STEPS) and result:
                    sent = json.loads(result).get("message_id")
                    if sent:
                        ids.add(str(sent))
            return ids

        return await self._run(read)

    async def outbox(self, limit: int, skip: Sequence[str] = ()) -> list[OutboxRow]:
        skipped = list(skip)
        exclude = f"WHERE tenant NOT IN ({', '.join('?' for _ in skipped)}) " if skipped else ""

        def read(conn: sqlite3.Connection) -> list[OutboxRow]:
            rows = conn.execute(
                "SELECT seq, id, tenant, action, details, message_id, created_at, attempts "
                f"FROM audit_outbox {exclude}ORDER BY seq LIMIT ?", (*skipped, limit),
            ).fetchall()
            return [
                OutboxRow(row[0], row[2], AuditEntry(
                    action=row[3], details=json.loads(row[4]), message_id=row[5],
                    created_at=row[6], id=row[1]), row[7])
                for row in rows
            ]

        return await self._run(read)

    async def shipped(self, seqs: Sequence[int]) -> None:
        params = [(seq,) for seq in seqs]
        await self._run(lambda conn: conn.executemany("DELETE FROM audit_outbox WHERE seq = ?", params))

    async def ship_failed(self, seqs: Sequence[int], error: str) -> None:
        params = [(error[:500], seq) for seq in seqs]
        await self._run(lambda conn: conn.executemany(
            "UPDATE audit_outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?", params))

    async def outbox_size(self) -> int:
        return int(await self._run(
            lambda conn: conn.execute("SELECT COUNT(*) FROM audit_outbox").fetchone()[0]))

    async def forget(self, tenant: str, chat_id: str) -> int:
        return await self._run(lambda conn: forget_contact(conn, tenant, chat_id))

    async def purge(self, before: float) -> int:
        # One batch per commit: the inbox's other writes are not held up behind a big purge.
        removed = 0
        while batch := await self._run(lambda conn: purge_batch(conn, before)):
            removed += batch
        return removed


_UPSERT_STEP = (
    "INSERT INTO journal (message_key, step, tenant, chat_id, state, result, "
    "started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (message_key, step) DO UPDATE SET state = excluded.state, "
    "result = excluded.result, updated_at = excluded.updated_at, "
    # A new attempt of a send restarts its clock; a finished step keeps it.
    "started_at = CASE WHEN excluded.state = 'started' THEN excluded.started_at "
    "ELSE journal.started_at END "
    "RETURNING started_at"
)
# An audit row already written (same id) is not written twice.
_INSERT_AUDIT = (
    "INSERT INTO audit_outbox (id, tenant, chat_id, action, details, message_id, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)


def _statements(message: InboundMessage,
                writes: Sequence[JournalWrite]) -> Callable[[sqlite3.Connection], list[float]]:
    """One function writing ``writes`` in order (their JSON encoded now, off the commit)."""
    now = time.time()
    steps = [
        (w.step, (message.dedupe_key, w.step, message.tenant, message.chat_id, w.state,
                  json.dumps(w.result, ensure_ascii=False, default=str) if w.result is not None else None,
                  now, now))
        for w in writes
    ]
    outbox = [
        (entry.id, message.tenant, message.chat_id, entry.action,
         json.dumps(entry.details, ensure_ascii=False, default=str), entry.message_id,
         entry.created_at)
        for w in writes for entry in w.audits
    ]

    def write(conn: sqlite3.Connection) -> list[float]:
        started = [float(conn.execute(_UPSERT_STEP, params).fetchone()[0]) if step is not None else now
                   for step, params in steps]
        if outbox:
            conn.executemany(_INSERT_AUDIT, outbox)
        return started

    return write


def forget_contact(conn: sqlite3.Connection, tenant: str, chat_id: str) -> int:
    """Erase ``chat_id`` of ``tenant`` from journals, unshipped audit details and the inbox.

    Inbox rows stay (the counts and states are the operator's record) but lose the
    contact: the payload keeps only ids and kind, the chat id becomes its hash. A message
    still waiting is not processed any more (it would rebuild what was just erased).
    """
    ensure_schema(conn)
    removed = conn.execute(
        "DELETE FROM journal WHERE tenant = ? AND chat_id = ?", (tenant, chat_id)).rowcount
    for seq, details in conn.execute(
        "SELECT seq, details FROM audit_outbox WHERE tenant = ? AND chat_id = ?", (tenant, chat_id)
    ).fetchall():
        cleaned = pseudonymise(json.loads(details), chat_id)
        conn.execute("UPDATE audit_outbox SET details = ?, chat_id = NULL WHERE seq = ?",
                     (json.dumps(cleaned, ensure_ascii=False), seq))
    hashed = hash_chat_id(chat_id)
    rows = conn.execute(
        "SELECT id, dedupe_key, payload, state FROM inbox WHERE tenant = ? AND chat_id = ?",
        (tenant, chat_id),
    ).fetchall()
    for row_id, dedupe_key, payload, state in rows:
        try:
            data = json.loads(payload)
        except (json.JSONDecodeError, TypeError):
            data = {}
        data = data if isinstance(data, dict) else {}
        erased = {
            "tenant": tenant, "channel": data.get("channel", ""), "chat_id": hashed,
            "message_id": data.get("message_id", ""), "kind": data.get("kind", "text"),
            "received_at": data.get("received_at", 0.0),
        }
        conn.execute(
            "UPDATE inbox SET dedupe_key = ?, chat_id = ?, payload = ?, state = ?, last_error = ? "
            "WHERE id = ?",
            ("forgotten:" + hash_chat_id(dedupe_key), hashed, json.dumps(erased),
             "dead" if state == "pending" else state,
             "contact forgotten" if state == "pending" else None, row_id),
        )
        removed += 1
    return removed


def purge_batch(conn: sqlite3.Connection, before: float) -> int:
    """Up to PURGE_BATCH journal steps and done inbox rows last touched before ``before``.

    Journals of messages still pending or dead are kept: a retry needs them to repeat
    nothing.
    """
    ensure_schema(conn)
    removed = conn.execute(
        "DELETE FROM journal WHERE rowid IN (SELECT rowid FROM journal WHERE updated_at < ? "
        "AND message_key NOT IN (SELECT dedupe_key FROM inbox WHERE state != 'done') LIMIT ?)",
        (before, PURGE_BATCH),
    ).rowcount
    removed += conn.execute(
        "DELETE FROM inbox WHERE id IN (SELECT id FROM inbox WHERE state = 'done' "
        "AND updated_at < ? LIMIT ?)",
        (before, PURGE_BATCH),
    ).rowcount
    return int(removed)
