"""The third-party HubSpot example, installed as a distribution (never imported by path):
the CRM contract on one shared emulated account, HubSpot's own vocabulary, its errors,
and a tenant wired purely in YAML driven end to end (webchat → offline model → HubSpot)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import httpx
import pytest

from maxcore.errors import PermanentError, RetryableError, ToolError
from maxcore.plugins import load_plugins
from maxcore.testing import CRMContract, context_for, sample_lead
from maxcore.testing.harness import running, write_config
from maxcore.types import Lead

hubspot = pytest.importorskip("maxcore_hubspot", reason="pip install examples/maxcore-hubspot")
from maxcore_hubspot import HubSpotConfig, HubSpotCRM  # noqa: E402
from maxcore_hubspot.emulator import HubSpotEmulator  # noqa: E402

TOKEN = "pat-na1-test-token"


@pytest.fixture(scope="module")
def hub_server() -> Iterator[HubSpotEmulator]:
    with HubSpotEmulator(tokens={TOKEN}) as emulator:
        yield emulator


@pytest.fixture
def hub(hub_server: HubSpotEmulator) -> HubSpotEmulator:
    hub_server.reset()
    return hub_server


@pytest.fixture
def make_hubspot(hub: HubSpotEmulator, tmp_path: Path) -> Callable[..., HubSpotCRM]:
    def make(tenant: str, **overrides: Any) -> HubSpotCRM:
        settings: dict[str, Any] = {"base_url": hub.url, "access_token": TOKEN, "timeout_s": 5.0}
        settings.update(overrides)
        return HubSpotCRM(HubSpotConfig(**settings), context_for(tenant, tmp_path))

    return make


class TestHubSpotCRM(CRMContract):
    """Both tenants share one HubSpot account, where e-mails are unique."""

    @pytest.fixture
    def make_crm(self, make_hubspot: Callable[..., HubSpotCRM]) -> Callable[[str], HubSpotCRM]:
        return make_hubspot


def test_installed_as_a_distribution_with_an_entry_point() -> None:
    assert "site-packages" in str(Path(hubspot.__file__).resolve())  # not the source tree
    points = [ep for ep in distribution("maxcore-hubspot").entry_points if ep.group == "maxcore"]
    assert [(ep.name, ep.value) for ep in points] == [("hubspot", "maxcore_hubspot.plugin")]
    assert load_plugins().connector_class("crm", "hubspot") is HubSpotCRM


async def test_the_declaration_is_hubspots_own(make_hubspot: Callable[..., HubSpotCRM]) -> None:
    crm = make_hubspot("acme", synonyms={"hs_lead_status": {"NEW": ("nouveau",)}})
    await crm.open()
    try:
        schema = await crm.lead_schema()
        assert schema.names == ("lifecyclestage", "hs_lead_status", "jobtitle", "industry", "message")
        stage = schema.field("lifecyclestage")
        assert stage is not None and stage.values[:3] == ("subscriber", "lead", "marketingqualifiedlead")
        assert stage.normalise("Sales Qualified Lead") == "salesqualifiedlead"  # by label
        assert schema.field("hs_lead_status").normalise("Nouveau") == "NEW"  # tenant synonym
        assert schema.field("industry").type == "text"
    finally:
        await crm.close()


async def test_a_missing_property_or_bad_synonym_fails_at_open(
    make_hubspot: Callable[..., HubSpotCRM],
) -> None:
    for overrides, message in (({"properties": ("no_such_property",)}, "no contact property"),
                               ({"synonyms": {"hs_lead_status": {"BANANA": ("x",)}}},
                                "crm.synonyms.hs_lead_status.BANANA")):
        crm = make_hubspot("acme", **overrides)
        with pytest.raises(PermanentError, match=message):
            await crm.open()
        await crm.close()


async def test_errors_map_to_what_the_core_does_next(make_hubspot: Callable[..., HubSpotCRM],
                                                     hub: HubSpotEmulator) -> None:
    bad = make_hubspot("acme", access_token="pat-wrong")
    with pytest.raises(PermanentError, match=r"rejected the access token \(401\)") as rejected:
        await bad.open()
    assert "pat-wrong" not in str(rejected.value)
    await bad.close()
    crm = make_hubspot("acme")
    await crm.open()
    try:
        schema = await crm.lead_schema()
        hub.throttle(1, retry_after=7)
        with pytest.raises(RetryableError, match="429") as throttled:
            await crm.upsert_lead(sample_lead(schema))
        assert throttled.value.retry_after == 7
        martian = Lead(first_name="A", email="a@example.com", fields={"lifecyclestage": "martian"})
        with pytest.raises(ToolError, match="'martian' is not allowed; allowed values: subscriber, lead"):
            await crm.upsert_lead(martian)
        assert hub.contact_properties() == []
    finally:
        await crm.close()


def test_emulator_speaks_hubspot(hub: HubSpotEmulator) -> None:
    api = httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert httpx.get(f"{hub.url}/crm/v3/properties/contacts/email").status_code == 401
    first = api.post("/crm/v3/objects/contacts", json={"properties": {"email": "x@example.com"}})
    assert first.status_code == 201
    again = api.post("/crm/v3/objects/contacts", json={"properties": {"email": "X@example.com"}})
    assert again.status_code == 409 and again.json()["category"] == "CONFLICT"
    assert again.json()["message"] == f"Contact already exists. Existing ID: {first.json()['id']}"
    invalid = api.post("/crm/v3/objects/contacts", json={"properties": {"lifecyclestage": "Lead"}})
    assert invalid.status_code == 400 and "INVALID_OPTION" in invalid.json()["message"]
    found = api.post("/crm/v3/objects/contacts/search", json={
        "filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ",
                                       "value": "x@example.com"}]}]})
    assert found.json()["total"] == 1 and found.json()["results"][0]["id"] == first.json()["id"]
    stage = api.get("/crm/v3/properties/contacts/lifecyclestage").json()
    assert {"label": "Lead", "value": "lead", "displayOrder": 1, "hidden": False} in stage["options"]
    hub.throttle(1, retry_after=2)
    limited = api.get("/crm/v3/properties/contacts/email")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert limited.json()["errorType"] == "RATE_LIMIT"


TENANT = """
tenant: {tenant}
channel: {{type: webchat}}
crm:
  type: hubspot
  base_url: "{url}"
  access_token: "{token}"
  synonyms: {{hs_lead_status: {{NEW: [nouveau, nouvelle]}}}}
memory: {{type: sqlite}}
llm: {{type: offline}}
assistant:
  lead_defaults: {{lifecyclestage: lead, hs_lead_status: nouveau}}
"""


async def _say(client: httpx.AsyncClient, tenant: str, text: str, message_id: str) -> list[str]:
    token = (await client.post(f"/chat/{tenant}/session")).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    response = await client.post("/webhooks/webchat", json={"text": text, "id": message_id}, headers=headers)
    assert response.status_code in (200, 202), response.text
    return [token]


async def test_tenant_in_yaml_end_to_end(hub: HubSpotEmulator, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", {
        "acme": TENANT.format(tenant="acme", url=hub.url, token=TOKEN),
        "globex": TENANT.format(tenant="globex", url=hub.url, token=TOKEN),
    }, data_dir=tmp_path / "data")
    async with running(config) as r:
        await _say(r.client, "acme", "Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, 06 12 34 56 78", "m1")
        await _say(r.client, "globex", "New lead: John Smith from Acme, john@acme.com", "m1")
        await r.settle()
        upsert = r.runtime.tenant("acme").tools["upsert_lead"].spec().parameters["properties"]
        assert upsert["hs_lead_status"]["enum"][:2] == ["NEW", "OPEN"]
        assert "nouveau" in upsert["hs_lead_status"]["x-synonyms"]["NEW"]
        by_tenant = {c["maxcore_tenant"]: c for c in hub.contact_properties()}
        assert set(by_tenant) == {"acme", "globex"}
        jean = by_tenant["acme"]
        assert (jean["firstname"], jean["lastname"], jean["email"]) == ("Jean", "Dupont", "jean@dupont.fr")
        assert jean["phone"] == "+33612345678" and jean["industry"] == "BTP"
        assert (jean["lifecyclestage"], jean["hs_lead_status"]) == ("lead", "NEW")  # defaults, on create
        assert by_tenant["globex"]["company"] == "Acme"
        [created] = await r.runtime.tenant("acme").memory.audit_log(action="lead_created")
        assert created.details["lead_id"] == jean["hs_object_id"]
        # The same person again for acme updates acme's contact.
        await _say(r.client, "acme", "Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, 06 12 34 56 78", "m2")
        await r.settle()
        assert len(hub.contact_properties()) == 2
        assert len(await r.runtime.tenant("acme").memory.audit_log(action="lead_updated")) == 1


async def test_a_tenant_without_lead_defaults_works(hub: HubSpotEmulator, tmp_path: Path) -> None:
    text = TENANT.format(tenant="acme", url=hub.url, token=TOKEN).replace(
        "  lead_defaults: {lifecyclestage: lead, hs_lead_status: nouveau}\n", "  language: en\n")
    config = write_config(tmp_path / "config", {"acme": text}, data_dir=tmp_path / "data")
    async with running(config) as r:
        await _say(r.client, "acme", "New lead: John Smith from Acme, john@acme.com", "m1")
        await r.settle()
    [contact] = hub.contact_properties()
    assert contact["email"] == "john@acme.com" and contact.get("lifecyclestage") is None


async def test_lead_defaults_hubspot_does_not_allow_fail_at_open(
    hub: HubSpotEmulator, tmp_path: Path,
) -> None:
    from maxcore.errors import PluginError

    text = TENANT.format(tenant="acme", url=hub.url, token=TOKEN).replace("lifecyclestage: lead",
                                                                           "lifecyclestage: Banana")
    config = write_config(tmp_path / "config", {"acme": text}, data_dir=tmp_path / "data")
    with pytest.raises(PluginError, match=r"acme.yaml: assistant.lead_defaults.lifecyclestage: 'Banana' "
                                          r"is not one of subscriber, lead, "):
        async with running(config):
            pass
