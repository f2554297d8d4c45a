"""The embedded CRM: leads and generic records in SQLite, one tenant column.

It declares a small neutral vocabulary of its own (a status enumeration and a few
free-text fields); a real CRM's vocabulary comes from its own plugin.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from ..connectors import ConnectorContext, CRMBase, LeadQuery
from ..errors import ToolError
from ..leads import with_defaults
from ..types import Lead, Record, UpsertResult
from ..vocabulary import Choice, FieldType, LeadField, LeadSchema
from .sqlite_db import SqliteConnector

SCHEMA = """
CREATE TABLE IF NOT EXISTS leads (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    first_name TEXT, last_name TEXT, phone TEXT, email TEXT, company TEXT,
    fields TEXT NOT NULL DEFAULT '{}',
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

_IDENTITY = ("first_name", "last_name", "phone", "email", "company")
# Files written before leads had a ``fields`` column kept these as columns.
_OLD_COLUMNS = {"industry": "industry", "source": "source", "status": "status", "description": "notes"}


def _status(value: str, fr: tuple[str, ...], en: tuple[str, ...] = ()) -> Choice:
    return Choice(value, value, {"fr": fr, "en": en})


LEAD_SCHEMA = LeadSchema((
    LeadField("status", FieldType.ENUM, "Status", "where the lead stands", choices=(
        _status("New", ("nouveau", "nouvelle")),
        _status("Contacted", ("contacte", "contactee", "appele"), ("called",)),
        _status("Qualified", ("qualifie", "qualifiee")),
        _status("Won", ("gagne", "signe", "client"), ("customer", "signed")),
        _status("Lost", ("perdu", "abandonne"), ("dead",)),
    )),
    LeadField("source", label="Source", description="where the lead comes from"),
    LeadField("industry", label="Industry", description="the lead's line of business"),
    LeadField("notes", label="Notes", description="free notes about the need"),
))


def _row_to_lead(row: sqlite3.Row) -> Lead:
    return Lead(id=row["id"], fields=json.loads(row["fields"] or "{}"),
                **{column: row[column] for column in _IDENTITY})


def _synonyms(value: Any) -> dict[str, dict[str, tuple[str, ...]]]:
    return {str(field): {str(option): tuple(words) for option, words in (by_value or {}).items()}
            for field, by_value in (value or {}).items()}


@attrs.frozen
class SqliteCRMConfig:
    """``crm: {type: sqlite, path?, entities?, synonyms?}``.

    ``synonyms`` adds words for the status values: ``{status: {Won: [signé]}}``.
    """

    path: str | None = None
    entities: tuple[str, ...] = ("Note", "Task")
    synonyms: dict[str, dict[str, tuple[str, ...]]] = attrs.field(factory=dict, converter=_synonyms)

    def __attrs_post_init__(self) -> None:
        from ..config.models import FieldValueError

        try:
            LEAD_SCHEMA.with_synonyms(self.synonyms)
        except ValueError as exc:
            raise FieldValueError("synonyms", str(exc)) from None


class SqliteCRM(SqliteConnector, CRMBase):
    """Leads in ``<data_dir>/crm.sqlite3`` (or ``path``); browsable with any SQLite tool."""

    name = "sqlite"
    Config = SqliteCRMConfig

    default_file = "crm.sqlite3"
    schema = SCHEMA

    def __init__(self, config: SqliteCRMConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self.entities = tuple(config.entities)
        self._declared = LEAD_SCHEMA.with_synonyms(config.synonyms)

    def declared_lead_schema(self) -> LeadSchema:
        return self._declared

    async def open(self) -> None:
        await super().open()
        await self.db.run(_migrate)
        self._lead_schema = self._declared

    async def upsert_lead(self, lead: Lead, defaults: Mapping[str, Any] | None = None) -> UpsertResult:
        tenant = self.tenant
        schema = await self.lead_schema()

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
            if row is None:
                # A new lead is New unless the tenant's defaults or the lead say otherwise.
                created = with_defaults(lead, {"status": "New", **(defaults or {})}, schema)
                lead_id = uuid.uuid4().hex[:17]
                now = time.time()
                conn.execute(
                    "INSERT INTO leads (id, tenant_id, fields, created_at, updated_at, "
                    + ", ".join(_IDENTITY) + ") VALUES (?, ?, ?, ?, ?, "
                    + ", ".join("?" for _ in _IDENTITY) + ")",
                    (lead_id, tenant, json.dumps(created.fields), now, now,
                     *(getattr(created, c) for c in _IDENTITY)),
                )
                return UpsertResult(lead=_get(conn, tenant, lead_id), created=True)
            return UpsertResult(lead=_update(conn, tenant, row, lead), created=False)

        return await self.db.write(work)

    async def update_lead(self, lead_id: str, lead: Lead) -> Lead | None:
        tenant = self.tenant

        def work(conn: sqlite3.Connection) -> Lead | None:
            row = conn.execute("SELECT * FROM leads WHERE id = ? AND tenant_id = ?",
                               (lead_id, tenant)).fetchone()
            return None if row is None else _update(conn, tenant, row, lead)

        return await self.db.write(work)

    async def search_leads(self, query: LeadQuery) -> list[Lead]:
        clauses, params = ["tenant_id = ?"], [self.tenant]
        if query.phone:
            clauses.append("phone = ?")
            params.append(query.phone)
        if query.email:
            clauses.append("email = ?")
            params.append(query.email.lower())
        for name, value in query.fields.items():
            if name not in self._declared.names:
                return []  # no lead has a field this CRM does not declare
            clauses.append("json_extract(fields, ?) = ?")
            params.extend([f"$.{name}", value])
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
        rows = self.db.read(  # one row, on the primary key
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
        await self.db.write(lambda conn: conn.execute(
            "INSERT INTO records (id, tenant_id, entity, fields, created_at) VALUES (?, ?, ?, ?, ?)",
            (record_id, self.tenant, entity, json.dumps(clean), time.time()),
        ))
        return Record(entity=entity, id=record_id, fields=clean)


def _get(conn: sqlite3.Connection, tenant: str, lead_id: str) -> Lead:
    row = conn.execute("SELECT * FROM leads WHERE id = ? AND tenant_id = ?", (lead_id, tenant)).fetchone()
    return _row_to_lead(row)


def _update(conn: sqlite3.Connection, tenant: str, row: sqlite3.Row, lead: Lead) -> Lead:
    """Write the values ``lead`` states; the others are kept. Nothing that differs (a
    replayed upsert): nothing is written."""
    changes = {column: getattr(lead, column) for column in _IDENTITY
               if getattr(lead, column) and getattr(lead, column) != row[column]}
    stored = json.loads(row["fields"] or "{}")
    fields = {**stored, **lead.fields}
    if not changes and fields == stored:
        return _get(conn, tenant, row["id"])
    assignments = "".join(f"{column} = ?, " for column in changes)
    conn.execute(
        f"UPDATE leads SET {assignments}fields = ?, updated_at = ? WHERE id = ? AND tenant_id = ?",
        (*changes.values(), json.dumps(fields), time.time(), row["id"], tenant),
    )
    return _get(conn, tenant, row["id"])


def _migrate(conn: sqlite3.Connection) -> None:
    """Files from before the ``fields`` column: move the old columns into it, once."""
    columns = {row["name"] for row in conn.execute("PRAGMA table_info(leads)")}
    if "fields" in columns:
        return
    conn.execute("ALTER TABLE leads ADD COLUMN fields TEXT NOT NULL DEFAULT '{}'")
    old = [column for column in _OLD_COLUMNS if column in columns]
    for row in conn.execute("SELECT * FROM leads").fetchall():
        fields = json.loads(row["custom"] or "{}") if "custom" in columns else {}
        fields.update({_OLD_COLUMNS[c]: row[c] for c in old if row[c]})
        conn.execute("UPDATE leads SET fields = ? WHERE id = ?", (json.dumps(fields), row["id"]))
