"""Through the HTTP app: redeliveries, an upstream that fails then recovers, dead letters
replayed by the operator CLI, backpressure. Real pipeline (webchat, sqlite CRM/memory,
offline model with its fault file as the failing upstream)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from loguru import logger

from maxcore.testing.harness import running

INBOX = """
inbox:
  type: sqlite
  workers: 4
  max_attempts: 5
  backoff_initial_s: 0.01
  backoff_max_s: 0.05
  poll_interval_s: 0.05
  max_pending: {max_pending}
"""
MAXCORE = str(Path(sys.executable).with_name("maxcore"))


def config(make_config: Callable[..., Path], *, llm_extra: str = "", max_pending: int = 1000) -> Path:
    extra = f"\nllm: {{type: offline{llm_extra}}}\n" if llm_extra else ""
    path = make_config("acme", main=INBOX.format(max_pending=max_pending))
    # Many messages per session on purpose: delivery is tested here, not rate limits.
    tenant = path / "tenants" / "acme.yaml"
    tenant.write_text(tenant.read_text().replace(
        "channel: {type: webchat}", "channel: {type: webchat, rate_limits: false}"))
    if extra:
        tenant = path / "tenants" / "acme.yaml"
        tenant.write_text(tenant.read_text().replace("llm: {type: offline}\n", "") + extra)
    return path


async def session(client: httpx.AsyncClient) -> str:
    response = await client.post("/chat/acme/session")
    assert response.status_code == 200
    return str(response.json()["token"])


async def post(client: httpx.AsyncClient, token: str, text: str, message_id: str) -> httpx.Response:
    return await client.post(
        "/webhooks/webchat", json={"text": text, "id": message_id},
        headers={"Authorization": f"Bearer {token}"},
    )


async def replies(runtime: Any) -> list[str]:
    """Message ids of the replies sent, from the audit log (one row per reply sent)."""
    memory = runtime.tenant("acme").memory
    return [str(e.message_id) for e in await memory.audit_log(action="reply_sent", limit=1000)]


@attrs.frozen
class Result:
    returncode: int
    stdout: str
    stderr: str


async def inbox_cli(config_dir: Path, *args: str) -> Result:
    """``maxcore inbox ...`` in its own process, without blocking the server's loop."""
    env = {
        **os.environ, "MAXCORE_DATA_DIR": str(config_dir.parent / "data"),
        "MAXCORE_LOAD_PLUGINS": "",  # built-ins only: faster start, same inbox code
    }
    process = await asyncio.create_subprocess_exec(
        MAXCORE, "inbox", "--config", str(config_dir), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


LEAD = "Nouveau lead : Jean Dupont, BTP, jean{n}@dupont.fr, +33 6 12 34 56 {n:02d}"


async def test_each_message_delivered_three_times_is_processed_once(
    make_config: Callable[..., Path],
) -> None:
    async with running(config(make_config)) as r:
        token = await session(r.client)
        for n in range(5):
            text, message_id = LEAD.format(n=n), f"wamid-{n}"
            concurrent = await asyncio.gather(*(post(r.client, token, text, message_id) for _ in range(3)))
            sequential = [await post(r.client, token, text, message_id) for _ in range(3)]
            bodies = [resp.json() for resp in (*concurrent, *sequential)]
            assert all(resp.status_code == 200 for resp in (*concurrent, *sequential))
            assert sum(b["accepted"] for b in bodies) == 1
            assert sum(b["duplicates"] for b in bodies) == 5
        await r.settle()
        leads = await r.runtime.tenant("acme").crm.list_leads()
        assert sorted(lead.email for lead in leads) == [f"jean{n}@dupont.fr" for n in range(5)]
        sent = await replies(r.runtime)
        assert sorted(sent) == [f"wamid-{n}" for n in range(5)]


@pytest.mark.slow
async def test_upstream_failing_three_times_then_succeeding(make_config: Callable[..., Path]) -> None:
    path = config(make_config, llm_extra=", fault_file: llm-fault")
    data = path.parent / "data"
    data.mkdir(exist_ok=True)
    (data / "llm-fault").write_text("retryable 3\n")
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING", format="{message}")
    try:
        async with running(path) as r:
            token = await session(r.client)
            assert (await post(r.client, token, LEAD.format(n=1), "wamid-1")).status_code == 200
            await r.settle()
            assert len(await r.runtime.tenant("acme").crm.list_leads()) == 1
            assert await replies(r.runtime) == ["wamid-1"]
    finally:
        logger.remove(sink)
    retried = [line for line in lines if "retrying in" in line]
    assert len(retried) == 3 and "injected transient failure (HTTP 503)" in retried[0]
    shown = await inbox_cli(path, "list", "--state", "done", "--json")
    assert [(m["message_id"], m["attempts"]) for m in json.loads(shown.stdout)] == [("wamid-1", 4)]


@pytest.mark.slow
async def test_permanent_failure_is_dead_then_replayed_by_the_cli(make_config: Callable[..., Path]) -> None:
    path = config(make_config, llm_extra=", fault_file: llm-fault")
    data = path.parent / "data"
    data.mkdir(exist_ok=True)
    fault = data / "llm-fault"
    fault.write_text("permanent\n")
    async with running(path) as r:
        token = await session(r.client)
        assert (await post(r.client, token, LEAD.format(n=7), "wamid-7")).status_code == 200
        await r.settle()
        listed = await inbox_cli(path, "list", "--state", "dead")
        assert listed.returncode == 0, listed.stderr
        assert "wamid-7" in listed.stdout and "PermanentError" in listed.stdout
        dead = json.loads((await inbox_cli(path, "list", "--state", "dead", "--json")).stdout)
        assert [(m["attempts"], m["last_error"]) for m in dead] == [
            (1, "PermanentError: offline model: injected permanent failure (HTTP 400)")
        ]
        assert await r.runtime.tenant("acme").crm.list_leads() == []
        counts = await inbox_cli(path, "--json")
        assert json.loads(counts.stdout) == {"acme": {"pending": 0, "done": 0, "dead": 1}}

        fault.unlink()  # the upstream recovers
        retried = await inbox_cli(path, "retry", str(dead[0]["id"]))
        assert retried.returncode == 0 and "1 message(s) put back" in retried.stdout
        # The running server's sweeper picks it up; bounded wait on the observable outcome.
        for _ in range(200):
            if await replies(r.runtime):
                break
            await asyncio.sleep(0.05)
        await r.settle()
        assert await replies(r.runtime) == ["wamid-7"]
        assert len(await r.runtime.tenant("acme").crm.list_leads()) == 1
    counts = await inbox_cli(path, "--json")
    assert json.loads(counts.stdout) == {"acme": {"pending": 0, "done": 1, "dead": 0}}
    again = await inbox_cli(path, "retry", str(dead[0]["id"]))
    assert again.returncode == 1 and "only dead messages are retried" in again.stderr
    shown = json.loads((await inbox_cli(path, "show", str(dead[0]["id"]))).stdout)
    assert shown["state"] == "done" and shown["payload"]["text"] == LEAD.format(n=7)
    purged = await inbox_cli(path, "purge", "--done-older-than", "0s")
    assert "1 done message(s)" in purged.stdout
    assert json.loads((await inbox_cli(path, "--json")).stdout) == {}


@pytest.mark.slow
async def test_full_inbox_answers_503_with_retry_after(make_config: Callable[..., Path]) -> None:
    path = config(make_config, llm_extra=", latency_ms: 300", max_pending=2)
    async with running(path) as r:
        token = await session(r.client)
        statuses = [
            (await post(r.client, token, f"bonjour {n}", f"m-{n}")).status_code for n in range(2)
        ]
        refused = await post(r.client, token, "bonjour 2", "m-2")
        assert statuses == [200, 200]
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "messages are waiting" in refused.json()["error"]
        await r.settle()
        assert (await post(r.client, token, "bonjour 2", "m-2")).status_code == 200
        await r.settle()


async def test_tenant_messages_per_minute_from_yaml_defers_processing(
    make_config: Callable[..., Path],
) -> None:
    path = config(make_config)
    tenant = path / "tenants" / "acme.yaml"
    tenant.write_text(tenant.read_text() + "\nlimits: {messages_per_minute: 1}\n")
    async with running(path) as r:
        assert r.runtime.messages_per_minute("acme") == 1
        token = await session(r.client)
        for n in range(2):
            assert (await post(r.client, token, f"bonjour {n}", f"m-{n}")).status_code == 200
        # Bounded wait for the first reply (the only observable event), then the second must wait.
        for _ in range(200):
            if await replies(r.runtime):
                break
            await asyncio.sleep(0.02)
        assert await replies(r.runtime) == ["m-0"]
        assert not await r.runtime.inbox.drain(0.3)
        assert r.runtime.inbox.stats()["pending"] == 1


def test_inbox_settings_are_validated(make_config: Callable[..., Path]) -> None:
    from maxcore.config import load_config
    from maxcore.plugins import load_plugins

    path = make_config("acme", main="inbox: {type: redis, synchronous: sometimes, workers: 0}\n")
    problems = sorted(str(p) for p in load_config(path, load_plugins()).problems)
    assert any("inbox.type" in p and "sqlite, memory" in p for p in problems), problems
    default = make_config("acme")
    assert load_config(default, load_plugins()).main.inbox.type == "sqlite"
