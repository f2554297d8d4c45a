"""The EspoCRM 8.3 emulator follows the contract (EspoCRM 8.3.6's REST API, read from its source)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from maxcore.testing.espocrm import EspoEmulator, hmac_header

from .conftest import API_KEY, HMAC_KEY, HMAC_SECRET


@pytest.fixture
def api(espo: EspoEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{espo.url}/api/v1", headers={"X-Api-Key": API_KEY}) as client:
        yield client


def _create(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = api.post("/Lead", json=fields, headers={"X-Skip-Duplicate-Check": "true"})
    assert response.status_code == 200, response.headers.get("X-Status-Reason")
    return dict(response.json())


@pytest.fixture
def seeded(api: httpx.Client) -> dict[str, str]:
    ids = {}
    for name, tenant, status, email in (
        ("Alpha", "a", "New", "alpha@x.fr"), ("Bravo", "a", "Assigned", None),
        ("Charlie", "b", "New", "charlie@y.fr"), ("Delta", "a", "Dead", "delta@x.fr"),
    ):
        ids[name] = _create(api, lastName=name, tenantId=tenant, status=status, emailAddress=email)["id"]
    return ids


def _names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.headers.get("X-Status-Reason")
    return [row["lastName"] for row in response.json()["list"]]


def test_auth_failures_are_401_with_empty_body(espo: EspoEmulator) -> None:
    for headers in ({}, {"X-Api-Key": "nope"}, {"X-Hmac-Authorization": "!!"}):
        response = httpx.get(f"{espo.url}/api/v1/Lead", headers=headers)
        assert response.status_code == 401 and response.content == b""
    assert httpx.get(f"{espo.url}/api/v1/Settings").status_code == 200  # noAuth


def test_hmac_needs_the_raw_digest(espo: EspoEmulator) -> None:
    good = hmac_header(HMAC_KEY, HMAC_SECRET, "GET", "/Lead")
    assert httpx.get(f"{espo.url}/api/v1/Lead", headers={"X-Hmac-Authorization": good}).status_code == 200
    hexdigest = hmac.new(HMAC_SECRET.encode(), b"GET /Lead", hashlib.sha256).hexdigest()
    hexed = base64.b64encode(f"{HMAC_KEY}:{hexdigest}".encode()).decode()
    assert httpx.get(f"{espo.url}/api/v1/Lead", headers={"X-Hmac-Authorization": hexed}).status_code == 401
    # Signed for another path: refused.
    other = hmac_header(HMAC_KEY, HMAC_SECRET, "GET", "/Account")
    assert httpx.get(f"{espo.url}/api/v1/Lead", headers={"X-Hmac-Authorization": other}).status_code == 401


def test_lockout_after_more_than_ten_failures(espo: EspoEmulator, api: httpx.Client) -> None:
    for _ in range(11):
        assert api.get("/Lead", headers={"X-Api-Key": "wrong"}).status_code == 401
    locked = api.get("/Lead")
    assert locked.status_code == 403 and locked.content == b""
    assert locked.headers["X-Status-Reason"] == "Max failed login attempts exceeded for IP address 127.0.0.1."
    espo.advance(61)
    assert api.get("/Lead").status_code == 200


def test_where_bracket_encoding(api: httpx.Client, seeded: dict[str, str]) -> None:
    def where(*pairs: tuple[str, str]) -> list[str]:
        return _names(api.get("/Lead", params=[*pairs, ("orderBy", "lastName"), ("order", "asc")]))

    tenant_a = [("where[0][type]", "equals"), ("where[0][attribute]", "tenantId"), ("where[0][value]", "A")]
    assert where(*tenant_a) == ["Alpha", "Bravo", "Delta"]  # case-insensitive like MariaDB
    assert where(*tenant_a, ("where[1][type]", "in"), ("where[1][attribute]", "status"),
                 ("where[1][value][]", "New"), ("where[1][value][]", "Assigned")) == ["Alpha", "Bravo"]
    assert where(("where[0][type]", "notIn"), ("where[0][attribute]", "status"),
                 ("where[0][value][]", "New")) == ["Bravo", "Delta"]
    assert where(("where[0][type]", "notEquals"), ("where[0][attribute]", "tenantId"),
                 ("where[0][value]", "a")) == ["Charlie"]
    assert where(("where[0][type]", "contains"), ("where[0][attribute]", "lastName"),
                 ("where[0][value]", "ha")) == ["Alpha", "Charlie"]
    assert where(("where[0][type]", "startsWith"), ("where[0][attribute]", "emailAddress"),
                 ("where[0][value]", "DEL")) == ["Delta"]
    assert where(("where[0][type]", "isNull"), ("where[0][attribute]", "emailAddress")) == ["Bravo"]
    assert len(where(("where[0][type]", "isNotNull"), ("where[0][attribute]", "emailAddress"))) == 3
    assert where(*tenant_a, ("where[1][type]", "or"),
                 ("where[1][value][0][type]", "equals"), ("where[1][value][0][attribute]", "status"),
                 ("where[1][value][0][value]", "Dead"),
                 ("where[1][value][1][type]", "and"),
                 ("where[1][value][1][value][0][type]", "equals"),
                 ("where[1][value][1][value][0][attribute]", "lastName"),
                 ("where[1][value][1][value][0][value]", "Alpha")) == ["Alpha", "Delta"]
    bad = api.get("/Lead", params={"where[0][type]": "equals", "where[0][attribute]": "nope",
                                   "where[0][value]": "x"})
    assert bad.status_code == 400 and "nope" in bad.headers["X-Status-Reason"]


def test_equals_answers_the_same_from_its_index_through_writes(api: httpx.Client,
                                                              seeded: dict[str, str]) -> None:
    def equals(attribute: str, value: str) -> list[str]:
        return _names(api.get("/Lead", params=[
            ("where[0][type]", "equals"), ("where[0][attribute]", attribute), ("where[0][value]", value),
            ("orderBy", "lastName"), ("order", "asc")]))

    assert equals("emailAddress", "ALPHA@x.fr") == ["Alpha"]  # folded like MariaDB
    assert equals("tenantId", "a") == ["Alpha", "Bravo", "Delta"]
    # Created after the index was built: found; a second address counts as well.
    _create(api, lastName="Echo", tenantId="a", emailAddress="echo@x.fr",
            emailAddressData=[{"emailAddress": "echo@x.fr", "primary": True},
                              {"emailAddress": "alpha@x.fr", "primary": False}])
    assert equals("emailAddress", "alpha@x.fr") == ["Alpha", "Echo"]
    # An update moves the record to its new value, a delete removes it.
    assert api.put(f"/Lead/{seeded['Alpha']}", json={"emailAddress": "new@x.fr"}).status_code == 200
    assert equals("emailAddress", "new@x.fr") == ["Alpha"]
    assert equals("emailAddress", "alpha@x.fr") == ["Echo"]
    assert api.delete(f"/Lead/{seeded['Delta']}").status_code == 200
    assert equals("tenantId", "a") == ["Alpha", "Bravo", "Echo"]


def test_search_params_json(api: httpx.Client, seeded: dict[str, str]) -> None:
    params = {"where": [{"type": "equals", "attribute": "tenantId", "value": "a"}],
              "select": ["lastName"], "maxSize": 2, "offset": 1, "orderBy": "lastName", "order": "desc"}
    response = api.get("/Lead", params={"searchParams": json.dumps(params), "maxSize": "999"})
    assert response.json() == {"total": 3, "list": [
        {"id": seeded["Bravo"], "lastName": "Bravo"}, {"id": seeded["Alpha"], "lastName": "Alpha"},
    ]}
    invalid = api.get("/Lead", params={"searchParams": "{nope"})
    assert invalid.status_code == 400 and invalid.headers["X-Status-Reason"] == "Invalid search params JSON."
    not_int = api.get("/Lead", params={"searchParams": json.dumps({"maxSize": "10"})})
    assert not_int.status_code == 400 and not_int.headers["X-Status-Reason"] == "maxSize must be integer."


def test_paging_limits_and_totals(api: httpx.Client, seeded: dict[str, str]) -> None:
    over = api.get("/Lead", params={"maxSize": "201"})
    assert over.status_code == 403
    assert over.headers["X-Status-Reason"] == "Max size should not exceed 200. Use offset and limit."
    page = api.get("/Lead", params={"maxSize": "2", "offset": "1", "orderBy": "lastName", "order": "asc"})
    assert page.json()["total"] == 4 and _names(page) == ["Bravo", "Charlie"]
    assert _names(api.get("/Lead", params={"maxSize": "abc"})) == []  # PHP intval("abc") == 0
    more = api.get("/Lead", params={"maxSize": "2"}, headers={"X-No-Total": "true"})
    assert more.json()["total"] == -1
    last = api.get("/Lead", params={"maxSize": "2", "offset": "2"}, headers={"X-No-Total": "true"})
    assert last.json()["total"] == -2
    selected = api.get("/Lead", params={"select": "lastName,status", "maxSize": "1"}).json()["list"][0]
    assert set(selected) == {"id", "lastName", "status"}


def test_crud_partial_updates_and_ignored_input(api: httpx.Client) -> None:
    created = _create(api, lastName="  Dupont ", firstName="Jean", status="Assigned", tenantId="a",
                      bogus="ignored", id="forced-id", createdAt="2000-01-01 00:00:00")
    assert created["lastName"] == "Dupont" and "bogus" not in created
    assert created["id"] != "forced-id" and created["createdAt"] != "2000-01-01 00:00:00"
    lead_id = created["id"]
    patched = api.patch(f"/Lead/{lead_id}", json={"description": "note"}).json()
    assert patched["description"] == "note" and patched["status"] == "Assigned"
    put = api.put(f"/Lead/{lead_id}", json={"status": "In Process"}).json()
    assert put["status"] == "In Process" and put["description"] == "note"
    assert api.put(f"/Lead/{lead_id}", json={"status": "bad"}).status_code == 400
    assert api.delete(f"/Lead/{lead_id}").json() is True
    missing = api.get(f"/Lead/{lead_id}")
    assert missing.status_code == 404
    assert missing.headers["X-Status-Reason"] == f"Record {lead_id} does not exist."
    gone = api.put(f"/Lead/{lead_id}", json={})
    assert gone.status_code == 404 and gone.headers["X-Status-Reason"] == f"Record {lead_id} not found."
    scalar = api.post("/Lead", content=b"42", headers={"Content-Type": "application/json"})
    assert scalar.status_code == 400 and scalar.headers["X-Status-Reason"] == "Body is not a JSON object."


def test_duplicates_409_and_skip_header(api: httpx.Client) -> None:
    first = api.post("/Lead", json={"firstName": "Jean", "lastName": "Dupont", "tenantId": "a"}).json()
    by_name = api.post("/Lead", json={"firstName": "jean", "lastName": "DUPONT", "tenantId": "b"})
    assert by_name.status_code == 409 and by_name.headers["X-Status-Reason"] == "duplicate"
    assert [d["id"] for d in by_name.json()] == [first["id"]] and by_name.json()[0]["tenantId"] == "a"
    api.put(f"/Lead/{first['id']}", json={"emailAddress": "jean@dupont.fr"})
    by_email = api.post("/Lead", json={"lastName": "Other", "emailAddress": "JEAN@dupont.fr"})
    assert by_email.status_code == 409
    skipped = api.post("/Lead", json={"lastName": "Other", "emailAddress": "jean@dupont.fr"},
                       headers={"X-Skip-Duplicate-Check": "true"})
    assert skipped.status_code == 200


def test_duplicates_follow_updates_and_deletes(api: httpx.Client) -> None:
    # The duplicate check reads indexes of names and addresses: they follow every write.
    lead = api.post("/Lead", json={"firstName": "Ana", "lastName": "Lima",
                                   "emailAddress": "ana@lima.pt"}).json()
    api.put(f"/Lead/{lead['id']}", json={"lastName": "Costa", "emailAddress": "ana@costa.pt"})
    assert api.post("/Lead", json={"firstName": "Ana", "lastName": "Lima"}).status_code == 200
    assert api.post("/Lead", json={"lastName": "X", "emailAddress": "ana@lima.pt"}).status_code == 200
    renamed = api.post("/Lead", json={"firstName": "ANA", "lastName": "costa"})
    assert renamed.status_code == 409 and [d["id"] for d in renamed.json()] == [lead["id"]]
    moved = api.post("/Lead", json={"lastName": "Y", "emailAddressData": [
        {"emailAddress": "Ana@Costa.pt", "primary": True}]})
    assert moved.status_code == 409
    assert api.delete(f"/Lead/{lead['id']}").json() is True
    assert api.post("/Lead", json={"firstName": "Ana", "lastName": "Costa"}).status_code == 200


def test_email_equals_matches_any_address(api: httpx.Client) -> None:
    lead = _create(api, lastName="Multi", emailAddressData=[
        {"emailAddress": "main@x.fr", "primary": True}, {"emailAddress": "other@x.fr", "primary": False},
    ])
    assert lead["emailAddress"] == "main@x.fr"
    found = api.get("/Lead", params={"where[0][type]": "equals", "where[0][attribute]": "emailAddress",
                                     "where[0][value]": "other@x.fr"})
    assert _names(found) == ["Multi"]


def test_acl_and_custom_entities(espo: EspoEmulator, api: httpx.Client) -> None:
    from maxcore.testing.espocrm import ApiUser

    espo.add_api_user(ApiUser(api_key="no-create", id="ro", denied={("Lead", "create")}))
    refused = httpx.post(f"{espo.url}/api/v1/Lead", headers={"X-Api-Key": "no-create"},
                         json={"lastName": "x"})
    assert refused.status_code == 403 and refused.headers["X-Status-Reason"] == "No create access."
    missing_name = api.post("/DiagnosticIA", json={"score": 5})
    assert missing_name.headers["X-Status-Reason"].endswith("field: name, type: required.")
    mission = api.post("/MissionMAX", json={"name": "Call back", "type": "Nope"})
    assert mission.headers["X-Status-Reason"].endswith("field: type, type: valid.")
    unknown = api.get("/Nothing")
    assert unknown.status_code == 404
    assert unknown.headers["X-Status-Reason"] == "Controller 'Nothing' does not exist."
