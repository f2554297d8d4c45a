"""Shared HTTP clients: one TLS context, one pool per upstream origin, leased and closed
by the last user; tenants on one upstream share it, each request with its own credentials."""

from __future__ import annotations

from pathlib import Path

import httpx

from maxcore.connectors import ConnectorContext
from maxcore.http_pool import HttpClients, origin, ssl_context
from maxcore.testing.espocrm import ApiUser, EspoEmulator
from maxcore.testing.server import ServerThread


def test_one_ssl_context_for_the_process() -> None:
    assert ssl_context() is ssl_context()


def test_origin_names_scheme_host_and_port() -> None:
    assert origin("https://API.example.com/v1/x") == "https://api.example.com:443"
    assert origin("http://127.0.0.1:8080/api") == "http://127.0.0.1:8080"


async def test_leases_share_one_client_until_the_last_release() -> None:
    clients = HttpClients()
    clients.size_for(256)
    a = clients.httpx_client("http://127.0.0.1:9/a", timeout=5.0)
    b = clients.httpx_client("http://127.0.0.1:9/b", timeout=5.0)
    other = clients.httpx_client("http://127.0.0.1:10/", timeout=5.0)
    assert a is b and a is not other
    assert a._transport.limits.max_connections == 256 + 16  # type: ignore[attr-defined]
    await clients.release(a)
    assert not b.is_closed
    await clients.release(b)
    assert b.is_closed and not other.is_closed
    await clients.release(other)
    assert clients.stats() == {"clients": 0, "leases": 0}


async def test_two_espocrm_tenants_share_a_pool_with_their_own_keys(tmp_path: Path) -> None:
    from maxcore_espocrm.config import EspoCRMConfig
    from maxcore_espocrm.crm import EspoCRM

    espo = EspoEmulator()
    server = ServerThread(espo.app).start()
    espo.server = server
    try:
        clients = HttpClients()
        crms = []
        for tenant in ("acme", "globex"):
            key = f"key-of-{tenant}-0123456789"
            espo.add_api_user(ApiUser(api_key=key))
            context = ConnectorContext(tenant=tenant, data_dir=tmp_path, http=clients)
            crms.append(EspoCRM(EspoCRMConfig(url=espo.url, api_key=key), context))
        for crm in crms:
            await crm.open()
        assert crms[0].client.http is crms[1].client.http
        assert clients.stats() == {"clients": 1, "leases": 2}
        for crm in crms:
            assert (await crm.health()).status != "down"
        for crm in crms:
            await crm.close()
        assert clients.stats() == {"clients": 0, "leases": 0}
    finally:
        server.stop()


async def test_a_released_client_is_not_reused_closed() -> None:
    clients = HttpClients()
    first = clients.httpx_client("http://127.0.0.1:9/", timeout=1.0)
    await clients.release(first)
    again = clients.httpx_client("http://127.0.0.1:9/", timeout=1.0)
    assert again is not first and isinstance(again, httpx.AsyncClient) and not again.is_closed
    await clients.release(again)
