"""The espocrm connector against the EspoCRM 8.3 emulator: contract, tenancy, errors."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from maxcore_espocrm import EspoCRM, EspoCRMConfig

from maxcore.config.structure import structure
from maxcore.connectors import LeadQuery
from maxcore.errors import PermanentError, RetryableError, ToolError
from maxcore.testing import CRMContract, context_for
from maxcore.testing.espocrm import ApiUser, EspoEmulator, default_custom_dir
from maxcore.testing.server import free_port
from maxcore.types import Lead

from .conftest import API_KEY

_IDENTITY = ("first_name", "last_name", "phone", "email", "company", "id")


def _lead(**overrides: Any) -> Lead:
    """Identity keys go to the Lead, every other key to its fields (EspoCRM's names)."""
    values: dict[str, Any] = {
        "first_name": "Jean", "last_name": "Dupont", "phone": "+33612345678",
        "email": "jean@dupont.fr", "company": "Dupont BTP", "industry": "Construction",
        "status": "New", "source": "WhatsApp",
    }
    values.update(overrides)
    fields = {k: v for k, v in values.items() if k not in _IDENTITY and v is not None}
    return Lead(**{k: v for k, v in values.items() if k in _IDENTITY}, fields=fields)


class TestEspoCRM(CRMContract):
    """Both tenants share one emulator (one EspoCRM), as in the MVP deploy."""

    @pytest.fixture
    def make_crm(self, make_espocrm: Callable[..., EspoCRM]) -> Callable[[str], EspoCRM]:
        return make_espocrm


class TestEspoCRMOverHmac(CRMContract):
    @pytest.fixture
    def make_crm(self, make_espocrm: Callable[..., EspoCRM]) -> Callable[[str], EspoCRM]:
        return lambda tenant: make_espocrm(tenant, auth="hmac")


@pytest.fixture
async def pair(make_espocrm: Callable[..., EspoCRM]) -> AsyncIterator[tuple[EspoCRM, EspoCRM]]:
    a, b = make_espocrm("tenant-a"), make_espocrm("tenant-b")
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


async def test_written_lead_carries_tenant_and_exact_values(
    pair: tuple[EspoCRM, EspoCRM], espo: EspoEmulator
) -> None:
    a, _ = pair
    result = await a.upsert_lead(_lead(industry="btp", phone="06 12 34 56 78", source="whatsapp",
                                       company="Dupont <BTP>=", aiSummary="veut un devis"))
    [stored] = espo.records("Lead")
    assert stored["tenantId"] == "tenant-a"
    assert stored["industry"] == "Construction" and stored["source"] == "WhatsApp"
    assert stored["phoneNumber"] == "+33612345678" and stored["accountName"] == "Dupont BTP"
    assert stored["aiSummary"] == "veut un devis"
    assert result.lead.fields == {"industry": "Construction", "source": "WhatsApp", "status": "New",
                                  "aiSummary": "veut un devis"}


async def test_an_upsert_repeated_writes_only_what_changed(
    pair: tuple[EspoCRM, EspoCRM], espo: EspoEmulator
) -> None:
    a, _ = pair
    first = await a.upsert_lead(_lead())
    await a.upsert_lead(_lead())  # a replay after a crash: the same values again
    assert not [r for r in espo.requests if r[0] == "PUT"]
    moved = await a.upsert_lead(_lead(status="In Process"))
    assert moved.lead.id == first.lead.id and moved.lead.fields["status"] == "In Process"
    [put] = [r for r in espo.requests if r[0] == "PUT"]
    assert put[1] == f"/api/v1/Lead/{first.lead.id}"


async def test_every_list_request_filters_by_tenant(
    pair: tuple[EspoCRM, EspoCRM], espo: EspoEmulator
) -> None:
    a, _ = pair
    await a.upsert_lead(_lead())
    await a.search_leads(LeadQuery(text="Jean Dupont", fields={"status": "New"}))
    await a.search_leads(LeadQuery(email="jean@dupont.fr"))
    await a.list_leads()
    lists = [dict(query) for method, path, query in espo.queries
             if method == "GET" and path.endswith("/Lead")]
    assert len(lists) == 5  # upsert: by phone, by e-mail; two searches; one list
    for params in lists:
        assert params["where[0][type]"] == "equals"
        assert params["where[0][attribute]"] == "tenantId" and params["where[0][value]"] == "tenant-a"
        assert int(params["maxSize"]) <= 200


async def test_defaults_on_create_only_and_a_stated_status_is_written(pair: tuple[EspoCRM, EspoCRM]) -> None:
    a, _ = pair
    first = await a.upsert_lead(_lead(status=None), defaults={"status": "nouveau", "source": "wa"})
    assert (first.lead.fields["status"], first.lead.fields["source"]) == ("New", "WhatsApp")
    moved = await a.upsert_lead(_lead(status="en cours"), defaults={"status": "New"})
    assert moved.lead.id == first.lead.id and moved.lead.fields["status"] == "In Process"
    # Defaults never touch an update; a status the user states ("back to New") is written.
    kept = await a.upsert_lead(_lead(status=None, description="relancé"), defaults={"status": "New"})
    assert kept.lead.fields["status"] == "In Process"
    back = await a.upsert_lead(_lead(status="New"))
    assert back.lead.fields["status"] == "New"


async def test_update_lead_by_id_and_odd_ids(pair: tuple[EspoCRM, EspoCRM], espo: EspoEmulator) -> None:
    a, b = pair
    lead = (await a.upsert_lead(_lead())).lead
    updated = await a.update_lead(lead.id, Lead(email="j@dupont.fr", fields={"industry": "immobilier"}))
    assert updated is not None and updated.email == "j@dupont.fr"
    assert updated.fields["industry"] == "Real Estate" and updated.fields["status"] == "New"
    assert await b.update_lead(lead.id, Lead(company="B")) is None
    before = len(espo.requests)
    for odd in ("\r", "\x00", "?maxSize=1", "../Account", "a/b"):
        assert await a.update_lead(odd, Lead(company="x")) is None
        assert await a.get_lead(odd) is None
        with pytest.raises(ToolError, match="not found"):
            await a.create_record("DiagnosticIA", {"name": "x", "leadId": odd})
    assert len(espo.requests) == before  # refused before any request


async def test_tenant_synonyms_from_yaml(make_espocrm: Callable[..., EspoCRM], espo: EspoEmulator) -> None:
    crm = make_espocrm("tenant-a", synonyms={"industry": {"Construction": ("gros œuvre",)}})
    await crm.open()
    try:
        result = await crm.upsert_lead(_lead(industry="Gros Oeuvre"))
        assert result.lead.fields["industry"] == "Construction"
        schema = (await crm.lead_schema()).field("industry")
        assert schema is not None
        assert "gros œuvre" in schema.json_schema(shown=True)["x-synonyms"]["Construction"]
    finally:
        await crm.close()


async def test_enum_refused_with_allowed_values(pair: tuple[EspoCRM, EspoCRM], espo: EspoEmulator) -> None:
    a, _ = pair
    with pytest.raises(ToolError, match=r"industry 'astrologie' is not allowed; allowed values: .*Constr"):
        await a.upsert_lead(_lead(industry="astrologie"))
    assert espo.records("Lead") == []


async def test_tenant_b_cannot_update_tenant_a_lead_even_by_id(
    pair: tuple[EspoCRM, EspoCRM], espo: EspoEmulator
) -> None:
    a, b = pair
    lead_a = (await a.upsert_lead(_lead())).lead
    assert await b.get_lead(lead_a.id) is None
    # B writes the same person: a 409 lists A's lead; B must not touch it.
    result = await b.upsert_lead(_lead(id=lead_a.id, description="B's note"))
    assert result.created and result.lead.id != lead_a.id
    stored = {r["id"]: r for r in espo.records("Lead")}
    assert stored[lead_a.id]["description"] is None and stored[lead_a.id]["tenantId"] == "tenant-a"
    assert stored[result.lead.id]["tenantId"] == "tenant-b"
    with pytest.raises(ToolError, match="not found"):
        await b.create_record("DiagnosticIA", {"name": "x", "leadId": lead_a.id})


async def test_duplicate_of_our_own_lead_by_name_is_updated(
    pair: tuple[EspoCRM, EspoCRM], espo: EspoEmulator
) -> None:
    a, _ = pair
    first = await a.upsert_lead(_lead(phone=None, email="jean@dupont.fr"))
    # Different phone and e-mail, same name: not found by search, EspoCRM answers 409.
    again = await a.upsert_lead(_lead(phone="+33698765432", email="j.dupont@btp.fr"))
    assert not again.created and again.lead.id == first.lead.id
    assert again.lead.phone == "+33698765432"
    assert len(espo.records("Lead")) == 1
    assert ("POST", "/api/v1/Lead") in espo.requests
    assert ("PUT", f"/api/v1/Lead/{first.lead.id}") in espo.requests


@pytest.mark.parametrize(
    ("payload", "field", "kind"),
    [
        ({"status": "new"}, "status", "valid"),
        ({"status": None}, "status", "valid"),
        ({"industry": "BTP"}, "industry", "valid"),
        ({"phoneNumber": "06 12 34 56 78"}, "phoneNumber", "valid"),
        ({"emailAddress": "jean@"}, "emailAddress", "emailAddress"),
        ({"accountName": "a<b"}, "accountName", "pattern"),
        ({"title": "x=y"}, "title", "pattern"),
        ({"firstName": "x" * 101}, "firstName", "maxLength"),
        ({"opportunityAmount": 10, "opportunityAmountCurrency": "USD"}, "opportunityAmount", "validCurrency"),
    ],
)
def test_emulator_validation_errors(
    espo: EspoEmulator, payload: dict[str, Any], field: str, kind: str
) -> None:
    response = httpx.post(f"{espo.url}/api/v1/Lead", headers={"X-Api-Key": API_KEY},
                          json={"lastName": "Valid", **payload})
    assert response.status_code == 400
    assert response.headers["X-Status-Reason"] == (
        f"Field validation failure; entityType: Lead, field: {field}, type: {kind}."
    )
    assert response.json()["messageTranslation"]["data"] == {"field": field, "type": kind}


async def test_validation_error_reaches_the_model_as_tool_error(pair: tuple[EspoCRM, EspoCRM]) -> None:
    a, _ = pair
    with pytest.raises(ToolError, match="score: above the maximum"):
        await a.create_record("DiagnosticIA", {"name": "Diag", "score": 150})


async def test_create_records_of_custom_entities(pair: tuple[EspoCRM, EspoCRM], espo: EspoEmulator) -> None:
    a, _ = pair
    lead = (await a.upsert_lead(_lead())).lead
    diag = await a.create_record("DiagnosticIA", {"name": "Diag <1>", "leadId": lead.id, "score": 72,
                                                  "tenantId": "tenant-b", "unknown": 1})
    mission = await a.create_record("MissionMAX", {"name": "Relancer", "type": "Call",
                                                   "dueDate": "2025-01-10"})
    assert diag.fields == {"name": "Diag 1", "leadId": lead.id, "score": 72}
    [stored_diag] = espo.records("DiagnosticIA")
    assert stored_diag["tenantId"] == "tenant-a" and stored_diag["leadId"] == lead.id
    assert espo.records("MissionMAX")[0]["status"] == "Planned" and mission.id
    with pytest.raises(ToolError, match="not available"):
        await a.create_record("Account", {"name": "x"})


async def test_records_are_assigned_only_to_the_tenants_own_user_and_teams(
    make_espocrm: Callable[..., EspoCRM], espo: EspoEmulator
) -> None:
    crm = make_espocrm("tenant-a", assigned_user_id="user-sales", teams_ids=("team-a",))
    other = make_espocrm("tenant-b")
    await crm.open()
    await other.open()
    try:
        stolen = {"assignedUserId": "user-of-b", "assignedUserName": "B", "teamsIds": ["team-b"],
                  "assignedUsersIds": ["user-of-b"], "teamsNames": {"team-b": "B"}}
        await crm.create_record("MissionMAX", {"name": "Relancer", **stolen})
        await other.create_record("MissionMAX", {"name": "Relancer", **stolen})
        mine, theirs = espo.records("MissionMAX")
        assert mine["assignedUserId"] == "user-sales" and mine["teamsIds"] == ["team-a"]
        assert theirs.get("assignedUserId") is None and not theirs.get("teamsIds")
    finally:
        await crm.close()
        await other.close()


async def test_assignment_and_teams_from_config(
    make_espocrm: Callable[..., EspoCRM], espo: EspoEmulator
) -> None:
    crm = make_espocrm("tenant-a", assigned_user_id="user-sales", teams_ids=("team-a",))
    await crm.open()
    try:
        await crm.upsert_lead(_lead())
        stored = espo.records("Lead")[0]
        assert stored["assignedUserId"] == "user-sales" and stored["teamsIds"] == ["team-a"]
        bad = make_espocrm("tenant-a", assigned_user_id="user-unknown")
        await bad.open()
        with pytest.raises(PermanentError, match="assigned_user_id"):
            await bad.upsert_lead(_lead(phone="+33600000001", email="x@y.fr", last_name="Other"))
        await bad.close()
    finally:
        await crm.close()


async def test_pagination_beyond_200(pair: tuple[EspoCRM, EspoCRM], espo: EspoEmulator) -> None:
    a, _ = pair
    headers = {"X-Api-Key": API_KEY, "X-Skip-Duplicate-Check": "true"}
    async with httpx.AsyncClient(base_url=espo.url, headers=headers) as seed:
        for i in range(230):
            response = await seed.post("/api/v1/Lead", json={"lastName": f"L{i:03}", "tenantId": "tenant-a"})
            response.raise_for_status()
    leads = await a.list_leads(limit=225, offset=3)
    assert len(leads) == 225 and leads[0].last_name == "L003" and leads[-1].last_name == "L227"
    pages = [dict(q) for m, _p, q in espo.queries if m == "GET"]
    assert [(p["maxSize"], p["offset"]) for p in pages] == [("200", "3"), ("25", "203")]


async def test_bad_key_is_permanent_and_lockout_is_retryable(
    make_espocrm: Callable[..., EspoCRM], espo: EspoEmulator
) -> None:
    bad = make_espocrm("tenant-a", api_key="wrong-key")
    good = make_espocrm("tenant-b")
    await bad.open()
    await good.open()
    try:
        for _ in range(11):
            with pytest.raises(PermanentError, match="API key rejected") as rejected:
                await bad.search_leads(LeadQuery(text="x"))
            assert "wrong-key" not in str(rejected.value)  # says which setting, never its value
        # More than 10 failures in 60 s: the IP is locked out, valid keys included.
        with pytest.raises(RetryableError, match=r"locked this client out.*60 s") as caught:
            await good.search_leads(LeadQuery(text="x"))
        assert caught.value.retry_after == 60
        assert (await good.health()).status == "down"
        espo.advance(61)
        assert await good.search_leads(LeadQuery(text="x")) == []
    finally:
        await bad.close()
        await good.close()


async def test_server_errors_and_connection_errors_are_retryable(
    make_espocrm: Callable[..., EspoCRM], espo: EspoEmulator
) -> None:
    crm = make_espocrm("tenant-a")
    await crm.open()
    try:
        espo.fail_next(503)
        with pytest.raises(RetryableError, match="503"):
            await crm.upsert_lead(_lead())
        # The same fault through the emulator's HTTP control API.
        async with httpx.AsyncClient() as control:
            (await control.post(f"{espo.url}/__emulator/fail", json={"status": 500})).raise_for_status()
        with pytest.raises(RetryableError, match="500"):
            await crm.get_lead("abc")
        assert await crm.get_lead("abc") is None  # faults consumed: a plain 404 again
    finally:
        await crm.close()
    down = make_espocrm("tenant-a", url=f"http://127.0.0.1:{free_port()}")
    await down.open()
    with pytest.raises(RetryableError, match="cannot reach EspoCRM"):
        await down.upsert_lead(_lead())
    assert (await down.health()).status == "down"
    await down.close()


async def test_health(make_espocrm: Callable[..., EspoCRM], espo: EspoEmulator) -> None:
    crm = make_espocrm("tenant-a")
    await crm.open()
    assert (await crm.health()).reason.startswith("EspoCRM 8.3.6")
    await crm.close()
    espo.add_api_user(ApiUser(api_key="read-only-key", id="api-ro", denied={("Lead", "create")}))
    ro = make_espocrm("tenant-a", api_key="read-only-key")
    await ro.open()
    health = await ro.health()
    assert health.status == "degraded" and "create Leads" in health.reason
    await ro.close()


def _custom_copy(tmp_path: Path) -> Path:
    target = tmp_path / "custom"
    shutil.copytree(default_custom_dir(), target)
    return target


async def test_missing_tenant_field_fails_loudly_at_first_write(tmp_path: Path) -> None:
    custom = _custom_copy(tmp_path)
    lead_defs = custom / "Espo/Custom/Resources/metadata/entityDefs/Lead.json"
    lead_defs.write_text(lead_defs.read_text().replace('"tenantId"', '"tenantIdRemoved"'))
    diag_defs = custom / "Espo/Custom/Resources/metadata/entityDefs/DiagnosticIA.json"
    diag_defs.write_text(diag_defs.read_text().replace('"tenantId"', '"tenantIdRemoved"'))
    with EspoEmulator(custom) as espo:
        espo.add_api_user(ApiUser(api_key=API_KEY))
        crm = EspoCRM(EspoCRMConfig(url=espo.url, api_key=API_KEY), context_for("tenant-a", tmp_path))
        await crm.open()
        try:
            with pytest.raises(PermanentError, match=r"tenantId.*php command\.php rebuild"):
                await crm.upsert_lead(_lead())
            # A write whose answer lacks the tenant is refused and rolled back.
            with pytest.raises(PermanentError, match=r"did not store the tenantId.*php command\.php rebuild"):
                await crm.create_record("DiagnosticIA", {"name": "Diag"})
            assert espo.records("Lead") == [] and espo.records("DiagnosticIA") == []
        finally:
            await crm.close()


async def test_custom_entity_without_controller_is_404(tmp_path: Path) -> None:
    custom = _custom_copy(tmp_path)
    (custom / "Espo/Custom/Controllers/MissionMAX.php").unlink()
    with EspoEmulator(custom) as espo:
        espo.add_api_user(ApiUser(api_key=API_KEY))
        async with httpx.AsyncClient() as raw:
            response = await raw.get(f"{espo.url}/api/v1/MissionMAX", headers={"X-Api-Key": API_KEY})
        assert response.status_code == 404
        assert response.headers["X-Status-Reason"] == "Controller 'MissionMAX' does not exist."
        crm = EspoCRM(EspoCRMConfig(url=espo.url, api_key=API_KEY), context_for("tenant-a", tmp_path))
        await crm.open()
        try:
            with pytest.raises(PermanentError, match=r"Controller 'MissionMAX' does not exist.*rebuild"):
                await crm.create_record("MissionMAX", {"name": "x"})
            assert (await crm.health()).status == "degraded"
        finally:
            await crm.close()


async def test_national_phone_format_when_international_is_off(tmp_path: Path) -> None:
    with EspoEmulator(phone_number_international=False) as espo:
        espo.add_api_user(ApiUser(api_key=API_KEY))
        config = EspoCRMConfig(url=espo.url, api_key=API_KEY, phone_international=False)
        crm = EspoCRM(config, context_for("tenant-a", tmp_path))
        await crm.open()
        try:
            created = await crm.upsert_lead(_lead())
            assert espo.records("Lead")[0]["phoneNumber"] == "06 12 34 56 78"
            assert created.lead.phone == "+33612345678"
            again = await crm.upsert_lead(_lead(email=None, description="x"))
            assert again.lead.id == created.lead.id
        finally:
            await crm.close()


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"url": "crm.example.com", "api_key": "k"}, "crm.url"),
        ({"url": "https://crm.example.com"}, "crm.api_key"),
        ({"url": "https://crm.example.com", "api_key": "k", "auth": "hmac"}, "crm.secret_key"),
        ({"url": "https://crm.example.com", "api_key": "k", "auth": "basic"}, "crm.auth"),
        ({"url": "https://crm.example.com", "api_key": "k", "timeout_s": 0}, "crm.timeout_s"),
        ({"url": "https://crm.example.com", "api_key": "k", "tenantField": "x"}, "crm.tenantField"),
        ({"url": "https://crm.example.com", "api_key": "k", "synonyms": {"industry": {"Banana": ["x"]}}},
         "crm.synonyms.industry.Banana"),
        ({"url": "https://crm.example.com", "api_key": "k", "synonyms": {"colour": {"Red": ["x"]}}},
         "crm.synonyms.colour"),
    ],
)
def test_config_errors_name_the_key(settings: dict[str, Any], problem: str) -> None:
    config, problems = structure(settings, EspoCRMConfig, "crm")
    assert config is None and any(path.startswith(problem) for path, _ in problems), problems
