"""The migrations on real PostgreSQL: RLS as PostgREST exercises it (SET LOCAL ROLE +
request.jwt.claims), append-only audit, idempotent re-runs, indexes led by tenant_id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from maxcore.testing.postgres import PostgresCluster, apply_sql_files, prepare_supabase_database

from .conftest import MIGRATIONS, TABLES

pytestmark = pytest.mark.slow  # a real PostgreSQL server

psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def db(supabase_db: str, emulator: object) -> Iterator[object]:
    """A superuser connection on the migrated database, tables emptied by ``emulator``."""
    with psycopg.connect(supabase_db, autocommit=True) as conn:
        for tenant in ("a", "b"):
            conn.execute(
                "INSERT INTO tenant_memory (tenant_id, chat_id, key, value) VALUES (%s, 'c', 'k', '1')",
                (tenant,))
            conn.execute("INSERT INTO max_logs (tenant_id, action) VALUES (%s, 'lead_created')", (tenant,))
        yield conn


def as_role(conn: object, role: str, claims: dict[str, object] | None) -> None:
    """What PostgREST does at the start of each request's transaction."""
    conn.execute("SELECT set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                 (role, json.dumps(claims) if claims is not None else ""))


TENANT_A = {"role": "authenticated", "app_metadata": {"tenant_id": "a"}}


def test_authenticated_sees_only_its_tenant(db: object) -> None:
    for table in ("tenant_memory", "max_logs"):
        with db.transaction():
            as_role(db, "authenticated", TENANT_A)
            rows = db.execute(f"SELECT tenant_id FROM {table}").fetchall()
        assert rows == [("a",)], table


def test_inserting_another_tenants_row_is_refused(db: object) -> None:
    for table, values in (("tenant_memory", "('b', 'c', 'new', '1')"),
                          ("max_logs (tenant_id, action)", "('b', 'x')")):
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught, db.transaction():
            as_role(db, "authenticated", TENANT_A)
            db.execute(f"INSERT INTO {table} VALUES {values}")
        assert caught.value.sqlstate == "42501"
        assert "row-level security" in str(caught.value)


def test_cross_tenant_update_and_delete_touch_nothing(db: object) -> None:
    with db.transaction():
        as_role(db, "authenticated", TENANT_A)
        assert db.execute("UPDATE tenant_memory SET value = '2' WHERE tenant_id = 'b'").rowcount == 0
        assert db.execute("DELETE FROM tenant_memory WHERE tenant_id = 'b'").rowcount == 0
    # ... and moving one's own row to another tenant is refused by WITH CHECK.
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.transaction():
        as_role(db, "authenticated", TENANT_A)
        db.execute("UPDATE tenant_memory SET tenant_id = 'b' WHERE tenant_id = 'a'")
    assert db.execute("SELECT count(*) FROM tenant_memory WHERE tenant_id = 'b'").fetchone() == (1,)


@pytest.mark.parametrize("claims", [None, {"role": "authenticated"},
                                    {"role": "authenticated", "user_metadata": {"tenant_id": "a"}}])
def test_no_tenant_claim_sees_nothing(db: object, claims: dict[str, object] | None) -> None:
    # user_metadata is editable by users: it must never grant a tenant.
    with db.transaction():
        as_role(db, "authenticated", claims)
        assert db.execute("SELECT count(*) FROM tenant_memory").fetchone() == (0,)


def test_anon_has_no_access(db: object) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.transaction():
        as_role(db, "anon", {"role": "anon", "app_metadata": {"tenant_id": "a"}})
        db.execute("SELECT * FROM tenant_memory")


@pytest.mark.parametrize("role", ["authenticated", "service_role"])
@pytest.mark.parametrize("statement", ["UPDATE max_logs SET action = 'x'", "DELETE FROM max_logs",
                                       "TRUNCATE max_logs"])
def test_max_logs_is_append_only(db: object, role: str, statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught, db.transaction():
        as_role(db, role, {**TENANT_A, "role": role})
        db.execute(statement)
    assert "permission denied" in str(caught.value)


def test_service_role_bypasses_rls(db: object) -> None:
    # Which is why the plugin filters by tenant itself in service-key mode.
    with db.transaction():
        as_role(db, "service_role", {"role": "service_role"})
        assert db.execute("SELECT count(*) FROM tenant_memory").fetchone() == (2,)


def test_rls_enabled_forced_and_policies_evaluate_claim_once(db: object) -> None:
    flags = dict(((name, (enabled, forced)) for name, enabled, forced in db.execute(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'").fetchall()))
    for table in TABLES:
        assert flags[table] == (True, True), table
    policies = db.execute("SELECT tablename, roles, qual, with_check FROM pg_policies "
                          "WHERE schemaname = 'public'").fetchall()
    assert {p[0] for p in policies} == set(TABLES)
    for table, roles, qual, check in policies:
        assert roles == ["authenticated"], table
        for expression in filter(None, (qual, check)):
            # The (select auth.jwt() ...) wrapper: an InitPlan, once per statement.
            assert "( SELECT ((auth.jwt() -> 'app_metadata'::text) ->> 'tenant_id'" in expression, table
    with db.transaction():
        as_role(db, "authenticated", TENANT_A)
        plan = "\n".join(r[0] for r in db.execute("EXPLAIN SELECT * FROM tenant_memory").fetchall())
    assert "InitPlan" in plan, plan


def test_every_index_is_led_by_tenant_id(db: object) -> None:
    rows = db.execute(
        "SELECT c.relname, i.relname, a.attname FROM pg_index x "
        "JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0] "
        "WHERE c.relnamespace = 'public'::regnamespace").fetchall()
    led = {(table, index): column for table, index, column in rows}
    assert {table for table, _ in led} == set(TABLES)
    for (table, index), column in led.items():
        if index != "max_logs_pkey":  # the client-generated uuid makes retried inserts no-ops
            assert column == "tenant_id", (table, index)


def test_migrations_apply_twice_on_a_fresh_database(postgres_cluster: PostgresCluster) -> None:
    dsn = prepare_supabase_database(postgres_cluster, "migrations_twice", MIGRATIONS)
    apply_sql_files(dsn, sorted(Path(MIGRATIONS).glob("*.sql")))
    with psycopg.connect(dsn) as conn:
        count = conn.execute("SELECT count(*) FROM pg_policies WHERE schemaname = 'public'").fetchone()
    assert count == (5,)
