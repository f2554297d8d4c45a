"""Registers the embedded SQLite CRM and memory connectors (``type: sqlite``)."""

from __future__ import annotations

from ..hookspecs import hookimpl
from .sqlite_crm import SqliteCRM
from .sqlite_memory import SqliteMemory


@hookimpl
def register_crms() -> list[type]:
    return [SqliteCRM]


@hookimpl
def register_memories() -> list[type]:
    return [SqliteMemory]
