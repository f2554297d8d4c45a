"""Reloading the configuration: new tenants appear, invalid files are refused."""

from __future__ import annotations

from maxcore.testing.harness import running


async def test_reload_adds_a_tenant_and_refuses_a_broken_file(make_config):
    config = make_config("acme")
    async with running(config) as r:
        assert set(r.runtime.tenants.by_id) == {"acme"}
        old_acme = r.runtime.tenant("acme")
        (config / "tenants" / "globex.yaml").write_text("tenant: globex\n")
        assert await r.runtime.reload(config) == []
        assert set(r.runtime.tenants.by_id) == {"acme", "globex"}
        assert r.runtime.tenant("acme") is not old_acme
        assert (await r.client.post("/chat/globex/session")).status_code == 200

        (config / "tenants" / "globex.yaml").write_text("tenant: globex\ncrm: {type: nope}\n")
        problems = await r.runtime.reload(config)
        assert problems and "crm.type: unknown crm type 'nope'" in problems[0]
        assert set(r.runtime.tenants.by_id) == {"acme", "globex"}  # kept the working set
        health = await r.client.get("/api/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert set((await r.runtime.health())["tenants"]) == {"acme", "globex"}
