"""The ``webchat`` channel: a page at /chat where you type as a WhatsApp user would.

Sessions are signed: ``POST /chat/<tenant>/session`` returns a token binding a new
chat id to that tenant (HMAC with ``server.session_secret``, or with a key created once
in the data directory). Messages go through ``POST /webhooks/webchat`` like any
channel's webhook, so the demo exercises the same inbox and pipeline as production.
Replies are read back with a long poll (routes in :mod:`.webchat_pages`).

Anyone can open the page, so every input is bounded and every sender is rate limited:
per session, per client address (recorded, keyed, in the session token) and for the
whole tenant, which bounds what anonymous traffic can make the server store.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
from starlette.routing import Route

from ..config.models import in_range, non_empty
from ..connectors import ChannelBase, ConnectorContext, WebhookRequest
from ..errors import WebhookError
from ..files import create_private_file
from ..hookspecs import hookimpl
from ..routing import Routing
from ..types import InboundMessage, MessageKind, OutboundMessage, SendResult
from ..webhooks import json_body
from .rate_limit import KeyedLimiter, retry_after
from .webchat_outbox import Outbox, OutboxLimits

# A signed token: base64url(claims) "." base64url(HMAC-SHA256) (43 characters).
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,512}\.[A-Za-z0-9_-]{43}")
MESSAGE_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Control characters other than tab and line breaks have no place in a typed message.
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MAX_POLLS_PER_SESSION = 3
POLLS_PER_MINUTE_PER_SESSION = 60


@attrs.frozen
class WebchatConfig:
    """``channel: {type: webchat, ...}``. Every limit is per tenant."""

    title: str | None = None
    session_ttl_s: int = attrs.field(default=7 * 86400, validator=in_range(60, 365 * 86400))
    max_text_chars: int = attrs.field(default=4000, validator=in_range(1, 65536))
    # Rate limits (a token bucket: this many a minute, as a burst too). A person types
    # far fewer; the tenant-wide one bounds what the inbox and memory can be made to store.
    messages_per_minute: int = attrs.field(default=10, validator=in_range(1, 100_000))
    messages_per_minute_per_client: int = attrs.field(default=30, validator=in_range(1, 100_000))
    messages_per_minute_total: int = attrs.field(default=300, validator=in_range(1, 1_000_000))
    sessions_per_hour_per_client: int = attrs.field(default=20, validator=in_range(1, 100_000))
    # false: no rate limit at all (load tests on a private network); the caps below stay.
    rate_limits: bool = True
    # What the page can show back, held in memory: conversations (least recently active
    # forgotten first), conversations per client address, messages each, characters in all.
    max_sessions: int = attrs.field(default=1000, validator=in_range(1, 1_000_000))
    max_sessions_per_client: int = attrs.field(default=20, validator=in_range(1, 1_000_000))
    messages_kept_per_session: int = attrs.field(default=100, validator=in_range(1, 10_000))
    max_kept_chars: int = attrs.field(default=2_000_000, validator=in_range(1000, 1 << 30))
    # Behind a reverse proxy every client has the proxy's address: name the header it
    # sets (X-Real-IP, X-Forwarded-For: the last entry is used). Only behind a proxy
    # that sets it, or clients choose their own address.
    client_ip_header: str | None = attrs.field(default=None, validator=non_empty)


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
    if not TOKEN_RE.fullmatch(token):
        raise WebhookError(401, "malformed webchat session token")
    try:
        claims = json.loads(_unb64(token.partition(".")[0]))
    except (ValueError, RecursionError) as exc:
        raise WebhookError(401, "malformed webchat session token") from exc
    if not isinstance(claims, dict) or not isinstance(claims.get("t"), str):
        raise WebhookError(401, "malformed webchat session token")
    return claims


def bearer(headers: Any) -> str:
    value = headers.get("authorization") or ""
    if not value.lower().startswith("bearer "):
        raise WebhookError(401, "missing Authorization: Bearer <session token>")
    return str(value[7:].strip())


def client_network(address: str | None) -> str:
    """The unit a client address is counted in: the address, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        # One host holds a whole /64: counting its addresses one by one counts nothing.
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def too_many(what: str, wait_s: float) -> WebhookError:
    seconds = retry_after(wait_s)
    return WebhookError(429, f"too many {what}; retry in {seconds} s", {"Retry-After": seconds})


@attrs.frozen
class Session:
    chat_id: str
    client: str  # a keyed digest of the client's network, never the address itself


class WebchatChannel(ChannelBase):
    """One tenant's web chat; what the page shows is kept in memory, bounded."""

    name = "webchat"
    Config = WebchatConfig
    # The signed session token names its tenant; the signature is checked by parse_webhook.
    routing = Routing.custom("the tenant named in the session token (Authorization: Bearer)")
    max_text_chars = None  # the page shows any length

    def __init__(self, config: WebchatConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self._secret: bytes | None = None
        self.outbox = Outbox(OutboxLimits(
            max_chats=config.max_sessions, max_chats_per_client=config.max_sessions_per_client,
            messages_per_chat=config.messages_kept_per_session, max_chars=config.max_kept_chars,
        ))
        # Tokens whose signature was checked (expiry is still checked on every use).
        self._verified: dict[str, None] = {}
        self._per_session = KeyedLimiter(config.messages_per_minute)
        self._per_client = KeyedLimiter(config.messages_per_minute_per_client)
        self._total = KeyedLimiter(config.messages_per_minute_total)
        self._new_sessions = KeyedLimiter(config.sessions_per_hour_per_client / 60,
                                          burst=config.sessions_per_hour_per_client)
        self._polls = KeyedLimiter(POLLS_PER_MINUTE_PER_SESSION, burst=20)
        self._open_polls: dict[str, int] = {}

    async def close(self) -> None:
        self.outbox.close()

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            configured = self.context.session_secret
            self._secret = session_secret(self.context.data_dir, configured)
            if configured:
                self.context.add_secret(configured)
        return self._secret

    # -- sessions --------------------------------------------------------------
    def new_session(self, client_address: str | None) -> dict[str, Any]:
        """A signed session for a client at ``client_address`` (429 beyond its quota)."""
        client = self._client_key(client_network(client_address))
        self._limit(self._new_sessions, client, "new sessions from this address")
        chat_id = "web-" + uuid.uuid4().hex[:16]
        claims = {"t": self.tenant, "c": chat_id, "o": client,
                  "exp": int(time.time()) + self.config.session_ttl_s}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        token = f"{payload}.{self._sign(payload)}"
        return {"token": token, "chat_id": chat_id, "expires_at": claims["exp"]}

    def _client_key(self, network: str) -> str:
        return _b64(hmac.new(self.secret, b"client:" + network.encode(), hashlib.sha256).digest()[:9])

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, payload.encode(), hashlib.sha256).digest())

    def verify(self, token: str) -> Session:
        """The session of a valid token for this tenant, or raise 401."""
        claims = _decode_claims(token)
        if token not in self._verified:
            payload, _, signature = token.partition(".")
            # Both ASCII (TOKEN_RE), so the comparison cannot fail on the characters.
            if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
                raise WebhookError(401, "invalid webchat session token")
            self._verified[token] = None
            if len(self._verified) > 4096:
                del self._verified[next(iter(self._verified))]
        expires = claims.get("exp")
        if claims.get("t") != self.tenant or not isinstance(claims.get("c"), str) or not (
            isinstance(expires, int) and not isinstance(expires, bool)
        ):
            raise WebhookError(401, "invalid webchat session token")
        if expires < time.time():
            raise WebhookError(401, "webchat session expired; reload the page")
        chat_id = str(claims["c"])
        return Session(chat_id=chat_id, client=str(claims.get("o") or chat_id))

    def _limit(self, limiter: KeyedLimiter, key: str, what: str) -> None:
        if self.config.rate_limits:
            wait = limiter.take(key)
            if wait > 0:
                raise too_many(what, wait)

    # -- long polls --------------------------------------------------------------
    async def read(self, session: Session, after: int, wait: float) -> list[dict[str, Any]]:
        """The page's long poll: at most a few at once per session, and rate limited."""
        self._limit(self._polls, session.chat_id, "reads for this session")
        if self._open_polls.get(session.chat_id, 0) >= MAX_POLLS_PER_SESSION:
            raise WebhookError(429, "too many open reads for this session; close a tab",
                               {"Retry-After": "5"})
        self._open_polls[session.chat_id] = self._open_polls.get(session.chat_id, 0) + 1
        try:
            return await self.outbox.messages(session.chat_id, after, wait)
        finally:
            left = self._open_polls.pop(session.chat_id) - 1
            if left:
                self._open_polls[session.chat_id] = left

    # -- channel protocol --------------------------------------------------------
    @classmethod
    def webhook_route_key(cls, request: WebhookRequest) -> str:
        if request.route is not None:
            raise WebhookError(404, "the webchat channel takes no route segment: use /webhooks/webchat")
        return str(_decode_claims(bearer(request.headers))["t"])

    @property
    def route_key(self) -> str:
        return self.tenant

    async def parse_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        session = self.verify(bearer(request.headers))
        data = json_body(request)
        text = self._text(data.get("text"))
        message_id = data.get("id")
        if message_id is None:
            message_id = uuid.uuid4().hex
        elif not isinstance(message_id, str) or not MESSAGE_ID_RE.fullmatch(message_id):
            raise WebhookError(
                400, "field id must be 1 to 128 characters among letters, digits and . _ : -"
            )
        self._limit(self._per_session, session.chat_id, "messages in this session")
        self._limit(self._per_client, session.client, "messages from this address")
        self._limit(self._total, "", "messages for this chat right now")
        self.outbox.push(session.chat_id, session.client, "user", text, message_id)
        return [InboundMessage(
            tenant=self.tenant, channel=self.name, chat_id=session.chat_id,
            message_id=message_id, text=text, kind=MessageKind.TEXT,
        )]

    def _text(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise WebhookError(400, "field text is required and must be a non-empty string")
        if len(value) > self.config.max_text_chars:
            raise WebhookError(400, f"field text is longer than {self.config.max_text_chars} characters")
        if CONTROL_RE.search(value):
            raise WebhookError(400, "field text contains control characters")
        return value.strip()

    async def send(self, message: OutboundMessage) -> SendResult:
        seq = self.outbox.push(message.chat_id, None, "assistant", message.text, None)
        return SendResult(message_id=f"webchat-{seq}")


@hookimpl
def register_channels() -> list[type]:
    return [WebchatChannel]


@hookimpl
def register_routes() -> list[Route]:
    from .webchat_pages import routes  # the pages import this module

    return routes()
