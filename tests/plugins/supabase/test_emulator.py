"""The PostgREST emulator answers like PostgREST: ranges and counts, filters, upserts,
error JSON and statuses, JWT and apikey checks, the READ ONLY transaction of GETs."""

from __future__ import annotations

import time

import httpx
import pytest

from maxcore.testing.postgrest_emulator import PostgrestEmulator, make_jwt

from .conftest import JWT_SECRET


def rest(emulator: PostgrestEmulator, token: str | None = None) -> httpx.Client:
    token = token or emulator.service_key
    return httpx.Client(base_url=emulator.url + "/rest/v1", timeout=5,
                        headers={"apikey": emulator.service_key, "Authorization": f"Bearer {token}"})


def seed(client: httpx.Client, n: int = 5) -> None:
    rows = [{"tenant_id": "a", "key": f"k{i}", "result": {"i": i}} for i in range(n)]
    rows.append({"tenant_id": "a", "key": 'odd,"key"', "result": {}})
    response = client.post("/processed_messages", json=rows, headers={"Prefer": "return=minimal"})
    assert response.status_code == 201 and response.content == b""


def test_range_count_and_partial_content(emulator: PostgrestEmulator) -> None:
    with rest(emulator) as client:
        seed(client)
        page = client.get("/processed_messages", params={
            "select": "key", "tenant_id": "eq.a", "order": "key.desc", "limit": "2", "offset": "1"},
            headers={"Prefer": "count=exact"})
        assert page.status_code == 206
        assert page.headers["content-range"] == "1-2/6"
        assert [r["key"] for r in page.json()] == ["k4", "k3"]  # after 'odd,"key"'
        whole = client.get("/processed_messages", params={"tenant_id": "eq.a"},
                           headers={"Prefer": "count=exact"})
        assert whole.status_code == 200 and whole.headers["content-range"] == "0-5/6"
        none = client.get("/processed_messages", params={"tenant_id": "eq.zzz"})
        assert none.json() == [] and none.headers["content-range"] == "*/*"


def test_in_filter_with_quoted_values_and_negation(emulator: PostgrestEmulator) -> None:
    with rest(emulator) as client:
        seed(client)
        found = client.get("/processed_messages", params={
            "select": "key", "tenant_id": "eq.a", "key": 'in.(k1,"odd,\\"key\\"")', "order": "key"})
        assert sorted(r["key"] for r in found.json()) == ['k1', 'odd,"key"']
        others = client.get("/processed_messages", params={
            "select": "key", "tenant_id": "eq.a", "key": "not.like.k*"})
        assert [r["key"] for r in others.json()] == ['odd,"key"']


def test_upsert_merge_and_ignore(emulator: PostgrestEmulator) -> None:
    with rest(emulator) as client:
        row = {"tenant_id": "a", "key": "k", "result": {"v": 1}}
        params = {"on_conflict": "tenant_id,key"}
        merge = {"Prefer": "return=representation,resolution=merge-duplicates"}
        assert client.post("/processed_messages", json=row, params=params, headers=merge).status_code == 201
        updated = client.post("/processed_messages", json={**row, "result": {"v": 2}}, params=params,
                              headers=merge)
        assert updated.json()[0]["result"] == {"v": 2}
        ignored = client.post("/processed_messages", json={**row, "result": {"v": 3}}, params=params,
                              headers={"Prefer": "return=representation,resolution=ignore-duplicates"})
        assert ignored.status_code == 201 and ignored.json() == []
        duplicate = client.post("/processed_messages", json=row)
        assert duplicate.status_code == 409
        assert duplicate.json()["code"] == "23505" and set(duplicate.json()) == {
            "code", "message", "details", "hint"}


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), [
    ("GET", "/nope", {}, 404, "PGRST205"),
    ("GET", "/max_logs", {"params": {"nope": "eq.1", "tenant_id": "eq.a"}}, 400, "42703"),
    ("GET", "/max_logs", {"params": {"tenant_id": "zz.a"}}, 400, "PGRST100"),
    ("POST", "/max_logs", {"json": {"tenant_id": "a", "action": "x", "nope": 1}}, 400, "PGRST204"),
    ("POST", "/max_logs", {"content": b"{not json", "headers": {"content-type": "application/json"}},
     400, "PGRST102"),
    ("POST", "/max_logs", {"json": {"tenant_id": "a", "action": None}}, 400, "23502"),
    ("DELETE", "/sessions", {}, 400, "21000"),
    ("POST", "/rpc/nope", {"json": {}}, 404, "PGRST202"),
])
def test_errors_follow_postgrest(emulator: PostgrestEmulator, method: str, path: str,
                                 kwargs: dict[str, object], status: int, code: str) -> None:
    emulator.require_filter = None
    try:
        with rest(emulator) as client:
            response = client.request(method, path, **kwargs)
    finally:
        emulator.require_filter = "tenant_id"
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def test_singular_response_needs_exactly_one_row(emulator: PostgrestEmulator) -> None:
    with rest(emulator) as client:
        seed(client, 2)
        accept = {"Accept": "application/vnd.pgrst.object+json"}
        many = client.get("/processed_messages", params={"tenant_id": "eq.a"}, headers=accept)
        assert many.status_code == 406 and many.json()["code"] == "PGRST116"
        one = client.get("/processed_messages", params={"tenant_id": "eq.a", "key": "eq.k0"}, headers=accept)
        assert one.json()["key"] == "k0"


def test_rls_through_http_with_status_mapping(emulator: PostgrestEmulator) -> None:
    with rest(emulator) as client:
        seed(client)
    tenant_b = make_jwt(JWT_SECRET, {"role": "authenticated", "app_metadata": {"tenant_id": "b"}})
    with rest(emulator, tenant_b) as client:
        assert client.get("/processed_messages").json() == []
        refused = client.post("/processed_messages", json={"tenant_id": "a", "key": "x"})
        assert refused.status_code == 403 and refused.json()["code"] == "42501"
        appended = client.delete("/max_logs", params={"tenant_id": "eq.b"})
        assert appended.status_code == 403 and "permission denied" in appended.json()["message"]


def test_auth_failures(emulator: PostgrestEmulator) -> None:
    url = emulator.url + "/rest/v1/max_logs"
    assert httpx.get(url).status_code == 401  # no apikey: the gateway refuses
    assert "code" not in httpx.get(url, headers={"apikey": "wrong"}).json()
    other_secret = make_jwt("another-secret-of-32-characters-min!", {"role": "service_role"})
    bad = httpx.get(url, headers={"apikey": emulator.anon_key, "Authorization": f"Bearer {other_secret}"})
    assert bad.status_code == 401 and bad.json()["code"] == "PGRST301"
    expired = make_jwt(JWT_SECRET, {"role": "authenticated", "exp": int(time.time()) - 10})
    late = httpx.get(url, headers={"apikey": emulator.anon_key, "Authorization": f"Bearer {expired}"})
    assert late.status_code == 401 and late.json()["code"] == "PGRST303"
    anon = httpx.get(url, headers={"apikey": emulator.anon_key})  # no JWT: the anon role
    assert anon.status_code == 401 and anon.json()["code"] == "42501"


def test_rpc_and_read_only_get(emulator: PostgrestEmulator) -> None:
    with rest(emulator) as client:
        assert client.post("/rpc/maxcore_schema_version", json={}).json() == 2
        assert client.get("/rpc/maxcore_schema_version").json() == 2
    # A GET runs in a READ ONLY transaction, as PostgREST's does.
    last = emulator.requests[-1]
    assert last.method == "GET" and last.role == "service_role"


def test_injected_faults(emulator: PostgrestEmulator) -> None:
    with rest(emulator) as client:
        emulator.fail_next(503)
        assert client.get("/max_logs", params={"tenant_id": "eq.a"}).status_code == 503
        emulator.fail_next(520, body="<html>origin error</html>")
        assert client.get("/max_logs", params={"tenant_id": "eq.a"}).status_code == 520
        assert client.get("/max_logs", params={"tenant_id": "eq.a"}).status_code == 200
