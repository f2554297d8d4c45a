"""The embedded connectors pass the same contract tests as external ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from maxcore.builtin.offline_llm import OfflineConfig, OfflineLLM
from maxcore.builtin.sqlite_crm import SqliteCRM, SqliteCRMConfig
from maxcore.builtin.sqlite_memory import SqliteMemory, SqliteMemoryConfig
from maxcore.testing import CRMContract, LLMContract, MemoryContract, context_for


class TestSqliteCRM(CRMContract):
    @pytest.fixture
    def make_crm(self, tmp_path: Path):
        return lambda tenant: SqliteCRM(SqliteCRMConfig(), context_for(tenant, tmp_path))


class TestSqliteMemory(MemoryContract):
    @pytest.fixture
    def make_memory(self, tmp_path: Path):
        return lambda tenant: SqliteMemory(SqliteMemoryConfig(), context_for(tenant, tmp_path))


class TestOfflineLLM(LLMContract):
    @pytest.fixture
    def make_llm(self, tmp_path: Path):
        return lambda tenant: OfflineLLM(OfflineConfig(), context_for(tenant, tmp_path))


async def test_sqlite_forget_pseudonymises_the_audit_log(tmp_path: Path):
    from maxcore import AuditEntry
    from maxcore.builtin.sqlite_memory import hash_chat_id

    memory = SqliteMemory(SqliteMemoryConfig(), context_for("acme", tmp_path))
    await memory.open()
    try:
        await memory.audit_batch([
            AuditEntry(action="reply_sent", details={"chat_id": "33612345678@c.us"}),
            AuditEntry(action="reply_sent", details={"chat_id": "other@c.us"}),
        ])
        await memory.forget("33612345678@c.us")
        details = [entry.details for entry in await memory.audit_log()]
    finally:
        await memory.close()
    assert details == [{"chat_hash": hash_chat_id("33612345678@c.us")}, {"chat_id": "other@c.us"}]
