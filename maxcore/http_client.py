"""A small HTTP client on aiohttp's pool: what the built-in connectors call upstreams with.

``bench/http_clients.py`` decided it (figures in ``bench/RESULTS.md``): with 64 requests
in flight to one host, a bare aiohttp session spends about 0.2 ms of CPU per request,
the ``httpx`` API on the same pool 0.5 ms, the OpenAI SDK on it 1.2 ms. A message makes
six upstream calls, so the API on top of the pool is most of a message's CPU. This
client is the least that the connectors need: one call, the whole body read, a response
with ``status_code``, case-insensitive ``headers``, ``content``, ``text`` and ``json()``.

Failures are raised as ``httpx``'s transport errors, mapped by
:func:`maxcore.http_transport.transport_error` so that "nothing was sent"
(``ConnectError``, ``ConnectTimeout``) stays apart from "it may have been sent"
(``ReadTimeout``, ``RemoteProtocolError``, ``ReadError``): whether a send may be repeated
depends on it. Connectors written against ``httpx`` keep their ``except`` clauses.

One :class:`HttpClient` serves one origin for every tenant calling it
(:meth:`maxcore.http_pool.HttpClients.client`): credentials go in each request's
headers or URL, never on the client. Redirects are not followed (as ``httpx``), and no
``Content-Type`` is made up for a body that is not JSON (aiohttp would send
``application/octet-stream``; ``httpx`` sends none).
"""

from __future__ import annotations

import asyncio
import codecs
import json as jsonlib
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import attrs
import httpx
from multidict import CIMultiDictProxy

from .http_transport import transport_error

# Query values as yarl takes them (``bool`` is refused: write "true" / "false").
ParamValue = str | int | float
Params = Mapping[str, ParamValue] | Sequence[tuple[str, ParamValue]]
_encode = jsonlib.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
JSON_HEADERS = {"Content-Type": "application/json"}
_NO_AUTO_CONTENT_TYPE = ("Content-Type",)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # aiohttp's, where it adds one


@attrs.frozen
class HttpResponse:
    """A response read to its end."""

    status_code: int
    headers: CIMultiDictProxy[str]
    content: bytes
    charset: str | None = None

    @property
    def text(self) -> str:
        """The body decoded with its declared charset, UTF-8 if none or an unknown one
        (as ``httpx``); undecodable bytes replaced."""
        return self.content.decode(_known_charset(self.charset), errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON from its bytes (UTF-8/16/32 detected, as ``httpx``):
        ``json.JSONDecodeError`` or ``UnicodeDecodeError`` if it is not."""
        return jsonlib.loads(self.content)


def _known_charset(charset: str | None) -> str:
    if charset is None:
        return "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        return "utf-8"
    return charset


@attrs.frozen
class Timeout:
    """Seconds: ``connect`` to get a connection (from the pool or a new one), ``read``
    between two reads of the answer, ``total`` for the whole call (None: unbounded)."""

    read: float
    connect: float | None = None
    total: float | None = None

    def client_timeout(self) -> aiohttp.ClientTimeout:
        connect = self.connect if self.connect is not None else self.read
        return aiohttp.ClientTimeout(total=self.total, connect=connect, sock_connect=connect,
                                     sock_read=self.read)


class HttpClient:
    """One pool (an ``aiohttp.ClientSession``) for one origin, opened in the running loop
    on first use."""

    def __init__(self, *, timeout: Timeout, headers: Mapping[str, str] | None = None,
                 max_connections: int = 100, verify: ssl.SSLContext | None = None) -> None:
        self.timeout = timeout
        self._client_timeout = timeout.client_timeout()
        self._headers = dict(headers or {})
        self._limit = max_connections
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=0,
                                         ssl=self._verify if self._verify is not None else True)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._client_timeout, headers=self._headers,
            auto_decompress=True, raise_for_status=False)
        return self._session

    def _timeout_for(self, read: float | None) -> aiohttp.ClientTimeout:
        if read is None:
            return self._client_timeout
        timeout = self._timeouts.get(read)
        if timeout is None:
            timeout = self._timeouts[read] = attrs.evolve(self.timeout, read=read).client_timeout()
        return timeout

    async def request(
        self, method: str, url: str, *, params: Params | None = None, json: Any = None,
        content: bytes | None = None, headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpResponse:
        """Send one request and read the whole answer; ``timeout`` overrides the read timeout."""
        session = self._session if self._session is not None else self._open()
        skip: tuple[str, ...] | None = None
        if json is not None:
            content = _encode(json).encode()
            headers = {**JSON_HEADERS, **headers} if headers else JSON_HEADERS
        elif content is not None or method.upper() in _BODY_METHODS:
            skip = _NO_AUTO_CONTENT_TYPE  # the caller's own Content-Type is still sent
        try:
            async with session.request(
                method, url, params=params, data=content, headers=headers,
                allow_redirects=False, timeout=self._timeout_for(timeout),
                skip_auto_headers=skip,
            ) as response:
                body = await response.read()
                return HttpResponse(response.status, response.headers, body, response.charset)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            mapped = transport_error(exc, httpx)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            # aiohttp's advice: let the transports' close callbacks run before the loop ends.
            await asyncio.sleep(0)
