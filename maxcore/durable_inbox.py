"""The durable inbox: accepted messages in SQLite (WAL), committed before the 2xx.

``submit`` returns only once the message's row is committed, so a message the provider
saw acknowledged survives a crash. Commits are grouped: every submit made while a batch
is committed and handed out joins the next one, so one fsync covers many under load.
The unique ``dedupe_key`` (channel, tenant, chat, provider message id) turns a
redelivery into a no-op. On start every ``pending`` row is resumed, oldest first.

States: ``pending`` (waiting or being handled), ``done``, ``dead`` (attempts exhausted
or a permanent error; ``maxcore inbox retry`` puts it back to ``pending``).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

from .config.models import InboxConfig
from .files import connect_private
from .group_commit import BUSY_TIMEOUT_MS, GroupCommitter, InboxUnavailable
from .inbox import Entry
from .scheduler import WorkScheduler
from .types import InboundMessage, Media, MessageKind
from .webhooks import clean_text

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    channel TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    -- 1 while an attempt runs: still 1 at start-up means the process died during it.
    running INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    retry_requested INTEGER NOT NULL DEFAULT 0,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_state ON inbox (state, id);
CREATE INDEX IF NOT EXISTS inbox_tenant_state ON inbox (tenant, state);
"""

STATES = ("pending", "done", "dead")
MAX_ERROR_CHARS = 4000

_INSERT = (
    "INSERT INTO inbox (dedupe_key, tenant, channel, chat_id, message_id, payload, state, "
    "last_error, received_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (dedupe_key) DO NOTHING"
)


def _row(message: InboundMessage, state: str, error: str | None) -> tuple[Any, ...]:
    now = time.time()
    return (
        clean_text(message.dedupe_key), message.tenant, message.channel,
        clean_text(message.chat_id), clean_text(message.message_id), encode_message(message),
        state, _error_text(error), now, now,
    )


def _error_text(error: str | None) -> str | None:
    return None if error is None else clean_text(error[:MAX_ERROR_CHARS])


_MESSAGE_FIELDS = tuple(field.name for field in attrs.fields(InboundMessage) if field.name != "media")


def encode_message(message: InboundMessage) -> str:
    """The inbox row's JSON (what ``attrs.asdict`` gives, built flat: this runs before
    every webhook's 2xx, and asdict's generic walk was 15 % of the handler)."""
    data: dict[str, Any] = {name: getattr(message, name) for name in _MESSAGE_FIELDS}
    media = message.media
    data["media"] = None if media is None else {
        "url": media.url, "mime_type": media.mime_type, "file_name": media.file_name}
    # clean_text: whatever the channel let through, what SQLite gets is valid UTF-8.
    return clean_text(json.dumps(data, ensure_ascii=False, default=str))


def decode_message(payload: str) -> InboundMessage:
    data = json.loads(payload)
    media = data.pop("media", None)
    kind = data.get("kind")
    if kind not in MessageKind.__members__.values():
        # Recorded before kinds were the core's (a provider's name): kept, as unknown.
        data["kind"] = MessageKind.UNKNOWN
        data["metadata"] = {**(data.get("metadata") or {}), "provider_kind": kind}
    return InboundMessage(**data, media=Media(**media) if media else None)




def connect(path: Path, synchronous: str = "full") -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) on the WAL database."""
    conn = connect_private(path, check_same_thread=False, isolation_level=None,
                           timeout=BUSY_TIMEOUT_MS / 1000)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # Two processes (`--role web` and `--role worker`) may create the file at once:
    # switching it to WAL takes an exclusive lock that SQLite refuses at once, without
    # waiting on the busy timeout, when the other connection holds it. Try again.
    _when_unlocked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
    _when_unlocked(lambda: conn.executescript(SCHEMA))
    columns = {row["name"] for row in conn.execute("PRAGMA table_info(inbox)")}
    for column in ("running", "crashes"):  # inbox files written before these columns existed
        if column not in columns:
            conn.execute(f"ALTER TABLE inbox ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    return conn


def _when_unlocked(statement: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def inbox_path(config: InboxConfig, data_dir: Path | str) -> Path:
    path = Path(config.path).expanduser()
    return path if path.is_absolute() else Path(data_dir) / path


# How often a worker-role process looks for rows another process (the web role) committed.
FOLLOW_INTERVAL_S = 0.05


class SqliteInbox(WorkScheduler):
    """``inbox: {type: sqlite}`` — the default.

    ``role`` splits the work between processes on the same file (``maxcore serve
    --role``): ``web`` commits messages and leaves them to others (no workers);
    ``worker`` processes what any process committed, found by a cheap read of new
    ``pending`` rows every FOLLOW_INTERVAL_S; ``all`` (the default) does both.
    """

    kind = "sqlite"
    durable = True

    def __init__(self, config: InboxConfig, data_dir: Path | str, role: str = "all") -> None:
        super().__init__(config)
        self.path = inbox_path(config, data_dir)
        self.role = role
        self._conn: sqlite3.Connection | None = None
        self._writer: GroupCommitter | None = None
        self._submitting: dict[str, asyncio.Future[bool]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        self._seen_id = 0  # the highest row id this process has queued

    def _accept(self, entry: Entry) -> None:
        if self.role != "web":
            self._seen_id = max(self._seen_id, entry.id)
            super()._accept(entry)
            return
        message = entry.message
        logger.bind(tenant=message.tenant, message_id=message.message_id).info(
            "[PIPELINE] message accepted from chat {} (inbox #{}; a worker process takes it)",
            message.chat_id, entry.id,
        )

    async def start(self, handler: Any, rate_limit: Any = None) -> None:
        if self.role == "web":
            self._open()  # intake only: no recovery, no workers (the worker role runs them)
            return
        await super().start(handler, rate_limit)
        if self.role == "worker":
            self._follower = asyncio.create_task(self._follow(), name="inbox-follower")

    async def _follow(self) -> None:
        """Queue the rows other processes commit (in id order, as they were accepted)."""
        reader = connect(self.path, self.config.synchronous)
        try:
            while not self._stopping:
                await asyncio.sleep(FOLLOW_INTERVAL_S)
                try:
                    # WAL: a read never waits on the other process's writes; on the
                    # (state, id) index, so it costs the same with a large inbox.
                    rows = reader.execute(
                        "SELECT id, payload, attempts, received_at FROM inbox "
                        "WHERE state = 'pending' AND id > ? ORDER BY id LIMIT 1000",
                        (self._seen_id,),
                    ).fetchall()
                    for entry in await self._entries(rows):
                        self._seen_id = max(self._seen_id, entry.id)
                        self._enqueue(entry)  # the web process logged its acceptance
                except Exception as exc:  # noqa: BLE001 - the follower keeps following
                    logger.warning("[INBOX] reading new messages failed: {}", exc)
        finally:
            reader.close()

    # -- lifecycle -------------------------------------------------------------------
    def _open(self) -> GroupCommitter:
        if self._writer is None:
            self._conn = connect(self.path, self.config.synchronous)
            self._writer = GroupCommitter(self._conn)
            self._writer.start()
        return self._writer

    async def _recover(self) -> list[Entry]:
        writer = self._open()

        limit = self.config.max_crashes

        def load(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            # An attempt still marked running died with the process. A message during
            # which the server died `max_crashes` times is not tried again: it goes dead
            # rather than take every tenant down with it at each restart.
            now = time.time()
            conn.execute("UPDATE inbox SET running = 0, crashes = crashes + 1, updated_at = ? "
                         "WHERE state = 'pending' AND running = 1", (now,))
            crashed = conn.execute(
                "UPDATE inbox SET state = 'dead', updated_at = ?, last_error = "
                "'the server stopped during ' || crashes || ' of its attempts; "
                "check the log before `maxcore inbox retry`' "
                "WHERE state = 'pending' AND crashes >= ? RETURNING id",
                (now, limit),
            ).fetchall()
            for row in crashed:
                logger.error("[INBOX] message {} dead: the server stopped during {} of its attempts",
                             row["id"], limit)
            rows = conn.execute(
                "SELECT id, payload, attempts, received_at FROM inbox WHERE state = 'pending' "
                "ORDER BY id"
            ).fetchall()
            conn.execute("UPDATE inbox SET retry_requested = 0 WHERE retry_requested = 1")
            return rows

        rows = await writer.write(load)
        self._sweeper = asyncio.create_task(self._sweep(), name="inbox-retry-sweeper")
        entries = await self._entries(rows)
        self._seen_id = max([self._seen_id, *(entry.id for entry in entries)])
        return entries

    async def _entries(self, rows: Sequence[sqlite3.Row]) -> list[Entry]:
        """Entries for stored rows; a row whose payload cannot be read goes dead, alone."""
        entries: list[Entry] = []
        for row in rows:
            try:
                message = decode_message(row["payload"])
            except Exception as exc:  # noqa: BLE001 - an unreadable row must not stop the others
                logger.error("[INBOX] message {} cannot be read back ({}: {}); marked dead",
                             row["id"], type(exc).__name__, exc)
                await self._mark_unreadable(row["id"], f"{type(exc).__name__}: {exc}")
                continue
            entries.append(Entry(row["id"], message, row["attempts"], accepted_at=row["received_at"]))
        return entries

    async def _mark_unreadable(self, row_id: int, reason: str) -> None:
        assert self._writer is not None
        params = (_error_text(f"stored payload unreadable: {reason}"), time.time(), row_id)
        await self._writer.write(lambda conn: conn.execute(
            "UPDATE inbox SET state = 'dead', last_error = ?, updated_at = ? WHERE id = ?", params))

    async def _sweep(self) -> None:
        """Pick up messages that ``maxcore inbox retry`` put back while we run."""
        writer = self._writer
        assert writer is not None

        def take(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            rows = conn.execute(
                "SELECT id, payload, attempts, received_at FROM inbox WHERE state = 'pending' "
                "AND retry_requested = 1 ORDER BY id"
            ).fetchall()
            if rows:
                conn.execute("UPDATE inbox SET retry_requested = 0 WHERE retry_requested = 1")
            return rows

        while not self._stopping:
            await asyncio.sleep(self.config.poll_interval_s)
            try:
                rows = await writer.write(take)
                for entry in await self._entries(rows):
                    logger.info("[INBOX] message {} put back by an operator", entry.id)
                    self._enqueue(entry)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the sweeper keeps sweeping
                logger.warning("[INBOX] retry sweep failed: {}", exc)

    async def _close_store(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- shared commit path (the journal, maxcore.journal_sqlite) ------------------------
    async def write(self, run: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``run(conn)`` in the inbox's next group commit, on the inbox's database."""
        if self._writer is None and self._stopping:
            raise InboxUnavailable("the inbox is closed")
        return await self._open().write(run)

    def write_later(self, run: Callable[[sqlite3.Connection], Any]) -> asyncio.Future[Any]:
        """Queue ``run`` for the next group commit without waiting for it: the inbox's own
        writes queued after it (a message's ``done``) commit in the same batch or a later one."""
        if self._writer is None and self._stopping:
            raise InboxUnavailable("the inbox is closed")
        return self._open().submit(run)

    # -- intake ----------------------------------------------------------------------
    async def submit(self, message: InboundMessage) -> bool:
        self._check_open()
        key = message.dedupe_key
        earlier = self._submitting.get(key)
        if earlier is not None:
            # The same message is being committed by a concurrent request: answer once it is.
            await asyncio.shield(earlier)
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._submitting[key] = future
        try:
            added = await self._store_add(message) is not None
            future.set_result(added)
            return added
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here so an unawaited failure is not reported twice
            raise
        finally:
            del self._submitting[key]

    async def _store_add(self, message: InboundMessage) -> Entry | None:
        writer = self._open()
        row = _row(message, "pending", None)

        def insert(conn: sqlite3.Connection) -> int | None:
            cursor = conn.execute(_INSERT, row)
            return cursor.lastrowid if cursor.rowcount == 1 else None

        entry: list[Entry] = []

        def enqueue(row_id: int | None) -> None:
            # Runs right after COMMIT, in commit order: the queue order is the id order.
            if row_id is not None:
                entry.append(Entry(row_id, message, fresh=True))
                self._accept(entry[0])

        await writer.write(insert, enqueue)
        return entry[0] if entry else None

    async def _store_dead_letter(self, message: InboundMessage, reason: str) -> bool:
        writer = self._open()
        row = _row(message, "dead", reason)

        def insert(conn: sqlite3.Connection) -> bool:
            return conn.execute(_INSERT, row).rowcount == 1

        return bool(await writer.write(insert))

    # -- outcomes --------------------------------------------------------------------
    async def _update(self, entry: Entry, state: str, error: str | None) -> None:
        assert self._writer is not None
        params = (state, entry.attempts, _error_text(error), time.time(), entry.id)
        await self._writer.write(lambda conn: conn.execute(
            "UPDATE inbox SET state = ?, attempts = ?, running = 0, last_error = ?, updated_at = ? "
            "WHERE id = ?",
            params,
        ))

    async def _store_started(self, entry: Entry) -> None:
        assert self._writer is not None
        params = (entry.attempts, time.time(), entry.id)
        await self._writer.write(lambda conn: conn.execute(
            "UPDATE inbox SET attempts = ?, running = 1, updated_at = ? WHERE id = ?", params,
        ))

    async def _store_done(self, entry: Entry) -> None:
        await self._update(entry, "done", None)

    async def _store_failed(self, entry: Entry, error: str) -> None:
        await self._update(entry, "pending", error)

    async def _store_dead(self, entry: Entry, error: str) -> None:
        await self._update(entry, "dead", error)

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        if self._writer is not None:
            stats["commit_batches"] = self._writer.batches
            stats["largest_batch"] = self._writer.largest_batch
        return stats
