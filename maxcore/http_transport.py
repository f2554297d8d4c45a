"""The transport under the shared ``httpx`` clients: aiohttp's pool and parser.

Chosen by ``bench/http_clients.py`` (figures in ``bench/RESULTS.md``): with 64 requests
in flight to one host, ``httpx`` on its default transport (httpcore 1.0) spent 7.4 ms of
CPU per request, most of it scanning every pooled connection for every queued request;
the same ``httpx`` API on ``httpx_aiohttp``'s transport spent 0.46 ms, a bare aiohttp
session 0.19 ms. Connectors keep the ``httpx`` API and exceptions; only the pool changes.

``httpx_aiohttp`` maps aiohttp's errors coarsely (a server that drops the connection
after the request was sent becomes ``ConnectTimeout``). Whether a request may have
reached the server decides whether a send can be repeated safely, so this module maps
them again from the aiohttp cause: connect failures and connect/pool timeouts are
``ConnectError`` / ``ConnectTimeout`` (nothing sent); a drop or a read timeout after
sending is ``RemoteProtocolError`` / ``ReadError`` / ``ReadTimeout`` (maybe sent).
The helpers take the ``httpx`` module they raise for (``httpx``, or ``httpx2`` for a
plugin whose SDK speaks it); :mod:`maxcore.http_client` raises the same mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def transport_error(cause: BaseException, http: ModuleType = httpx) -> Exception | None:
    """The ``http`` (``httpx`` or ``httpx2``) error saying what an aiohttp failure means,
    or None if ``cause`` is not a transport failure."""
    message = str(cause) or type(cause).__name__
    kind: Any = None
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        kind = http.ConnectTimeout  # no connection (or pool slot) in time: not sent
    elif isinstance(cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        kind = http.ReadTimeout
    elif isinstance(cause, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        kind = http.ProxyError
    elif isinstance(cause, aiohttp.ClientConnectorError):
        kind = http.ConnectError  # DNS, refused, TLS handshake: not sent
    elif isinstance(cause, aiohttp.ServerDisconnectedError):
        kind = http.RemoteProtocolError
    elif isinstance(cause, aiohttp.InvalidURL):
        kind = http.UnsupportedProtocol
    elif isinstance(cause, aiohttp.ClientResponseError):
        # An answer aiohttp cannot parse (a bad status line or header): the request was
        # sent. Its ``message`` only: ``str()`` quotes the URL, which may hold a token.
        kind, message = http.RemoteProtocolError, cause.message or type(cause).__name__
    elif isinstance(cause, aiohttp.ClientPayloadError | aiohttp.ClientConnectionError | OSError):
        kind = http.ReadError
    return None if kind is None else kind(message)


@contextlib.contextmanager
def precise_errors(http: ModuleType = httpx, request: Any = None) -> Iterator[None]:
    """Re-raise aiohttp failures (raw, or coarsely mapped by ``httpx_aiohttp``) as the
    ``http`` error :func:`transport_error` names."""
    try:
        yield
    except (TimeoutError, http.TransportError, aiohttp.ClientError, OSError) as exc:
        cause = exc.__cause__ if isinstance(exc, http.TransportError) and exc.__cause__ else exc
        mapped = transport_error(cause, http)
        if mapped is None:
            raise
        if request is not None:
            mapped.request = request  # type: ignore[attr-defined]
        raise mapped from cause


@functools.cache
def _stream_class(http: ModuleType) -> type:
    class MappedStream(http.AsyncByteStream):  # type: ignore[name-defined,misc]
        """A response body whose read errors are mapped like the request's."""

        def __init__(self, stream: Any) -> None:
            self._stream = stream

        async def __aiter__(self) -> AsyncIterator[bytes]:
            with precise_errors(http):
                async for chunk in self._stream:
                    yield chunk

        async def aclose(self) -> None:
            await self._stream.aclose()

    return MappedStream


def with_mapped_stream(response: Any, http: ModuleType = httpx) -> Any:
    """``response`` with its body's read errors mapped by :func:`precise_errors`."""
    response.stream = _stream_class(http)(response.stream)
    return response


class PooledAiohttpTransport(AiohttpTransport):
    """``httpx_aiohttp``'s transport with the error mapping above; one aiohttp session
    (one pool) per transport, opened on first request in the running event loop."""

    def __init__(self, *, verify: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=verify, limits=limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with precise_errors(httpx, request):
            response = await super().handle_async_request(request)
        return with_mapped_stream(response)  # type: ignore[no-any-return]
