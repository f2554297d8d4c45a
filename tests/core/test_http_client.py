"""The built-in connectors' HTTP client (``maxcore.http_client``) over real sockets.

What the connectors rely on from ``httpx``: the body and query they build arrive as
built, redirects come back as they are, headers read case-insensitively, and each
failure is the ``httpx`` error saying whether the request may have reached the server
("nothing sent": ``ConnectError`` / ``ConnectTimeout``; "maybe sent": ``ReadTimeout``,
``RemoteProtocolError``, ``ReadError``), since a send is repeated only on the first.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlsplit

import attrs
import httpx
import pytest

from maxcore.http_client import HttpClient, HttpResponse, Timeout
from maxcore.http_pool import HttpClients
from tests.core.raw_http import read_request, serve

NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
MAYBE_SENT = (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError)


@attrs.define
class Seen:
    """A request as the server read it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    @classmethod
    def parse(cls, raw: bytes) -> Seen:
        head, _, body = raw.partition(b"\r\n\r\n")
        first, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = first.split(" ")
        headers = [(name.strip().lower(), value.strip())
                   for name, _, value in (line.partition(":") for line in lines)]
        return cls(method, target, headers, body)

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.target).query, keep_blank_values=True)


ANSWERS = {
    "/redirect": b"HTTP/1.1 302 Found\r\nLocation: /json\r\nContent-Length: 0\r\n\r\n",
    "/latin": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
              b"Content-Length: 4\r\n\r\ncaf\xe9",
    "/bogus-charset": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=no-such-codec\r\n"
                      b"Content-Length: 5\r\n\r\ncaf\xc3\xa9",
    "/not-json": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 9\r\n\r\nnot json!",
}


def json_answer(status: int = 200) -> bytes:
    body = json.dumps({"ok": True, "name": "Zoë"}, ensure_ascii=False).encode()
    return (b"HTTP/1.1 %d X\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"X-Status-Reason: Duplicate\r\nRetry-After: 7\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body))


@attrs.define
class Upstream:
    url: str
    seen: list[Seen]
    connections: list[asyncio.Event]  # one per connection, set when the client closes it


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """Answers every request on a keep-alive connection: the canned answer of its path,
    else a JSON body."""
    state = Upstream("", [], [])

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        closed = asyncio.Event()
        state.connections.append(closed)
        try:
            while True:
                seen = Seen.parse(await read_request(reader))
                state.seen.append(seen)
                writer.write(ANSWERS.get(urlsplit(seen.target).path) or json_answer())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
        finally:
            closed.set()

    server, state.url = await serve(handler)
    yield state
    server.close()


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient(timeout=Timeout(read=5.0), headers={"User-Agent": "maxcore-test"})
    yield client
    await client.aclose()


async def test_json_is_sent_compact_as_application_json(upstream: Upstream, http: HttpClient) -> None:
    payload = {"name": "Zoë", "tags": [1, 2], "nested": {"a": None}}
    response = await http.request("POST", upstream.url + "/api/v1/Lead", json=payload,
                                  headers={"X-Api-Key": "k"})
    assert response.status_code == 200
    [seen] = upstream.seen
    assert seen.method == "POST" and seen.target == "/api/v1/Lead"
    assert seen.body == '{"name":"Zoë","tags":[1,2],"nested":{"a":null}}'.encode()
    assert seen.header("content-type") == ["application/json"]
    assert seen.header("content-length") == [str(len(seen.body))]
    assert seen.header("x-api-key") == ["k"] and seen.header("user-agent") == ["maxcore-test"]


async def test_a_callers_content_type_replaces_the_json_one(upstream: Upstream, http: HttpClient) -> None:
    await http.request("PUT", upstream.url + "/x", json=[1],
                       headers={"content-type": "application/merge-patch+json"})
    assert upstream.seen[0].header("content-type") == ["application/merge-patch+json"]


async def test_no_content_type_is_made_up_for_other_bodies(upstream: Upstream, http: HttpClient) -> None:
    await http.request("POST", upstream.url + "/raw", content=b"\x00raw")
    await http.request("POST", upstream.url + "/empty")
    await http.request("POST", upstream.url + "/typed", content=b"a=1",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    raw, empty, typed = upstream.seen
    assert raw.body == b"\x00raw" and raw.header("content-type") == []  # as httpx: none
    assert empty.header("content-type") == [] and empty.header("content-length") == ["0"]
    assert typed.header("content-type") == ["application/x-www-form-urlencoded"]


async def test_params_as_pairs_arrive_decoded_in_order(upstream: Upstream, http: HttpClient) -> None:
    params = [("maxSize", "200"), ("where[0][type]", "equals"),
              ("where[0][attribute]", "phoneNumber"), ("where[0][value]", "+49 170 1234567"),
              ("where[1][value][]", "a&b=c"), ("where[1][value][]", "Zoë/?#%")]
    await http.request("GET", upstream.url + "/api/v1/Lead", params=params)
    await http.request("GET", upstream.url + "/api/v1/Lead?select=id", params=params[:1])
    await http.request("GET", upstream.url + "/poll", params={"minutes": 5, "ratio": 0.5})
    pairs, merged, mapping = upstream.seen
    assert urlsplit(pairs.target).path == "/api/v1/Lead" and pairs.query == params
    assert merged.query == [("select", "id"), ("maxSize", "200")]
    assert mapping.query == [("minutes", "5"), ("ratio", "0.5")]


async def test_redirects_come_back_unfollowed(upstream: Upstream, http: HttpClient) -> None:
    response = await http.request("GET", upstream.url + "/redirect")
    assert response.status_code == 302 and response.headers["location"] == "/json"
    assert [seen.target for seen in upstream.seen] == ["/redirect"]


async def test_response_headers_text_and_json(upstream: Upstream, http: HttpClient) -> None:
    response = await http.request("GET", upstream.url + "/json")
    assert isinstance(response, HttpResponse)
    for name in ("X-Status-Reason", "x-status-reason", "X-STATUS-REASON"):
        assert response.headers[name] == "Duplicate"
    assert response.headers.get("retry-after") == "7" and response.headers.get("Missing") is None
    assert response.json() == {"ok": True, "name": "Zoë"}
    assert response.text == '{"ok": true, "name": "Zoë"}' and response.content == response.text.encode()


async def test_text_uses_the_declared_charset_else_utf8(upstream: Upstream, http: HttpClient) -> None:
    assert (await http.request("GET", upstream.url + "/latin")).text == "café"
    assert (await http.request("GET", upstream.url + "/bogus-charset")).text == "café"
    with pytest.raises(json.JSONDecodeError):
        (await http.request("GET", upstream.url + "/not-json")).json()


async def test_requests_share_one_keep_alive_connection(upstream: Upstream, http: HttpClient) -> None:
    for n in range(5):
        assert (await http.request("POST", upstream.url + "/send", json={"n": n})).status_code == 200
    assert len(upstream.seen) == 5 and len(upstream.connections) == 1


async def test_a_refused_connection_is_connect_error_nothing_was_sent(http: HttpClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(httpx.ConnectError) as caught:
            await http.request("POST", f"http://127.0.0.1:{port}/send", json={"text": "hi"})
    assert not isinstance(caught.value, MAYBE_SENT)
    assert isinstance(caught.value.__cause__, OSError)


async def test_a_drop_after_the_request_is_remote_protocol_error_maybe_sent(http: HttpClient) -> None:
    received: list[bytes] = []

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await read_request(reader))
        writer.close()

    server, url = await serve(drop)
    try:
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await http.request("POST", url + "/send", json={"text": "hi"})
    finally:
        server.close()
    assert not isinstance(caught.value, NOTHING_SENT)
    assert len(received) == 1 and received[0].endswith(b'{"text":"hi"}')  # it was sent


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",  # body cut short
    b"garbage\r\n\r\n",  # not HTTP
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",  # a header aiohttp refuses
], ids=["cut-short", "not-http", "bad-header"])
async def test_a_broken_answer_is_a_maybe_sent_transport_error(http: HttpClient, answer: bytes) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server, url = await serve(broken)
    try:
        with pytest.raises(httpx.TransportError) as caught:
            await http.request("GET", url + "/")
    finally:
        server.close()
    assert isinstance(caught.value, httpx.ReadError | httpx.RemoteProtocolError)


async def test_silence_past_the_read_timeout_is_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    server, url = await serve(silent)
    client = HttpClient(timeout=Timeout(read=0.3))
    started = time.monotonic()
    try:
        with pytest.raises(httpx.ReadTimeout) as caught:
            await client.request("POST", url + "/send", json={})
    finally:
        await client.aclose()
        server.close()
    assert 0.25 < time.monotonic() - started < 2
    assert not isinstance(caught.value, NOTHING_SENT)


async def test_a_per_call_timeout_overrides_the_read_timeout() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(reader)
                await asyncio.sleep(0.6)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server, url = await serve(slow)
    client = HttpClient(timeout=Timeout(read=0.3, connect=1.0))
    try:
        response = await client.request("GET", url + "/poll", timeout=2.0)
        assert response.status_code == 200 and response.text == "ok"
        with pytest.raises(httpx.ReadTimeout):
            await client.request("GET", url + "/poll")  # the client's own 0.3 s again
    finally:
        await client.aclose()
        server.close()


async def test_waiting_for_a_pool_slot_past_the_connect_timeout_is_connect_timeout() -> None:
    hold, arrived = asyncio.Event(), asyncio.Event()
    received: list[bytes] = []

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await read_request(reader))
        arrived.set()
        await hold.wait()

    server, url = await serve(held)
    client = HttpClient(timeout=Timeout(read=5.0, connect=0.3), max_connections=1)
    try:
        first = asyncio.create_task(client.request("GET", url + "/first"))
        await asyncio.wait_for(arrived.wait(), 2)  # the first holds the only connection
        with pytest.raises(httpx.ConnectTimeout):
            await client.request("POST", url + "/second", json={})
        assert len(received) == 1  # the second never reached the server
        hold.set()
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
    finally:
        await client.aclose()
        server.close()


async def test_shared_clients_by_origin_and_options_closed_by_the_last_release(
        upstream: Upstream) -> None:
    clients = HttpClients()
    headers = {"User-Agent": "maxcore-test"}
    a = clients.client(upstream.url + "/api/v1", timeout=5.0, headers=headers)
    b = clients.client(upstream.url + "/other", timeout=5.0, headers=dict(headers))
    assert a is b and isinstance(a, HttpClient) and a.timeout == Timeout(read=5.0)
    others = [
        clients.client(upstream.url, timeout=6.0, headers=headers),
        clients.client(upstream.url, timeout=Timeout(read=5.0, connect=10.0), headers=headers),
        clients.client(upstream.url, timeout=5.0, headers={"User-Agent": "another"}),
        clients.client(upstream.url, timeout=5.0),
        clients.client("http://127.0.0.1:9", timeout=5.0, headers=headers),
    ]
    assert len({id(a), *map(id, others)}) == 6
    assert clients.client(upstream.url, timeout=Timeout(read=5.0, connect=10.0),
                          headers=headers) is others[1]
    assert clients.stats() == {"clients": 6, "leases": 8}

    assert (await a.request("GET", upstream.url + "/json")).status_code == 200
    [connection] = upstream.connections
    await clients.release(a)
    await asyncio.sleep(0.05)
    assert not connection.is_set()  # b still holds the client: its pool stays open
    assert (await b.request("GET", upstream.url + "/json")).status_code == 200
    assert len(upstream.connections) == 1
    await clients.release(b)
    await asyncio.wait_for(connection.wait(), 2)  # the last release closed the pool
    for other in others:
        await clients.release(other)
    await clients.release(others[1])
    assert clients.stats() == {"clients": 0, "leases": 0}

    again = clients.client(upstream.url, timeout=5.0, headers=headers)
    assert again is not a  # a fresh client, not the closed one
    assert (await again.request("GET", upstream.url + "/json")).status_code == 200
    await clients.release(again)
