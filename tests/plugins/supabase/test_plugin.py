"""The supabase memory connector: tenant scoping in both modes, error mapping, secrets,
config validation — driven through its public methods against the emulator."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from loguru import logger
from maxcore_supabase.errors import translate
from postgrest import APIError

from maxcore.errors import PermanentError, RetryableError
from maxcore.testing.postgrest_emulator import PostgrestEmulator
from maxcore.types import AuditEntry, ChatTurn, Role

from .conftest import JWT_SECRET, TABLES


async def exercise(memory: Any) -> None:
    """Every method of the Memory protocol once."""
    await memory.append_history("c1", [ChatTurn(role=Role.USER, content="bonjour")])
    await memory.history("c1", 5)
    await memory.remember("c1", "budget", {"eur": 10})
    await memory.facts("c1")
    await memory.audit_batch([AuditEntry(action="memory_updated", details={"chat_id": "c1"},
                                         message_id="m1")])
    await memory.audit_log(since=time.time() - 60, action="memory_updated")
    await memory.purge_history(time.time() - 86400)
    await memory.export()
    await memory.forget("c1")


async def test_service_key_mode_scopes_every_request(
        emulator: PostgrestEmulator, memory_factory: Callable[..., Any]) -> None:
    memory = memory_factory("tenant-a")
    await memory.open()
    try:
        await exercise(memory)
    finally:
        await memory.close()
    table_requests = [r for r in emulator.requests if r.table in TABLES]
    assert {r.method for r in table_requests} == {"GET", "POST", "DELETE"}
    assert emulator.violations == []
    for request in table_requests:
        assert request.role == "service_role"
        if request.method == "POST":
            assert b'"tenant_id": "tenant-a"' in request.body or b'"tenant_id":"tenant-a"' in request.body
        else:
            assert request.param("tenant_id") == "eq.tenant-a", request


async def test_query_without_tenant_filter_is_caught(
        emulator: PostgrestEmulator, memory_factory: Callable[..., Any]) -> None:
    """The guard the tests above rely on does fire: a forgotten filter fails loudly."""
    memory = memory_factory("tenant-a")
    await memory.open()
    try:
        with pytest.raises(APIError) as caught:
            await memory._api().table("tenant_memory").select("*").execute()
        assert caught.value.code == "MAXTEST"
        with pytest.raises(APIError):
            await memory._api().table("max_logs").insert({"action": "no tenant"}).execute()
    finally:
        await memory.close()
    assert len(emulator.violations) == 2


async def test_tenant_jwt_mode_sends_short_lived_tenant_tokens(
        emulator: PostgrestEmulator, memory_factory: Callable[..., Any]) -> None:
    memory = memory_factory("tenant-a", jwt=True)
    await memory.open()
    try:
        await exercise(memory)
    finally:
        await memory.close()
    table_requests = [r for r in emulator.requests if r.table in TABLES]
    assert table_requests and all(r.role == "authenticated" for r in table_requests)
    token = table_requests[0].headers["authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    assert claims["app_metadata"] == {"tenant_id": "tenant-a"}
    assert 0 < claims["exp"] - time.time() <= 600
    # Defence in depth: the filter is still there even though RLS enforces it.
    assert all(r.param("tenant_id") == "eq.tenant-a" for r in table_requests if r.method != "POST")


async def test_rls_holds_even_if_a_jwt_mode_query_forgets_the_filter(
        emulator: PostgrestEmulator, memory_factory: Callable[..., Any]) -> None:
    a, b = memory_factory("tenant-a", jwt=True), memory_factory("tenant-b", jwt=True)
    for m in (a, b):
        await m.open()
    try:
        await a.remember("c", "k", "A's secret")
        await b.remember("c", "k", "B's")
        unfiltered = await b._api().table("tenant_memory").select("tenant_id,value").execute()
        assert unfiltered.data == [{"tenant_id": "tenant-b", "value": "B's"}]
        with pytest.raises(APIError) as caught:
            await b._api().table("tenant_memory").insert(
                {"tenant_id": "tenant-a", "chat_id": "c", "key": "x", "value": 1}).execute()
        assert caught.value.code == "42501"
        assert isinstance(translate(caught.value, "write"), PermanentError)
    finally:
        for m in (a, b):
            await m.close()


async def test_audit_keeps_a_hashed_chat_id_and_logs_the_marker(
        emulator: PostgrestEmulator, memory_factory: Callable[..., Any], supabase_db: str) -> None:
    import psycopg

    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m.record["message"]) + str(m.record["extra"])))
    memory = memory_factory("tenant-a")
    await memory.open()
    try:
        await memory.audit_batch([AuditEntry(action="message_sent", details={"chat_id": "33612@c.us"},
                                             message_id="m9")])
        await memory.forget("33612@c.us")
    finally:
        await memory.close()
        logger.remove(sink)
    with psycopg.connect(supabase_db) as conn:
        details, chat_hash = conn.execute("SELECT details::text, chat_hash FROM max_logs").fetchone()
    assert "33612" not in details and chat_hash.startswith("sha256:")
    assert any("[SUPABASE] max_logs <- 1 row(s): message_sent x1" in line for line in lines)
    assert not any(emulator.service_key in line for line in lines)


async def test_read_retried_by_client_on_503(
        emulator: PostgrestEmulator, memory_factory: Callable[..., Any]) -> None:
    memory = memory_factory("tenant-a")
    await memory.open()
    try:
        emulator.fail_next(503)
        assert await memory.facts("c") == {}  # supabase-py retries GETs once after 1 s
        assert emulator.requests[-1].headers.get("x-retry-count") == "1"
    finally:
        await memory.close()


@pytest.mark.parametrize(("status", "body"), [(503, None), (520, "<html>origin down</html>")])
async def test_write_failures_are_retryable_and_not_resent(
        emulator: PostgrestEmulator, memory_factory: Callable[..., Any], status: int,
        body: str | None) -> None:
    memory = memory_factory("tenant-a")
    await memory.open()
    try:
        emulator.fail_next(status, body=body)
        with pytest.raises(RetryableError, match="write to tenant_memory"):
            await memory.remember("c", "k", "v")
    finally:
        await memory.close()
    assert len(emulator.table_requests("tenant_memory")) == 1


async def test_timeout_and_unreachable_are_retryable(
        emulator: PostgrestEmulator, memory_factory: Callable[..., Any]) -> None:
    memory = memory_factory("tenant-a", timeout_s=0.3)
    await memory.open()
    try:
        emulator.delay_next(1.0)
        with pytest.raises(RetryableError, match="timed out"):
            await memory.remember("k", "k", {})
    finally:
        await memory.close()
    from maxcore.testing.server import free_port

    gone = memory_factory("tenant-a", url=f"http://127.0.0.1:{free_port()}")
    await gone.open()
    try:
        with pytest.raises(RetryableError, match="cannot reach"):
            await gone.remember("c", "k", "v")
        assert (await gone.health()).status == "down"
    finally:
        await gone.close()


async def test_dropped_connection_resends_an_idempotent_write_once(
        emulator: PostgrestEmulator, memory_factory: Callable[..., Any]) -> None:
    memory = memory_factory("tenant-a")
    await memory.open()
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return "sent"

    try:
        assert await memory._call("write to sessions", flaky, idempotent=True) == "sent"
        attempts.clear()
        with pytest.raises(RetryableError):
            await memory._call("read sessions", flaky)  # not idempotent-marked: no resend
    finally:
        await memory.close()


@pytest.mark.parametrize("which", ["key", "jwt_secret"])
async def test_bad_credentials_are_permanent_and_never_echoed(
        emulator: PostgrestEmulator, memory_factory: Callable[..., Any], which: str) -> None:
    wrong = "wrong-credential-value-0123456789abcdef"
    memory = memory_factory("tenant-a", jwt=which == "jwt_secret", **{which: wrong})
    await memory.open()
    try:
        with pytest.raises(PermanentError) as caught:
            await memory.remember("c", "k", "v")
        health = await memory.health()
    finally:
        await memory.close()
    assert wrong not in str(caught.value) and health.status == "down"
    assert ("memory.key" if which == "key" else "JWT") in str(caught.value)


async def test_health_reports_mode_and_schema(memory_factory: Callable[..., Any]) -> None:
    for jwt_mode, mode in ((False, "service-key"), (True, "tenant-jwt")):
        memory = memory_factory("tenant-a", jwt=jwt_mode)
        await memory.open()
        try:
            health = await memory.health()
        finally:
            await memory.close()
        assert health.status == "ok" and health.reason.startswith(f"{mode}, schema v2,")


def test_config_is_validated_from_tenant_yaml(tmp_path: Path) -> None:
    from maxcore.config import load_config
    from maxcore.plugins import load_plugins
    from maxcore.testing.harness import write_config

    write_config(tmp_path, {"acme": """
        tenant: acme
        memory: {type: supabase, url: "not a url", key: k, history_messages: 0, colour: blue}
    """})
    problems = "\n".join(str(p) for p in load_config(tmp_path, load_plugins()).problems)
    assert "url" in problems and "colour" in problems
    assert "history_messages" in problems
    write_config(tmp_path, {"acme": """
        tenant: acme
        memory: {type: supabase, url: "https://x.supabase.co", key: k, jwt_secret: s, timeout_s: 5}
    """})
    assert load_config(tmp_path, load_plugins()).problems == []


def test_loading_the_plugin_does_not_import_the_sdk() -> None:
    """supabase-py and postgrest load when a tenant's memory opens, not with every command."""
    import subprocess
    import sys

    code = ("import sys, maxcore.plugins; maxcore.plugins.load_plugins(); "
            "import maxcore_supabase.plugin; "
            "print(sorted(m for m in ('supabase', 'postgrest') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
