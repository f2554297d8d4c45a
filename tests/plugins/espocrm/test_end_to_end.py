"""The demo sentence through the whole runtime: webchat → offline model → espocrm plugin
→ EspoCRM emulator, for two tenants sharing one EspoCRM."""

from __future__ import annotations

from pathlib import Path

import httpx

from maxcore.testing.espocrm import EspoEmulator
from maxcore.testing.harness import running, write_config

from .conftest import API_KEY

DEMO = "Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, 06 12 34 56 78"
TENANT = """
tenant: {tenant}
channel: {{type: webchat}}
crm: {{type: espocrm, url: "{url}", api_key: "{key}", timeout_s: 5}}
memory: {{type: sqlite}}
llm: {{type: offline}}
assistant:
  lead_defaults: {{status: New, source: {source}}}
"""


async def _say(client: httpx.AsyncClient, tenant: str, text: str, message_id: str) -> None:
    token = (await client.post(f"/chat/{tenant}/session")).json()["token"]
    response = await client.post("/webhooks/webchat", json={"text": text, "id": message_id},
                                 headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 202), response.text


async def test_demo_sentence_lands_in_espocrm_per_tenant(espo: EspoEmulator, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", {
        "acme": TENANT.format(tenant="acme", url=espo.url, key=API_KEY, source="WhatsApp"),
        "globex": TENANT.format(tenant="globex", url=espo.url, key=API_KEY, source="Web Site"),
    }, data_dir=tmp_path / "data")
    async with running(config) as r:
        await _say(r.client, "acme", DEMO, "m-1")
        await _say(r.client, "globex", DEMO, "m-1")
        await r.settle()
        by_tenant = {lead["tenantId"]: lead for lead in espo.records("Lead")}
        assert set(by_tenant) == {"acme", "globex"}  # one lead each, never shared
        for tenant, source in (("acme", "WhatsApp"), ("globex", "Web Site")):
            lead = by_tenant[tenant]
            assert (lead["firstName"], lead["lastName"]) == ("Jean", "Dupont")
            assert lead["industry"] == "Construction"
            assert lead["phoneNumber"] == "+33612345678"
            assert lead["emailAddress"] == "jean@dupont.fr"
            assert lead["status"] == "New" and lead["source"] == source
            audit = await r.runtime.tenant(tenant).memory.audit_log(action="lead_created")
            assert [entry.details["lead_id"] for entry in audit] == [lead["id"]]
        # The same person again for acme updates acme's lead; nothing new is created.
        await _say(r.client, "acme", DEMO, "m-2")
        await r.settle()
        assert len(espo.records("Lead")) == 2
        updated = await r.runtime.tenant("acme").memory.audit_log(action="lead_updated")
        assert [entry.details["lead_id"] for entry in updated] == [by_tenant["acme"]["id"]]


def test_check_refuses_lead_defaults_espocrm_does_not_allow(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from maxcore import cli as cli_module

    bad = TENANT.format(tenant="acme", url="https://crm.example.com", key="k", source="Banana")
    config = write_config(tmp_path / "config", {"acme": bad}, data_dir=tmp_path / "data")
    result = CliRunner().invoke(cli_module.cli, ["check", "--config", str(config)])
    assert result.exit_code == 1
    assert ("acme.yaml: assistant.lead_defaults.source: 'Banana' is not one of Call, Email, "
            "Existing Customer") in result.output
