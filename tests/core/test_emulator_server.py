"""The server every contract emulator runs on: own port, connections that stay reusable."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from maxcore.testing.server import ServerThread


async def refuse_early(request: Request) -> JSONResponse:
    # Answers without reading the body, as a 404/401 route of an emulator would.
    return JSONResponse({"error": "not found"}, status_code=404)


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


APP = Starlette(routes=[Route("/early", refuse_early, methods=["PUT"]), Route("/ok", ok)])


def test_early_answers_keep_pooled_connections_usable() -> None:
    body = b"x" * 256 * 1024  # larger than any socket buffer: unread bytes would remain
    with ServerThread(APP) as server, httpx.Client(base_url=server.url) as client:
        for _ in range(50):
            assert client.put("/early", content=body).status_code == 404
            assert client.get("/ok").json() == {"ok": True}


def test_servers_bind_their_own_ports_in_parallel() -> None:
    servers = [ServerThread(APP).start() for _ in range(8)]
    try:
        assert len({s.port for s in servers}) == 8 and all(s.port > 0 for s in servers)
        for server in servers:
            assert httpx.get(server.url + "/ok").status_code == 200
    finally:
        for server in servers:
            server.stop()
