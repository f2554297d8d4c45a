"""The supabase memory passes the same contract as the sqlite default, in both modes,
through supabase-py → the PostgREST emulator → real PostgreSQL with the migrations."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from maxcore.testing import MemoryContract


class TestSupabaseMemoryServiceKey(MemoryContract):
    @pytest.fixture
    def make_memory(self, memory_factory: Callable[..., object]) -> Callable[[str], object]:
        return lambda tenant: memory_factory(tenant)


class TestSupabaseMemoryTenantJWT(MemoryContract):
    @pytest.fixture
    def make_memory(self, memory_factory: Callable[..., object]) -> Callable[[str], object]:
        return lambda tenant: memory_factory(tenant, jwt=True)
