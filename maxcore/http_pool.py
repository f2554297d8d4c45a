"""HTTP clients shared by the tenants of one process.

A TLS context costs ~1 MB and ~30 ms to build, and a connection pool per tenant and
connector multiplies sockets towards the same host. So the process keeps one SSL
context (:func:`ssl_context`) and one client — one connection pool — per upstream
origin and set of options (:class:`HttpClients`), shared by every tenant that calls
that origin. Credentials never live on a shared client: each request carries its
tenant's own (headers, or the URL for providers that put the token in the path).

Clients are leased: :meth:`HttpClients.acquire` returns the origin's client (built on
first use) and counts the lease; :meth:`HttpClients.release` gives it back, and the
last release closes it, as a Starlette lifespan closes what it opened. The pool is
sized for the worker count (:meth:`HttpClients.size_for`): with W workers up to W
requests to one host can be in flight at once. :meth:`HttpClients.client` is the
process's fast path (:mod:`maxcore.http_client`, a thin client on aiohttp's pool, which
the built-in connectors use); :meth:`HttpClients.httpx_client` keeps the ``httpx`` API,
on aiohttp's pool too (:mod:`maxcore.http_transport`), or on httpcore for HTTP/2. Both
were chosen by ``bench/http_clients.py``.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs
import httpx

if TYPE_CHECKING:
    from .http_client import HttpClient, Timeout

# Connections per pool beyond the worker count: health probes, receivers, the audit
# shipper run beside the workers.
POOL_MARGIN = 16
MIN_POOL = 100  # httpx's own default

_SSL: ssl.SSLContext | None = None
_SSL_LOCK = threading.Lock()


def ssl_context() -> ssl.SSLContext:
    """The process's one client TLS context (system/certifi trust, as httpx builds it)."""
    global _SSL
    if _SSL is None:
        with _SSL_LOCK:
            if _SSL is None:
                _SSL = httpx.create_ssl_context()
    return _SSL


def origin(base_url: str) -> str:
    """``scheme://host:port`` of ``base_url`` (the unit a pool serves)."""
    parts = urlsplit(base_url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme, 0)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


@attrs.define
class _Lease:
    client: Any
    users: int = 0


class HttpClients:
    """Shared clients by key (origin + options); see the module's docstring."""

    def __init__(self) -> None:
        self._clients: dict[Hashable, _Lease] = {}
        self._by_client: dict[int, Hashable] = {}
        self.max_connections = MIN_POOL

    def size_for(self, workers: int) -> None:
        """Pools built from now on hold up to ``workers + POOL_MARGIN`` connections."""
        self.max_connections = max(MIN_POOL, workers + POOL_MARGIN)

    def acquire(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The client for ``key``, built by ``build()`` on first use; counted as leased.

        Clients are per event loop too (a connection belongs to the loop that opened it).
        """
        try:
            loop = id(asyncio.get_running_loop())
        except RuntimeError:
            loop = 0
        key = (loop, key)
        lease = self._clients.get(key)
        if lease is None:
            lease = self._clients[key] = _Lease(build())
            self._by_client[id(lease.client)] = key
        lease.users += 1
        return lease.client

    def client(self, base_url: str, *, timeout: Timeout | float,
               headers: dict[str, str] | None = None) -> HttpClient:
        """The shared :class:`~maxcore.http_client.HttpClient` for ``base_url``'s origin
        with these options (``timeout`` in seconds applies to connecting and to each read).

        ``headers`` are the client's defaults (a User-Agent): never credentials.
        """
        from .http_client import HttpClient, Timeout

        limits = timeout if isinstance(timeout, Timeout) else Timeout(read=float(timeout))
        key = ("client", origin(base_url), limits, tuple(sorted((headers or {}).items())))
        size = self.max_connections
        return self.acquire(key, lambda: HttpClient(  # type: ignore[no-any-return]
            timeout=limits, headers=headers, max_connections=size, verify=ssl_context()))

    def httpx_client(self, base_url: str, *, timeout: httpx.Timeout | float,
                     headers: dict[str, str] | None = None, http2: bool = False,
                     follow_redirects: bool = False) -> httpx.AsyncClient:
        """A shared ``httpx.AsyncClient`` for ``base_url``'s origin with these options.

        ``headers`` are the client's defaults (a User-Agent): never credentials.
        """
        key_timeout = timeout if isinstance(timeout, float | int) else (
            timeout.connect, timeout.read, timeout.write, timeout.pool)
        key = ("httpx", origin(base_url), key_timeout, tuple(sorted((headers or {}).items())),
               http2, follow_redirects)
        size = self.max_connections

        def build() -> httpx.AsyncClient:
            limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
            if http2:  # aiohttp speaks HTTP/1.1 only: HTTP/2 keeps httpcore's pool
                return httpx.AsyncClient(timeout=timeout, headers=headers, http2=True,
                                         follow_redirects=follow_redirects, verify=ssl_context(),
                                         limits=limits)
            from .http_transport import PooledAiohttpTransport

            return httpx.AsyncClient(
                timeout=timeout, headers=headers, follow_redirects=follow_redirects,
                transport=PooledAiohttpTransport(verify=ssl_context(), limits=limits))

        return self.acquire(key, build)  # type: ignore[no-any-return]

    async def release(self, client: Any) -> None:
        """Give back a leased client; the last lease closes it."""
        key = self._by_client.get(id(client))
        if key is None:
            return
        lease = self._clients[key]
        lease.users -= 1
        if lease.users > 0:
            return
        del self._clients[key]
        del self._by_client[id(client)]
        await client.aclose()

    def stats(self) -> dict[str, int]:
        return {"clients": len(self._clients),
                "leases": sum(lease.users for lease in self._clients.values())}


# The process's registry: every ConnectorContext reaches it (``context.http``).
HTTP_CLIENTS = HttpClients()
