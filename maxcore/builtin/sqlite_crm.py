"""The embedded CRM: leads and generic records in SQLite, one tenant column."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..connectors import ConnectorContext, LeadQuery
from ..errors import ToolError
from ..leads import DEFAULT_OPTIONS
from ..types import Lead, Record, UpsertResult
from .sqlite_db import SqliteConnector

SCHEMA = """
CREATE TABLE IF NOT EXISTS leads (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    first_name TEXT, last_name TEXT, phone TEXT, email TEXT, company TEXT,
    industry TEXT, source TEXT, status TEXT, description TEXT,
    custom TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leads_tenant_phone ON leads (tenant_id, phone);
CREATE INDEX IF NOT EXISTS leads_tenant_email ON leads (tenant_id, email);
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    fields TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS records_tenant_entity ON records (tenant_id, entity);
"""

_LEAD_COLUMNS = (
    "first_name", "last_name", "phone", "email", "company", "industry", "source", "status",
    "description",
)


def _row_to_lead(row: sqlite3.Row) -> Lead:
    return Lead(
        id=row["id"],
        custom=json.loads(row["custom"] or "{}"),
        **{column: row[column] for column in _LEAD_COLUMNS},
    )


@attrs.frozen
class SqliteCRMConfig:
    path: str | None = None
    entities: tuple[str, ...] = ("DiagnosticIA", "MissionMAX")


class SqliteCRM(SqliteConnector):
    """Leads in ``<data_dir>/crm.sqlite3`` (or ``path``); browsable with any SQLite tool."""

    name = "sqlite"
    Config = SqliteCRMConfig

    default_file = "crm.sqlite3"
    schema = SCHEMA

    def __init__(self, config: SqliteCRMConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self.entities = tuple(config.entities)

    def options(self) -> Mapping[str, Sequence[str]]:
        return DEFAULT_OPTIONS

    async def upsert_lead(self, lead: Lead) -> UpsertResult:
        tenant = self.tenant

        def work(conn: sqlite3.Connection) -> UpsertResult:
            row = None
            for column, value in (("phone", lead.phone), ("email", lead.email)):
                if value:
                    row = conn.execute(
                        f"SELECT * FROM leads WHERE tenant_id = ? AND {column} = ? "
                        "ORDER BY created_at LIMIT 1",
                        (tenant, value),
                    ).fetchone()
                    if row is not None:
                        break
            now = time.time()
            values = {column: getattr(lead, column) for column in _LEAD_COLUMNS}
            if row is None:
                lead_id = uuid.uuid4().hex[:17]
                conn.execute(
                    "INSERT INTO leads (id, tenant_id, custom, created_at, updated_at, "
                    + ", ".join(_LEAD_COLUMNS) + ") VALUES (?, ?, ?, ?, ?, "
                    + ", ".join("?" for _ in _LEAD_COLUMNS) + ")",
                    (lead_id, tenant, json.dumps(lead.custom), now, now, *values.values()),
                )
                created = True
            else:
                lead_id = row["id"]
                # Only what differs: an upsert that changes nothing (a replay) writes nothing.
                changes = {k: v for k, v in values.items() if v is not None and row[k] != v}
                # A status the user did not state must not reset a lead already in progress.
                if row["status"] and "status" in changes and lead.status == "New":
                    changes.pop("status")
                stored_custom = json.loads(row["custom"] or "{}")
                custom = {**stored_custom, **lead.custom}
                if changes or custom != stored_custom:
                    assignments = ", ".join(f"{k} = ?" for k in changes)
                    conn.execute(
                        f"UPDATE leads SET {assignments + ', ' if assignments else ''}custom = ?, "
                        "updated_at = ? WHERE id = ? AND tenant_id = ?",
                        (*changes.values(), json.dumps(custom), now, lead_id, tenant),
                    )
                created = False
            stored = conn.execute(
                "SELECT * FROM leads WHERE id = ? AND tenant_id = ?", (lead_id, tenant)
            ).fetchone()
            return UpsertResult(lead=_row_to_lead(stored), created=created)

        return await self.db.transaction(work)

    async def search_leads(self, query: LeadQuery) -> list[Lead]:
        clauses, params = ["tenant_id = ?"], [self.tenant]
        if query.phone:
            clauses.append("phone = ?")
            params.append(query.phone)
        if query.email:
            clauses.append("email = ?")
            params.append(query.email.lower())
        if query.status:
            clauses.append("status = ?")
            params.append(query.status)
        if query.text:
            like = f"%{query.text.strip()}%"
            clauses.append(
                "(first_name || ' ' || last_name LIKE ? OR company LIKE ? OR email LIKE ? "
                "OR first_name LIKE ? OR last_name LIKE ?)"
            )
            params.extend([like] * 5)
        rows = await self.db.fetchall(
            f"SELECT * FROM leads WHERE {' AND '.join(clauses)} "
            "ORDER BY created_at DESC LIMIT ?",
            (*params, max(1, min(query.limit, 200))),
        )
        return [_row_to_lead(row) for row in rows]

    async def get_lead(self, lead_id: str) -> Lead | None:
        rows = await self.db.fetchall(
            "SELECT * FROM leads WHERE id = ? AND tenant_id = ?", (lead_id, self.tenant)
        )
        return _row_to_lead(rows[0]) if rows else None

    async def list_leads(self, limit: int = 50, offset: int = 0) -> list[Lead]:
        rows = await self.db.fetchall(
            "SELECT * FROM leads WHERE tenant_id = ? ORDER BY created_at LIMIT ? OFFSET ?",
            (self.tenant, limit, offset),
        )
        return [_row_to_lead(row) for row in rows]

    async def create_record(self, entity: str, fields: Mapping[str, Any]) -> Record:
        if entity not in self.entities:
            raise ToolError(f"entity {entity!r} is not available; allowed: {', '.join(self.entities)}")
        record_id = uuid.uuid4().hex[:17]
        clean = {k: v for k, v in fields.items() if k not in ("tenantId", "tenant_id", "id")}
        await self.db.execute(
            "INSERT INTO records (id, tenant_id, entity, fields, created_at) VALUES (?, ?, ?, ?, ?)",
            (record_id, self.tenant, entity, json.dumps(clean), time.time()),
        )
        return Record(entity=entity, id=record_id, fields=clean)
