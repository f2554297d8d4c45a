"""The shared clients' aiohttp transport: real sockets, and the error each failure maps to.

Whether a request may have reached the server decides whether a send can be repeated
safely, so "nothing sent" (connect failures, pool timeouts) and "maybe sent" (a drop or a
silence after the request) must stay apart.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from maxcore.http_pool import HttpClients, ssl_context
from maxcore.http_transport import PooledAiohttpTransport
from tests.core.raw_http import read_request, serve


def client(timeout: float = 5.0, connections: int = 10) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(timeout=timeout, transport=PooledAiohttpTransport(
        verify=ssl_context(), limits=limits))


@pytest.fixture
async def answering() -> AsyncIterator[tuple[str, list[bytes]]]:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                seen.append(await read_request(reader))
                body = b'{"ok": true}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server, url = await serve(handler)
    yield url, seen
    server.close()


async def test_requests_and_answers_go_through_one_pooled_connection(
        answering: tuple[str, list[bytes]]) -> None:
    url, seen = answering
    async with client() as http:
        for n in range(5):
            response = await http.post(url + "/api/v1/Lead", json={"n": n},
                                       headers={"X-Api-Key": "k"}, params={"a": "1"})
            assert response.status_code == 200 and response.json() == {"ok": True}
    assert len(seen) == 5
    assert seen[0].startswith(b"POST /api/v1/Lead?a=1 HTTP/1.1") and b'{"n":0}' in seen[0].replace(b" ", b"")
    assert b"x-api-key: k" in seen[0].lower()


async def test_a_refused_connection_is_connect_error_nothing_was_sent() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        async with client() as http:
            with pytest.raises(httpx.ConnectError) as caught:
                await http.get(f"http://127.0.0.1:{port}/")
    assert caught.value.request.url.port == port


async def test_a_drop_after_the_request_is_remote_protocol_error_maybe_sent() -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    server, url = await serve(drop)
    try:
        async with client() as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.post(url + "/send", json={"text": "hi"})
    finally:
        server.close()


async def test_silence_after_the_request_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    server, url = await serve(silent)
    try:
        async with client(timeout=0.3) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post(url + "/send", json={})
    finally:
        server.close()


async def test_a_body_cut_short_is_a_read_error() -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await writer.drain()
        writer.close()

    server, url = await serve(short)
    try:
        async with client() as http:
            with pytest.raises(httpx.TransportError) as caught:
                await http.get(url + "/")
        assert isinstance(caught.value, httpx.ReadError | httpx.RemoteProtocolError)
    finally:
        server.close()


@pytest.mark.parametrize("answer", [b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"],
                         ids=["not-http", "bad-header"])
async def test_an_unparsable_answer_is_remote_protocol_error_without_the_url(answer: bytes) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server, url = await serve(broken)
    try:
        async with client() as http:
            with pytest.raises(httpx.RemoteProtocolError) as caught:
                await http.get(url + "/waInstance1/getState/secret-token-in-the-path")
        assert "secret-token-in-the-path" not in str(caught.value)
    finally:
        server.close()


async def test_waiting_for_a_pool_slot_past_the_timeout_is_connect_timeout() -> None:
    hold = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await hold.wait()

    server, url = await serve(slow)
    try:
        async with client(timeout=0.3, connections=1) as http:
            first = asyncio.create_task(http.get(url + "/first", timeout=5))
            await asyncio.sleep(0.1)
            with pytest.raises(httpx.ConnectTimeout):
                await http.get(url + "/second", timeout=httpx.Timeout(5, pool=0.3))
            hold.set()
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
    finally:
        server.close()


async def test_shared_clients_use_the_transport_and_http2_keeps_httpcore() -> None:
    clients = HttpClients()
    plain = clients.httpx_client("http://crm.example:8080/api", timeout=5.0)
    assert isinstance(plain._transport, PooledAiohttpTransport)
    same = clients.httpx_client("http://crm.example:8080/other", timeout=5.0)
    assert same is plain
    two = clients.httpx_client("https://db.example", timeout=5.0, http2=True)
    assert isinstance(two._transport, httpx.AsyncHTTPTransport)
    for shared in (plain, same, two):
        await clients.release(shared)
    assert clients.stats() == {"clients": 0, "leases": 0}
