"""The HTTP application: health, webhooks, and the routes plugins add.

``create_app(runtime)`` is the app factory; its lifespan starts the runtime (opens
every tenant's connectors, starts the inbox workers) and stops it on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Mapping
from typing import Any

from loguru import logger
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .connectors import ChannelBase, WebhookRequest
from .errors import WebhookError
from .inbox import InboxClosed, InboxFull
from .routing import MAX_ROUTE_KEY_CHARS, RouteSource, Routing
from .runtime import Runtime
from .webhooks import UNAUTHORISED, UnprocessableBody, dead_letter, raw_text

RETRY_AFTER_STOPPING = "10"
# The whole body must arrive within this: a sender dripping bytes cannot hold a
# connection (and its memory) for longer.
BODY_TIMEOUT_S = 30.0
# An oversized body is read and thrown away up to this size before the 413, so the
# client, still sending, reads the answer instead of a connection reset; past it the
# connection is closed.
DRAIN_LIMIT_BYTES = 16 << 20
MAX_QUERY_CHARS = 2048


def _error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


class BodyTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused once it exceeds ``limit`` bytes (declared or streamed).

    A refused body is drained (up to DRAIN_LIMIT_BYTES) before BodyTooLarge is raised,
    unless the client waits for ``100 Continue`` and so has not sent it.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        expects = request.headers.get("expect", "").lower() == "100-continue"
        if not expects and int(declared) <= DRAIN_LIMIT_BYTES:
            await _drain(request)
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await _drain(request, size)
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request: Request, size: int = 0) -> None:
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_LIMIT_BYTES:
            return


def _authorised(request: Request, token: str | None) -> bool:
    if token is None:
        return False
    given = request.headers.get("authorization", "")
    if given[:7].lower() == "bearer ":
        given = given[7:]
    return hmac.compare_digest(given.strip().encode(), token.encode())


async def health(request: Request) -> Response:
    """``{status, version}`` for anyone, from the process's own state (no upstream is
    called); tenants, connectors and the inbox only with the health token."""
    runtime: Runtime = request.app.state.runtime
    status, _problems = runtime.status()
    code = 503 if status == "stopping" else 200
    if not _authorised(request, runtime.config.server.health_token):
        return JSONResponse({"status": status, "version": runtime.version}, status_code=code)
    # From the health monitor's cache: the cost does not grow with the tenants.
    return Response(runtime.health_json(), status_code=code, media_type="application/json")


def _refused_unknown(channel_type: str) -> Response:
    # The same answer as a wrong token: which instances exist is not told.
    logger.info("[WEBHOOK] {} webhook for an unknown instance refused", channel_type)
    return _error(401, UNAUTHORISED)


async def webhook(request: Request) -> Response:
    """``POST|GET /webhooks/{channel}[/{route}]``: route to a tenant, then let its
    channel authenticate and parse (POST) or answer a verification handshake (GET)."""
    runtime: Runtime = request.app.state.runtime
    channel_type = request.path_params["channel"]
    if request.method in ("GET", "HEAD"):  # Starlette adds HEAD to every GET route
        if len(request.url.query) > MAX_QUERY_CHARS:
            return _error(400, f"query string longer than {MAX_QUERY_CHARS} characters")
        return await _handshake(runtime, channel_type, _webhook_request(request, b""))
    if not runtime.inbox.accepting:
        return _error(503, "server is shutting down; retry later",
                      {"Retry-After": RETRY_AFTER_STOPPING})
    if len(request.url.query) > MAX_QUERY_CHARS:
        return _error(400, f"query string longer than {MAX_QUERY_CHARS} characters")
    limit = runtime.config.server.body_limit_bytes
    close = {"Connection": "close"}
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            body = await read_limited(request, limit)
    except BodyTooLarge:
        return _error(413, f"body larger than {limit} bytes", close)
    except TimeoutError:
        return _error(408, f"body not received within {BODY_TIMEOUT_S:g}s", close)
    except ClientDisconnect:
        return _error(400, "client disconnected before sending the whole body")
    hook_request = _webhook_request(request, body)
    cls: Any = runtime.tenants.channel_classes.get(channel_type)
    if cls is None:
        return _error(404, f"no tenant uses the channel {channel_type!r}")
    accepted = duplicates = dead = 0
    try:
        tenant = _routed(runtime, cls, channel_type, hook_request)
        if tenant is None:
            return _refused_unknown(channel_type)
        try:
            await tenant.ready("channel")  # a tenant's connectors open on first use
            messages = await tenant.channel.parse_webhook(hook_request)
        except UnprocessableBody as exc:
            # Authenticated, but unusable: 200 so the provider does not redeliver it for a
            # day, and the raw body kept where an operator sees it.
            letter = dead_letter(tenant.id, channel_type, raw_text(body), exc.reason,
                                 exc.chat_id, exc.message_id)
            dead = int(await runtime.submit(letter))
            messages = []
        for message in messages:
            if await runtime.submit(message):
                accepted += 1
            else:
                duplicates += 1
    except WebhookError as exc:
        return _webhook_error(channel_type, exc)
    except InboxFull as exc:
        return _error(503, str(exc), {"Retry-After": str(exc.retry_after)})
    except InboxClosed:
        return _error(503, "server is shutting down; retry later",
                      {"Retry-After": RETRY_AFTER_STOPPING})
    result: dict[str, Any] = {"ok": True, "accepted": accepted, "duplicates": duplicates}
    if dead:
        result["dead_letters"] = dead
    return JSONResponse(result)


def _webhook_request(request: Request, body: bytes) -> WebhookRequest:
    return WebhookRequest(
        headers={k.lower(): v for k, v in request.headers.items()}, body=body,
        query=dict(request.query_params), route=request.path_params.get("route"),
        method=request.method,
    )


def _webhook_error(channel_type: str, exc: WebhookError) -> Response:
    if exc.status >= 500:
        logger.error("[WEBHOOK] {} webhook failed: {}", channel_type, exc.reason)
    return _error(exc.status, exc.reason, exc.headers)


def _routed(runtime: Runtime, cls: Any, channel_type: str, request: WebhookRequest) -> Any:
    """The tenant ``request`` claims (None: unknown); a ``WebhookError`` when the
    request does not say (400 naming the field, 404 for a wrong URL shape)."""
    key = cls.webhook_route_key(request)
    if not isinstance(key, str) or len(key) > MAX_ROUTE_KEY_CHARS:
        return None
    return runtime.tenants.routes.get((channel_type, key))


async def _handshake(runtime: Runtime, channel_type: str, request: WebhookRequest) -> Response:
    cls: Any = runtime.tenants.channel_classes.get(channel_type)
    if cls is None:
        return _error(404, f"no tenant uses the channel {channel_type!r}")
    if not callable(getattr(cls, "handshake", None)) or cls.handshake is ChannelBase.handshake:
        return _error(405, f"the {channel_type} channel answers no GET requests", {"Allow": "POST"})
    routing = getattr(cls, "routing", None)
    try:
        if isinstance(routing, Routing) and routing.source is RouteSource.BODY and request.route is None:
            # A GET has no body to route by: each tenant of the channel is asked in turn
            # and the first to accept answers (its verify token decides).
            candidates = [t for (kind, _), t in runtime.tenants.routes.items() if kind == channel_type]
        else:
            tenant = _routed(runtime, cls, channel_type, request)
            candidates = [tenant] if tenant is not None else []
        if not candidates:
            return _refused_unknown(channel_type)
        refusal: WebhookError | None = None
        for tenant in candidates:
            try:
                reply = await tenant.channel.handshake(request)
            except WebhookError as exc:
                if exc.status >= 500:
                    raise
                refusal = exc
                continue
            return Response(reply.body, status_code=reply.status, media_type=reply.content_type,
                            headers=dict(reply.headers))
        assert refusal is not None
        raise refusal
    except WebhookError as exc:
        return _webhook_error(channel_type, exc)


async def root(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if any(t.channel_type == "webchat" for t in runtime.tenants.by_id.values()):
        return RedirectResponse("/chat", status_code=307)
    return JSONResponse({"name": "maxcore", "version": runtime.version, "health": "/api/health"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.detail or "error", exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the (redacted) log, never to the client.
    logger.opt(exception=exc).error("unhandled error on {} {}", request.method, request.url.path)
    return _error(500, "internal error; see the server log")


def create_app(runtime: Runtime, *, manage_lifecycle: bool = True) -> Starlette:
    """Build the ASGI app for ``runtime``.

    With ``manage_lifecycle`` the app's lifespan starts and stops the runtime.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        if manage_lifecycle:
            await runtime.start()
        try:
            yield {}
        finally:
            if manage_lifecycle:
                await runtime.stop()

    routes = [
        Route("/", root, methods=["GET"]),
        Route("/api/health", health, methods=["GET"]),
        Route("/webhooks/{channel}", webhook, methods=["POST", "GET"]),
        Route("/webhooks/{channel}/{route}", webhook, methods=["POST", "GET"]),
        *runtime.hooks.register_routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.runtime = runtime
    return app
