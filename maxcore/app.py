"""The HTTP application: health, webhooks, and the routes plugins add.

``create_app(runtime)`` is the app factory; its lifespan starts the runtime (opens
every tenant's connectors, starts the inbox workers) and stops it on shutdown.
"""

from __future__ import annotations

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

from .connectors import WebhookRequest
from .errors import WebhookError
from .inbox import InboxClosed, InboxFull
from .runtime import Runtime

RETRY_AFTER_STOPPING = "10"


def _error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


class BodyTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it exceeds ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def health(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    status = 200 if runtime.inbox.accepting else 503
    token = runtime.config.server.health_token
    if token is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            # Public answer: alive or not, without tenant names or upstream reasons.
            return JSONResponse(
                {"status": "ok" if status == 200 else "stopping", "version": runtime.version},
                status_code=status,
            )
    return JSONResponse(await runtime.health(), status_code=status)


async def webhook(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    channel_type = request.path_params["channel"]
    if not runtime.inbox.accepting:
        return _error(503, "server is shutting down; retry later",
                      {"Retry-After": RETRY_AFTER_STOPPING})
    limit = runtime.config.server.body_limit_bytes
    try:
        body = await read_limited(request, limit)
    except BodyTooLarge:
        return _error(413, f"body larger than {limit} bytes")
    except ClientDisconnect:
        return _error(400, "client disconnected before sending the whole body")
    headers = {k.lower(): v for k, v in request.headers.items()}
    hook_request = WebhookRequest(headers=headers, body=body, query=dict(request.query_params))
    tenants = runtime.tenants
    cls: Any = tenants.channel_classes.get(channel_type)
    if cls is None:
        return _error(404, f"no tenant uses the channel {channel_type!r}")
    try:
        key = cls.webhook_route_key(hook_request)
        tenant = tenants.routes.get((channel_type, key))
        if tenant is None:
            logger.info("[WEBHOOK] {} webhook for unknown instance refused", channel_type)
            return _error(404, f"unknown {channel_type} instance")
        messages = await tenant.channel.parse_webhook(hook_request)
        accepted = duplicates = 0
        for message in messages:
            if await runtime.submit(message):
                accepted += 1
            else:
                duplicates += 1
    except WebhookError as exc:
        if exc.status >= 500:
            logger.error("[WEBHOOK] {} webhook failed: {}", channel_type, exc.reason)
        return _error(exc.status, exc.reason)
    except InboxFull as exc:
        return _error(503, str(exc), {"Retry-After": str(exc.retry_after)})
    except InboxClosed:
        return _error(503, "server is shutting down; retry later",
                      {"Retry-After": RETRY_AFTER_STOPPING})
    return JSONResponse({"ok": True, "accepted": accepted, "duplicates": duplicates})


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
        Route("/webhooks/{channel}", webhook, methods=["POST"]),
        *runtime.hooks.register_routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.runtime = runtime
    return app
