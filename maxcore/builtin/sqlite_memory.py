"""The embedded memory store: history, facts and the audit log in SQLite."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import attrs

from ..types import AuditEntry, ChatTurn, hash_chat_id
from .sqlite_db import SqliteConnector

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL, chat_id TEXT NOT NULL,
    role TEXT NOT NULL, content TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_tenant_chat ON sessions (tenant_id, chat_id, id);
CREATE TABLE IF NOT EXISTS tenant_memory (
    tenant_id TEXT NOT NULL, chat_id TEXT NOT NULL, key TEXT NOT NULL,
    value TEXT NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, chat_id, key)
);
CREATE TABLE IF NOT EXISTS max_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL, action TEXT NOT NULL, details TEXT NOT NULL,
    message_id TEXT, created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS max_logs_tenant_time ON max_logs (tenant_id, created_at);
"""
# max_logs.entry_id (the audit row's own id, so a re-shipped batch is a no-op) came after
# the first release: added to databases created before it.
ENTRY_ID_COLUMN = "ALTER TABLE max_logs ADD COLUMN entry_id TEXT"
ENTRY_ID_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS max_logs_entry_id ON max_logs (entry_id)"



@attrs.frozen
class SqliteMemoryConfig:
    path: str | None = None


class SqliteMemory(SqliteConnector):
    """Memory in ``<data_dir>/memory.sqlite3`` (or ``path``), every row tagged with the tenant."""

    name = "sqlite"
    Config = SqliteMemoryConfig

    default_file = "memory.sqlite3"
    schema = SCHEMA

    async def open(self) -> None:
        await super().open()

        def migrate(conn: sqlite3.Connection) -> None:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(max_logs)")}
            if "entry_id" not in columns:
                conn.execute(ENTRY_ID_COLUMN)
            conn.execute(ENTRY_ID_INDEX)

        await self.db.transaction(migrate)

    async def history(self, chat_id: str, limit: int) -> list[ChatTurn]:
        if limit <= 0:
            return []
        rows = self.db.read(  # bounded, on the (tenant, chat, id) index
            "SELECT role, content FROM sessions WHERE tenant_id = ? AND chat_id = ? "
            "ORDER BY id DESC LIMIT ?",
            (self.tenant, chat_id, limit),
        )
        return [ChatTurn(role=row["role"], content=row["content"]) for row in reversed(rows)]

    async def append_history(self, chat_id: str, turns: Sequence[ChatTurn]) -> None:
        now = time.time()
        rows = [
            (self.tenant, chat_id, str(turn.role), turn.content or "", now)
            for turn in turns
            if turn.content
        ]

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO sessions (tenant_id, chat_id, role, content, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )

        await self.db.write(work)

    async def facts(self, chat_id: str) -> dict[str, Any]:
        rows = self.db.read(  # one chat's facts, on the primary key
            "SELECT key, value FROM tenant_memory WHERE tenant_id = ? AND chat_id = ? ORDER BY key",
            (self.tenant, chat_id),
        )
        return {row["key"]: json.loads(row["value"]) for row in rows}

    async def remember(self, chat_id: str, key: str, value: Any) -> None:
        await self.db.write(lambda conn: conn.execute(
            "INSERT INTO tenant_memory (tenant_id, chat_id, key, value, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, chat_id, key) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (self.tenant, chat_id, key, json.dumps(value), time.time()),
        ))

    async def audit_batch(self, entries: Sequence[AuditEntry]) -> None:
        rows = [
            (self.tenant, entry.action, json.dumps(entry.details, default=str), entry.message_id,
             entry.created_at, entry.id)
            for entry in entries
        ]

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO max_logs (tenant_id, action, details, message_id, created_at, entry_id) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (entry_id) DO NOTHING",
                rows,
            )

        await self.db.write(work)

    async def audit_log(
        self, *, since: float | None = None, action: str | None = None, limit: int = 1000
    ) -> list[AuditEntry]:
        clauses: list[str] = ["tenant_id = ?"]
        params: list[Any] = [self.tenant]
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(since)
        if action is not None:
            clauses.append("action = ?")
            params.append(action)
        rows = await self.db.fetchall(
            f"SELECT * FROM max_logs WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?",
            (*params, limit),
        )
        return [
            AuditEntry(
                action=row["action"], details=json.loads(row["details"]),
                message_id=row["message_id"], created_at=row["created_at"],
            )
            for row in rows
        ]

    async def purge_history(self, before: float) -> int:
        return await self.db.execute(
            "DELETE FROM sessions WHERE tenant_id = ? AND created_at < ?", (self.tenant, before))

    async def forget(self, chat_id: str) -> int:
        tenant = self.tenant

        def work(conn: sqlite3.Connection) -> int:
            removed = conn.execute(
                "DELETE FROM sessions WHERE tenant_id = ? AND chat_id = ?", (tenant, chat_id)
            ).rowcount
            removed += conn.execute(
                "DELETE FROM tenant_memory WHERE tenant_id = ? AND chat_id = ?", (tenant, chat_id)
            ).rowcount
            # The audit log stays (it is the record of what was done) but no longer names
            # the contact: its chat id becomes a hash, as the Supabase store writes it.
            conn.execute(
                "UPDATE max_logs SET details = json_set(json_remove(details, '$.chat_id'), "
                "'$.chat_hash', ?) WHERE tenant_id = ? AND json_extract(details, '$.chat_id') = ?",
                (hash_chat_id(chat_id), tenant, chat_id),
            )
            return removed

        return await self.db.transaction(work)

    async def export(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for table in ("tenant_memory", "sessions", "max_logs"):
            rows = await self.db.fetchall(
                f"SELECT * FROM {table} WHERE tenant_id = ?", (self.tenant,)
            )
            out.extend({"table": table, **dict(row)} for row in rows)
        return out
