"""Many tenants: connectors open on first use, one pair of SQLite connections per database
file whatever the number of tenants, and the detailed health served from the monitor."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from maxcore.builtin.sqlite_db import open_files
from maxcore.testing.harness import running

DEMO = "Nouveau lead : Jean Dupont, BTP, jean@dupont.example, +33612345678"
HEALTH = {"Authorization": "Bearer lazy-health-token"}
TENANTS = [f"t{n:03d}" for n in range(40)]


async def say(client, tenant: str, text: str, message_id: str) -> None:  # type: ignore[no-untyped-def]
    session = (await client.post(f"/chat/{tenant}/session")).json()
    response = await client.post("/webhooks/webchat", json={"text": text, "id": message_id},
                                  headers={"Authorization": f"Bearer {session['token']}"})
    assert response.status_code == 200 and response.json()["accepted"] == 1


async def test_only_the_tenant_written_to_opens_and_files_are_shared(
    make_config: Callable[..., Path],
) -> None:
    before = open_files()
    config = make_config(*TENANTS, main="server: {health_token: lazy-health-token}\n")
    async with running(config) as r:
        assert not any(t.opened for t in r.runtime.tenants.by_id.values())
        assert open_files() == before  # nothing opened by starting
        await say(r.client, "t007", DEMO, "m-1")
        await r.settle()
        opened = {t.id for t in r.runtime.tenants.by_id.values() if t.opened}
        assert opened == {"t007"}
        await say(r.client, "t011", DEMO, "m-2")
        await r.settle()
        # crm.sqlite3 and memory.sqlite3, shared by the two tenants now open.
        assert open_files() == before + 2
        leads = await r.runtime.tenant("t011").crm.list_leads()
        assert [lead.phone for lead in leads] == ["+33612345678"]
        assert await r.runtime.tenant("t012").crm.list_leads() == []  # tenants never mix
    assert open_files() == before


async def test_health_details_come_from_the_monitor(make_config: Callable[..., Path]) -> None:
    config = make_config(*TENANTS[:5], main="server: {health_token: lazy-health-token}\n")
    async with running(config) as r:
        await say(r.client, "t001", DEMO, "m-1")
        await r.settle()
        await r.runtime.health_monitor.refresh()
        body = json.loads((await r.client.get("/api/health", headers=HEALTH)).text)
        anonymous = (await r.client.get("/api/health")).json()
    assert set(anonymous) == {"status", "version"}
    assert body["status"] == "ok" and set(body["tenants"]) == set(TENANTS[:5])
    assert body["tenants"]["t001"]["opened"] is True
    assert "checked_s_ago" in body["tenants"]["t001"]["connectors"]["crm"]
    idle = body["tenants"]["t002"]
    assert idle["opened"] is False and idle["connectors"]["crm"]["reason"] == "opens on the first message"
    assert "inbox" in body and "audit_outbox" in body
