"""health(): key and JWT accepted, the migration applied, every table readable — else the fix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from maxcore_supabase import SupabaseMemory, SupabaseMemoryConfig

from maxcore.testing import context_for
from maxcore.testing.postgres import PostgresCluster, apply_sql_files, prepare_supabase_database
from maxcore.testing.postgrest_emulator import PostgrestEmulator
from maxcore.testing.server import free_port
from maxcore.types import Health

from .conftest import JWT_SECRET, MIGRATIONS

PLUGIN_TABLES = ("tenant_memory", "sessions", "max_logs")

APPLY = "fix: apply deploy/supabase/migrations"


async def health_of(memory: SupabaseMemory) -> Health:
    await memory.open()
    try:
        return await memory.health()
    finally:
        await memory.close()


@pytest.fixture(scope="module")
def bare_database(postgres_cluster: PostgresCluster) -> Iterator[PostgrestEmulator]:
    """A Supabase-shaped database on which the migrations were never applied."""
    prepare_supabase_database(postgres_cluster, "maxcore_no_migrations", None)
    emulator = PostgrestEmulator(postgres_cluster.dsn("maxcore_no_migrations", "authenticator"), JWT_SECRET)
    with emulator.serve():
        yield emulator


def memory_on(emulator: PostgrestEmulator, tmp_path: Path, **overrides: Any) -> SupabaseMemory:
    values: dict[str, Any] = {"url": emulator.url, "key": emulator.service_key, "timeout_s": 5.0}
    values.update(overrides)
    return SupabaseMemory(SupabaseMemoryConfig(**values), context_for("tenant-a", tmp_path))


@pytest.mark.parametrize("jwt", [False, True], ids=["service-key", "tenant-jwt"])
async def test_migrated_project_is_ok_in_both_modes(
        jwt: bool, emulator: PostgrestEmulator, memory_factory: Callable[..., SupabaseMemory]) -> None:
    health = await health_of(memory_factory("tenant-a", jwt=jwt))
    assert health.status == "ok", health
    assert "schema v2" in health.reason and all(table in health.reason for table in PLUGIN_TABLES)
    assert "RLS enabled and forced" in health.reason
    # Read-only, and every table read was scoped to the tenant.
    assert {r.method for r in emulator.requests} <= {"GET", "POST"}
    for table in PLUGIN_TABLES:
        reads = emulator.table_requests(table)
        assert reads and all(r.param("tenant_id") == "eq.tenant-a" for r in reads)


async def test_migrations_not_applied_is_down_with_the_fix(
        bare_database: PostgrestEmulator, tmp_path: Path) -> None:
    health = await health_of(memory_on(bare_database, tmp_path))
    assert health.status == "down" and "schema check" in health.reason
    assert APPLY in health.reason


async def test_a_missing_table_is_named(
        postgres_cluster: PostgresCluster, tmp_path: Path) -> None:
    dsn = prepare_supabase_database(postgres_cluster, "maxcore_partial", MIGRATIONS)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("drop table public.tenant_memory cascade")
    emulator = PostgrestEmulator(postgres_cluster.dsn("maxcore_partial", "authenticator"), JWT_SECRET)
    with emulator.serve():
        health = await health_of(memory_on(emulator, tmp_path))
    assert health.status == "down" and "read tenant_memory" in health.reason
    assert APPLY in health.reason


async def test_wrong_key_names_the_setting_not_the_value(
        emulator: PostgrestEmulator, memory_factory: Callable[..., SupabaseMemory]) -> None:
    wrong = "eyJ-not-the-project-key-0123456789"
    health = await health_of(memory_factory("tenant-a", key=wrong))
    assert health.status == "down"
    assert "fix: set memory.key to the project's service_role key" in health.reason
    assert wrong not in health.reason


async def test_wrong_jwt_secret_names_it(
        emulator: PostgrestEmulator, memory_factory: Callable[..., SupabaseMemory]) -> None:
    wrong = "another-secret-of-at-least-32-characters!"
    health = await health_of(memory_factory("tenant-a", jwt=True, jwt_secret=wrong))
    assert health.status == "down" and "fix: set memory.jwt_secret" in health.reason
    assert wrong not in health.reason


async def test_unreachable_project_names_the_url(
        emulator: PostgrestEmulator, memory_factory: Callable[..., SupabaseMemory]) -> None:
    health = await health_of(memory_factory("tenant-a", url=f"http://127.0.0.1:{free_port()}"))
    assert health.status == "down" and "fix: check memory.url" in health.reason


def served_database(cluster: PostgresCluster, name: str, migrations: list[Path],
                    *sql: str) -> PostgrestEmulator:
    """A database with only ``migrations`` applied, then ``sql`` run as the superuser."""
    dsn = prepare_supabase_database(cluster, name, None)
    apply_sql_files(dsn, migrations)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in sql:
            conn.execute(statement)  # type: ignore[arg-type] - test constants
    return PostgrestEmulator(cluster.dsn(name, "authenticator"), JWT_SECRET)


@pytest.mark.parametrize(("statement", "problem"), [
    ("alter table public.sessions disable row level security", "sessions: RLS disabled"),
    ("alter table public.max_logs no force row level security", "max_logs: RLS not forced"),
    ("drop policy tenant_isolation on public.tenant_memory", "tenant_memory: no policy"),
])
async def test_row_level_security_gaps_are_down_and_named(
        statement: str, problem: str, postgres_cluster: PostgresCluster, tmp_path: Path) -> None:
    name = "rls_" + problem.split(":")[0]
    emulator = served_database(postgres_cluster, name, sorted(MIGRATIONS.glob("*.sql")), statement)
    with emulator.serve():
        health = await health_of(memory_on(emulator, tmp_path))
    assert health.status == "down" and problem in health.reason, health
    assert "fix: re-apply deploy/supabase/migrations" in health.reason


async def test_without_the_rls_status_function_rls_is_unverified(
        postgres_cluster: PostgresCluster, tmp_path: Path) -> None:
    first = sorted(MIGRATIONS.glob("*.sql"))[:1]
    emulator = served_database(postgres_cluster, "rls_unverifiable", first)
    with emulator.serve():
        health = await health_of(memory_on(emulator, tmp_path))
    assert health.status == "degraded" and "RLS cannot be verified" in health.reason
    assert APPLY in health.reason
