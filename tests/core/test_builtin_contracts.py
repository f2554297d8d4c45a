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
