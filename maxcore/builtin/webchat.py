"""The ``webchat`` channel: a page at /chat where you type as a WhatsApp user would.

Sessions are signed: ``POST /chat/<tenant>/session`` returns a token binding a new
chat id to that tenant (HMAC with the server's session secret). Messages go through
``POST /webhooks/webchat`` like any channel's webhook, so the demo exercises the
same inbox and pipeline as production. Replies are read back with a long poll.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import hashlib
import hmac
import json
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..config.models import in_range
from ..connectors import ChannelBase, ConnectorContext, WebhookRequest
from ..errors import WebhookError
from ..hookspecs import hookimpl
from ..types import InboundMessage, OutboundMessage, SendResult
from ..webhooks import json_body
from .sqlite_db import create_private_file

MAX_TEXT = 4000
MAX_MESSAGES_PER_CHAT = 200
MAX_CHATS = 10_000
_STATIC = Path(__file__).parent / "static"


@attrs.frozen
class WebchatConfig:
    title: str | None = None
    session_ttl_s: int = attrs.field(default=7 * 86400, validator=in_range(60, 365 * 86400))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def session_secret(data_dir: Path, configured: str | None = None) -> bytes:
    """The key that signs webchat sessions: configured, or created once in data_dir."""
    if configured:
        return configured.encode()
    path = data_dir / "webchat.secret"
    create_private_file(path)  # 0600 from its creation, never readable by others
    key = path.read_text().strip()
    if not key:
        key = secrets.token_hex(32)
        path.write_text(key)
    return key.encode()


@functools.lru_cache(maxsize=4096)
def _decode_claims(token: str) -> dict[str, Any]:
    """The token's claims (not yet verified). Cached: a chat sends many messages."""
    try:
        payload, _signature = token.split(".", 1)
        claims = json.loads(_unb64(payload))
    except (ValueError, json.JSONDecodeError) as exc:
        raise WebhookError(401, "malformed webchat session token") from exc
    if not isinstance(claims, dict) or not isinstance(claims.get("t"), str):
        raise WebhookError(401, "malformed webchat session token")
    return claims


def _bearer(request: WebhookRequest | Request) -> str:
    value = request.headers.get("authorization") or ""
    if not value.lower().startswith("bearer "):
        raise WebhookError(401, "missing Authorization: Bearer <session token>")
    return value[7:].strip()


class WebchatChannel(ChannelBase):
    """One tenant's web chat; replies are kept in memory per session for the page."""

    name = "webchat"
    Config = WebchatConfig

    def __init__(self, config: WebchatConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self._secret: bytes | None = None
        # Recent messages per chat, for the page; the least recently active chats are
        # forgotten beyond MAX_CHATS so a public page cannot grow memory without bound.
        self._outbox: collections.OrderedDict[str, collections.deque[dict[str, Any]]] = (
            collections.OrderedDict()
        )
        self._ids: dict[str, dict[str, int]] = {}
        # Tokens whose signature was checked (expiry is still checked on every use).
        self._verified: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._seq = 0
        self._changed = asyncio.Condition()
        self._closing = False

    async def close(self) -> None:
        # Release the long polls so a shutdown does not wait for them to time out.
        async with self._changed:
            self._closing = True
            self._changed.notify_all()

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = session_secret(self.context.data_dir)
        return self._secret

    # -- sessions --------------------------------------------------------------
    def new_session(self) -> dict[str, Any]:
        chat_id = "web-" + uuid.uuid4().hex[:16]
        claims = {"t": self.tenant, "c": chat_id, "exp": int(time.time()) + self.config.session_ttl_s}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        token = f"{payload}.{self._sign(payload)}"
        return {"token": token, "chat_id": chat_id, "expires_at": claims["exp"]}

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, payload.encode(), hashlib.sha256).digest())

    def verify(self, token: str) -> str:
        """Return the chat id of a valid session token for this tenant, or raise 401."""
        claims = _decode_claims(token)
        if token not in self._verified:
            payload, _, signature = token.partition(".")
            if not hmac.compare_digest(signature, self._sign(payload)):
                raise WebhookError(401, "invalid webchat session token")
            self._verified[token] = None
            if len(self._verified) > 4096:
                self._verified.popitem(last=False)
        if claims.get("t") != self.tenant:
            raise WebhookError(401, "invalid webchat session token")
        if int(claims.get("exp", 0)) < time.time():
            raise WebhookError(401, "webchat session expired; reload the page")
        return str(claims["c"])

    # -- channel protocol --------------------------------------------------------
    @classmethod
    def webhook_route_key(cls, request: WebhookRequest) -> str:
        return str(_decode_claims(_bearer(request))["t"])

    @property
    def route_key(self) -> str:
        return self.tenant

    async def parse_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        chat_id = self.verify(_bearer(request))
        data = json_body(request)
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise WebhookError(400, "field text is required and must be a non-empty string")
        if len(text) > MAX_TEXT:
            raise WebhookError(400, f"field text is longer than {MAX_TEXT} characters")
        message_id = data.get("id") or uuid.uuid4().hex
        if not isinstance(message_id, str) or len(message_id) > 128:
            raise WebhookError(400, "field id must be a string of at most 128 characters")
        await self._push(chat_id, "user", text.strip(), message_id)
        return [InboundMessage(
            tenant=self.tenant, channel=self.name, chat_id=chat_id, message_id=message_id,
            text=text.strip(),
        )]

    async def send(self, message: OutboundMessage) -> SendResult:
        seq = await self._push(message.chat_id, "assistant", message.text, None)
        return SendResult(message_id=f"webchat-{seq}")

    async def _push(self, chat_id: str, sender: str, text: str, message_id: str | None) -> int:
        async with self._changed:
            box = self._outbox.get(chat_id)
            if box is None:
                box = self._outbox[chat_id] = collections.deque(maxlen=MAX_MESSAGES_PER_CHAT)
                self._ids[chat_id] = {}
                while len(self._outbox) > MAX_CHATS:
                    forgotten, _ = self._outbox.popitem(last=False)
                    self._ids.pop(forgotten, None)
            self._outbox.move_to_end(chat_id)
            ids = self._ids[chat_id]
            if message_id is not None and message_id in ids:
                # A resent message (same id) is shown once, as the inbox processes it once.
                return ids[message_id]
            self._seq += 1
            box.append({"seq": self._seq, "from": sender, "text": text, "id": message_id,
                        "at": time.time()})
            if message_id is not None:
                ids[message_id] = self._seq
                if len(ids) > 2 * MAX_MESSAGES_PER_CHAT:
                    oldest = min(m["seq"] for m in box)
                    self._ids[chat_id] = {k: v for k, v in ids.items() if v >= oldest}
            self._changed.notify_all()
            return self._seq

    async def messages(self, chat_id: str, after: int, wait: float) -> list[dict[str, Any]]:
        """Messages of ``chat_id`` newer than ``after``, waiting up to ``wait`` seconds."""
        deadline = time.monotonic() + wait
        async with self._changed:
            while True:
                found = [m for m in self._outbox.get(chat_id, ()) if m["seq"] > after]
                remaining = deadline - time.monotonic()
                if found or remaining <= 0 or self._closing:
                    return found
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    pass


# -- HTTP routes: the page and its small JSON API ------------------------------------
def _webchat_tenants(request: Request) -> dict[str, WebchatChannel]:
    runtime = request.app.state.runtime
    return {
        tid: t.channel for tid, t in runtime.tenants.by_id.items()
        if isinstance(t.channel, WebchatChannel)
    }


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


async def chat_index(request: Request) -> Response:
    tenants = _webchat_tenants(request)
    if len(tenants) == 1:
        return RedirectResponse(f"/chat/{next(iter(tenants))}", status_code=307)
    items = "".join(f'<li><a href="/chat/{t}">{t}</a></li>' for t in sorted(tenants))
    return HTMLResponse(
        f"<!doctype html><meta charset=utf-8><title>maxcore chat</title>"
        f"<h1>maxcore web chat</h1><ul>{items or '<li>No tenant uses the webchat channel.</li>'}</ul>"
    )


async def chat_page(request: Request) -> Response:
    tenant_id = request.path_params["tenant"]
    channel = _webchat_tenants(request).get(tenant_id)
    if channel is None:
        return HTMLResponse("<h1>Unknown chat</h1>", status_code=404)
    runtime = request.app.state.runtime
    tenant = runtime.tenants.by_id[tenant_id]
    html = (_STATIC / "chat.html").read_text(encoding="utf-8")
    title = channel.config.title or f"{tenant.config.assistant.name} · {tenant.display_name}"
    settings = json.dumps({"tenant": tenant_id, "title": title,
                           "language": tenant.config.assistant.language})
    html = html.replace("__TITLE__", _escape(title)).replace("__SETTINGS__", settings)
    return HTMLResponse(html)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def create_session(request: Request) -> Response:
    channel = _webchat_tenants(request).get(request.path_params["tenant"])
    if channel is None:
        return _error(404, "unknown tenant or no webchat channel")
    return JSONResponse(channel.new_session())


async def read_messages(request: Request) -> Response:
    channel = _webchat_tenants(request).get(request.path_params["tenant"])
    if channel is None:
        return _error(404, "unknown tenant or no webchat channel")
    try:
        chat_id = channel.verify(_bearer(request))
    except WebhookError as exc:
        return _error(exc.status, exc.reason)
    try:
        after = int(request.query_params.get("after", "0"))
        wait = min(float(request.query_params.get("wait", "20")), 25.0)
    except ValueError:
        return _error(400, "after must be an integer and wait a number")
    return JSONResponse({"messages": await channel.messages(chat_id, after, max(wait, 0.0))})


@hookimpl
def register_channels() -> list[type]:
    return [WebchatChannel]


@hookimpl
def register_routes() -> list[Route]:
    return [
        Route("/chat", chat_index, methods=["GET"]),
        Route("/chat/{tenant}", chat_page, methods=["GET"]),
        Route("/chat/{tenant}/session", create_session, methods=["POST"]),
        Route("/chat/{tenant}/messages", read_messages, methods=["GET"]),
    ]
