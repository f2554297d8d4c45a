"""One PostgreSQL cluster per session, a Supabase-shaped database, two emulators.

``emulator`` (service-key mode) runs with the tenant guard on: any service-role request
without ``tenant_id=eq.`` fails. Each test starts from empty tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from maxcore.testing import context_for
from maxcore.testing.postgres import PostgresCluster, postgres_cluster, prepare_supabase_database
from maxcore.testing.postgrest_emulator import PostgrestEmulator

__all__ = ["postgres_cluster"]  # the session fixture, re-exported for pytest

MIGRATIONS = Path(__file__).resolve().parents[3] / "deploy" / "supabase" / "migrations"
JWT_SECRET = "test-jwt-secret-with-at-least-32-characters"
TABLES = ("tenant_memory", "sessions", "max_logs", "processed_messages")


@pytest.fixture(scope="session")
def supabase_db(postgres_cluster: PostgresCluster) -> str:
    """Superuser DSN of a database with the bootstrap (roles, auth) and the migrations."""
    return prepare_supabase_database(postgres_cluster, "maxcore_memory", MIGRATIONS)


@pytest.fixture(scope="session")
def session_emulator(postgres_cluster: PostgresCluster, supabase_db: str) -> Iterator[PostgrestEmulator]:
    emulator = PostgrestEmulator(postgres_cluster.dsn("maxcore_memory", "authenticator"), JWT_SECRET,
                                 require_filter="tenant_id")
    with emulator.serve():
        yield emulator


@pytest.fixture
def emulator(session_emulator: PostgrestEmulator, supabase_db: str) -> PostgrestEmulator:
    """The shared emulator with empty tables, no pending faults and an empty request log."""
    import psycopg

    with psycopg.connect(supabase_db, autocommit=True) as conn:
        conn.execute("TRUNCATE " + ", ".join(f"public.{t}" for t in TABLES))
    session_emulator.reset()
    return session_emulator


@pytest.fixture
def memory_factory(emulator: PostgrestEmulator, tmp_path: Path) -> Callable[..., object]:
    """``memory_factory(tenant, jwt=False, **config)`` → an unopened SupabaseMemory."""
    from maxcore_supabase import SupabaseMemory, SupabaseMemoryConfig

    def make(tenant: str, jwt: bool = False, **overrides: object) -> SupabaseMemory:
        values: dict[str, object] = {
            "url": emulator.url,
            "key": emulator.anon_key if jwt else emulator.service_key,
            "jwt_secret": JWT_SECRET if jwt else None,
            "timeout_s": 5.0,
        }
        values.update(overrides)
        return SupabaseMemory(SupabaseMemoryConfig(**values), context_for(tenant, tmp_path))

    return make
