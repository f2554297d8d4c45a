"""The web chat's HTTP routes: the page, its script and style, and a small JSON API.

Every answer carries a strict Content-Security-Policy (scripts and styles from this
origin only, no inline code, no framing) and the usual companions. Data reaches the
page as JSON in a ``<script type="application/json">`` block with ``<``, ``>`` and
``&`` escaped, so no tenant name can close the block; the title is HTML-escaped.
"""

from __future__ import annotations

import functools
import html
import json
import re
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import WebhookError
from ..prompts import pack_of
from .webchat import Session, WebchatChannel, bearer

STATIC = Path(__file__).parent / "static"
MAX_WAIT_S = 25.0
MAX_SEQ = 2**53  # what the page's JavaScript numbers hold exactly

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

# The page's own words come from the tenant's language pack (keys webchat_*, which a
# tenant may override in assistant.texts); a pack without them gets these.
PAGE_TEXTS: dict[str, str] = {
    "online": "online", "offline": "reconnecting…", "placeholder": "Message", "send": "Send",
    "unsent": "Not sent", "unsent_because": "Not sent: {reason}", "retry": "Retry",
    "unreachable": "server unreachable",
}
STATIC_TYPES = {"chat.js": "text/javascript; charset=utf-8", "chat.css": "text/css; charset=utf-8"}
_PLACEHOLDER_RE = re.compile(r"__(LANG|TITLE|SETTINGS)__")


def script_json(value: Any) -> str:
    """JSON that is inert inside an HTML ``<script>`` block, whatever its strings hold."""
    text = json.dumps(value, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def page_texts(assistant: Any) -> dict[str, str]:
    texts = pack_of(assistant).texts
    return {key: texts.get(f"webchat_{key}", default) for key, default in PAGE_TEXTS.items()}


def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    return _secure(JSONResponse({"error": reason}, status_code=status, headers=headers))


def _webchat_tenants(request: Request) -> dict[str, WebchatChannel]:
    runtime = request.app.state.runtime
    return {
        tid: t.channel for tid, t in runtime.tenants.by_id.items()
        if isinstance(t.channel, WebchatChannel)
    }


@functools.cache
def _static(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _query(request: Request, allowed: set[str]) -> dict[str, str]:
    """The query values, each given at most once and all known, or a 400 naming it."""
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            shown = name if re.fullmatch(r"[\w.-]{1,40}", name) else "(unprintable)"
            raise WebhookError(400, f"unknown query parameter {shown}; "
                                    f"expected {', '.join(sorted(allowed))}")
        if name in values:
            raise WebhookError(400, f"query parameter {name} is given more than once")
        values[name] = value
    return values


def query_int(values: dict[str, str], name: str, default: int, high: int) -> int:
    raw = values.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,16}", raw) or int(raw) > high:
        raise WebhookError(400, f"query parameter {name} must be an integer from 0 to {high}")
    return int(raw)


def query_seconds(values: dict[str, str], name: str, default: float, high: float) -> float:
    # Plain decimals only: no nan, inf, exponent or sign reaches a timer.
    raw = values.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,3}(?:\.\d{1,3})?", raw) or float(raw) > high:
        raise WebhookError(
            400, f"query parameter {name} must be a number of seconds from 0 to {high:g}"
        )
    return float(raw)


def client_address(request: Request, channel: WebchatChannel) -> str | None:
    header = channel.config.client_ip_header
    if header:
        forwarded = request.headers.get(header, "").rsplit(",", 1)[-1].strip()
        if forwarded:
            return forwarded
    return request.client.host if request.client else None


# -- routes ---------------------------------------------------------------------------
async def chat_index(request: Request) -> Response:
    tenants = _webchat_tenants(request)
    if len(tenants) == 1:
        return _secure(RedirectResponse(f"/chat/{next(iter(tenants))}", status_code=307))
    items = "".join(
        f'<li><a href="/chat/{html.escape(t)}">{html.escape(t)}</a></li>' for t in sorted(tenants)
    )
    return _secure(HTMLResponse(
        f"<!doctype html><meta charset=utf-8><title>maxcore chat</title>"
        f"<h1>maxcore web chat</h1><ul>{items or '<li>No tenant uses the webchat channel.</li>'}</ul>"
    ))


async def chat_page(request: Request) -> Response:
    tenant_id = request.path_params["tenant"]
    channel = _webchat_tenants(request).get(tenant_id)
    if channel is None:
        return _secure(HTMLResponse("<h1>Unknown chat</h1>", status_code=404))
    tenant = request.app.state.runtime.tenants.by_id[tenant_id]
    language = tenant.config.assistant.language
    title = channel.config.title or f"{tenant.config.assistant.name} · {tenant.display_name}"
    values = {
        "LANG": html.escape(language),
        "TITLE": html.escape(title),
        "SETTINGS": script_json({
            "tenant": tenant_id, "title": title, "language": language,
            "texts": page_texts(tenant.config.assistant),
        }),
    }
    page = _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], _static("chat.html"))
    return _secure(HTMLResponse(page, headers={"Cache-Control": "no-store"}))


async def static_file(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC_TYPES:
        return _secure(Response("not found", status_code=404, media_type="text/plain"))
    return _secure(Response(_static(name), media_type=STATIC_TYPES[name],
                            headers={"Cache-Control": "no-cache"}))


async def create_session(request: Request) -> Response:
    channel = _webchat_tenants(request).get(request.path_params["tenant"])
    if channel is None:
        return _error(404, "unknown tenant or no webchat channel")
    try:
        _query(request, set())
        return _secure(JSONResponse(channel.new_session(client_address(request, channel))))
    except WebhookError as exc:
        return _error(exc.status, exc.reason, exc.headers)


async def read_messages(request: Request) -> Response:
    channel = _webchat_tenants(request).get(request.path_params["tenant"])
    if channel is None:
        return _error(404, "unknown tenant or no webchat channel")
    try:
        session: Session = channel.verify(bearer(request.headers))
        values = _query(request, {"after", "wait"})
        after = query_int(values, "after", 0, MAX_SEQ)
        wait = query_seconds(values, "wait", 20.0, MAX_WAIT_S)
        messages = await channel.read(session, after, wait)
    except WebhookError as exc:
        return _error(exc.status, exc.reason, exc.headers)
    return _secure(JSONResponse({"messages": messages}))


def routes() -> list[Route]:
    return [
        Route("/chat", chat_index, methods=["GET"]),
        # "-" cannot start a tenant id, so these never shadow a tenant's page.
        Route("/chat/-/{name}", static_file, methods=["GET"]),
        Route("/chat/{tenant}", chat_page, methods=["GET"]),
        Route("/chat/{tenant}/session", create_session, methods=["POST"]),
        Route("/chat/{tenant}/messages", read_messages, methods=["GET"]),
    ]
