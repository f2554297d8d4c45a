"""``maxcore memory export|forget`` and a whole message through the pipeline, with the
tenant's memory on Supabase (emulator → real PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from maxcore.testing.harness import running, write_config
from maxcore.testing.postgrest_emulator import PostgrestEmulator
from maxcore.types import AuditEntry, ChatTurn, InboundMessage, Role


def tenant_yaml(emulator: PostgrestEmulator, tenant: str, data_dir: Path) -> str:
    return f"""
        tenant: {tenant}
        crm: {{type: sqlite, path: {data_dir / (tenant + "-crm.sqlite3")}}}
        memory: {{type: supabase, url: "{emulator.url}", key: "{emulator.service_key}", timeout_s: 5}}
    """


@pytest.fixture
def cli() -> object:
    from maxcore.cli import cli as group
    from maxcore.cli import plugins

    plugins().hooks.register_commands(group)
    return group


async def test_export_and_forget_from_the_command_line(
        emulator: PostgrestEmulator, memory_factory: object, tmp_path: Path, cli: object) -> None:
    config = write_config(tmp_path / "config", {
        "acme": tenant_yaml(emulator, "acme", tmp_path), "beta": tenant_yaml(emulator, "beta", tmp_path)},
        data_dir=tmp_path / "data")
    for tenant in ("acme", "beta"):
        memory = memory_factory(tenant)
        await memory.open()
        await memory.remember("33612@c.us", "city", "Lyon")
        await memory.append_history("33612@c.us", [ChatTurn(role=Role.USER, content="bonjour")])
        await memory.audit_batch([AuditEntry(action="lead_created", details={"lead_id": "1"})])
        await memory.close()

    runner = CliRunner()
    exported = await _invoke(runner, cli, ["memory", "export", "--tenant", "acme", "--config", str(config)])
    rows = [json.loads(line) for line in exported.splitlines()]
    assert {r["table"] for r in rows} == {"tenant_memory", "sessions", "max_logs"}
    assert {r["tenant_id"] for r in rows} == {"acme"}

    said = await _invoke(runner, cli, ["memory", "forget", "--tenant", "acme", "--chat", "33612@c.us",
                                       "--config", str(config)])
    assert "2 row(s) erased" in said and "33612" not in said
    after = [json.loads(line) for line in (await _invoke(
        runner, cli, ["memory", "export", "--tenant", "acme", "--config", str(config)])).splitlines()]
    assert {r["table"] for r in after} == {"max_logs"}
    forgotten = [r for r in after if r["action"] == "contact_forgotten"]
    assert forgotten and forgotten[0]["chat_hash"].startswith("sha256:")
    assert "33612" not in json.dumps(after)
    beta = memory_factory("beta")
    await beta.open()
    assert await beta.facts("33612@c.us") == {"city": "Lyon"}  # the other tenant keeps its own
    await beta.close()


async def _invoke(runner: CliRunner, cli: object, args: list[str]) -> str:
    import asyncio

    # The command runs its own event loop (asyncio.run): give it a thread.
    result = await asyncio.to_thread(runner.invoke, cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def test_unknown_tenant_is_a_clear_error(tmp_path: Path, cli: object) -> None:
    config = write_config(tmp_path / "config", {"acme": "tenant: acme\n"}, data_dir=tmp_path / "data")
    result = CliRunner().invoke(cli, ["memory", "export", "--tenant", "nope", "--config", str(config)])
    assert result.exit_code != 0 and "unknown tenant" in result.output


async def test_lead_message_through_the_pipeline_lands_in_supabase(
        emulator: PostgrestEmulator, tmp_path: Path, supabase_db: str) -> None:
    import psycopg

    config = write_config(tmp_path / "config", {"acme": tenant_yaml(emulator, "acme", tmp_path)},
                          data_dir=tmp_path / "data")
    async with running(config) as r:
        await r.runtime.process_now(InboundMessage(
            tenant="acme", channel="webchat", chat_id="c1",
            text="Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, +33 6 12 34 56 78"))
    with psycopg.connect(supabase_db) as conn:
        actions = [a for (a,) in conn.execute(
            "SELECT action FROM max_logs WHERE tenant_id = 'acme' ORDER BY seq").fetchall()]
        history = conn.execute("SELECT history FROM sessions WHERE tenant_id = 'acme'").fetchone()
    assert "lead_created" in actions, actions
    assert history and history[0][0]["content"].startswith("Nouveau lead")
    assert emulator.violations == []
