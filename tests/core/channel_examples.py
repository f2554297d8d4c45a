"""Two channels written the way a third party would, and the provider they talk to.

``TelegramLikeChannel`` routes on the path segment (``/webhooks/telegram_like/{route}``)
and authenticates with a secret header, as Telegram's ``setWebhook(secret_token=…)``
does: its updates do not name the bot. ``MetaLikeChannel`` routes on a body value
(``phone_number_id``), signs bodies with ``X-Hub-Signature-256`` and answers Meta's
``GET`` verification handshake. ``ProviderEmulator`` serves both send APIs on
127.0.0.1 (imported by ``test_channel_contract.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
from typing import Any

import attrs
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from maxcore import (
    ChannelBase,
    ConnectorContext,
    InboundMessage,
    MessageKind,
    OutboundMessage,
    PermanentError,
    RetryableError,
    Routing,
    SendResult,
    WebhookError,
    WebhookReply,
    WebhookRequest,
)
from maxcore.config import http_url, non_empty
from maxcore.outbound import split_text
from maxcore.webhooks import UNAUTHORISED, json_body, require

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_CHARS = 4096


# -- the provider ------------------------------------------------------------------------
class ProviderEmulator:
    """Both send APIs: Telegram's ``/bot{token}/sendMessage`` and Meta's
    ``/v21.0/{phone_number_id}/messages``, each with its own error bodies."""

    def __init__(self) -> None:
        self.sent: dict[str, list[str]] = {}  # bot token or phone number id -> texts
        self.tokens: dict[str, str] = {}  # phone number id -> access token
        self.faults: dict[str, str] = {}  # account -> "retryable" / "permanent"
        self._ids = itertools.count(100)
        self.app = Starlette(routes=[
            Route("/bot{token}/sendMessage", self._telegram, methods=["POST"]),
            Route("/v21.0/{phone}/messages", self._meta, methods=["POST"]),
        ])

    async def _telegram(self, request: Request) -> JSONResponse:
        token = request.path_params["token"]
        if token not in self.sent:
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
        fault = self.faults.get(token)
        if fault == "retryable":
            return JSONResponse({"ok": False, "error_code": 429, "description": "Too Many Requests: "
                                 "retry after 1", "parameters": {"retry_after": 1}}, 429)
        if fault == "permanent":
            return JSONResponse({"ok": False, "error_code": 403,
                                 "description": "Forbidden: bot was blocked by the user"}, 403)
        data = await request.json()
        if len(data["text"]) > MAX_CHARS:
            return JSONResponse({"ok": False, "error_code": 400,
                                 "description": "Bad Request: message is too long"}, 400)
        self.sent[token].append(data["text"])
        return JSONResponse({"ok": True, "result": {"message_id": next(self._ids)}})

    async def _meta(self, request: Request) -> JSONResponse:
        phone = request.path_params["phone"]
        if request.headers.get("authorization") != f"Bearer {self.tokens.get(phone)}":
            return _meta_error(190, "Invalid OAuth access token", 401)
        fault = self.faults.get(phone)
        if fault == "retryable":
            return _meta_error(130429, "Rate limit hit", 400)
        if fault == "permanent":
            return _meta_error(131026, "Message undeliverable", 400)
        data = await request.json()
        body = data["text"]["body"]
        if len(body) > MAX_CHARS:
            return _meta_error(100, "Invalid parameter: text.body too long", 400)
        self.sent[phone].append(body)
        message_id = f"wamid.{next(self._ids)}"
        return JSONResponse({"messaging_product": "whatsapp", "messages": [{"id": message_id}]})


def _meta_error(code: int, message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": {"message": f"(#{code}) {message}", "type": "OAuthException",
                                   "code": code, "fbtrace_id": "AbCdEf"}}, status)


# -- Telegram-like -------------------------------------------------------------------------
@attrs.frozen
class TelegramConfig:
    route: str = attrs.field(validator=non_empty)
    bot_token: str = attrs.field(validator=non_empty)
    secret_token: str = attrs.field(validator=non_empty)
    api_url: str = attrs.field(validator=http_url)


# Update keys → the core's kinds (the first present wins).
TELEGRAM_KINDS = (("text", MessageKind.TEXT), ("photo", MessageKind.IMAGE), ("video", MessageKind.VIDEO),
                  ("voice", MessageKind.VOICE), ("audio", MessageKind.AUDIO),
                  ("document", MessageKind.DOCUMENT), ("sticker", MessageKind.STICKER),
                  ("location", MessageKind.LOCATION), ("contact", MessageKind.CONTACT))


class TelegramLikeChannel(ChannelBase):
    name = "telegram_like"
    Config = TelegramConfig
    routing = Routing.path()
    max_text_chars = MAX_CHARS
    redact_patterns = (re.compile(r"/bot(?P<secret>\d+:[A-Za-z0-9_-]+)/"),)

    def __init__(self, config: TelegramConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self.config: TelegramConfig = config
        context.add_secret(config.bot_token)
        context.add_secret(config.secret_token)
        self.http: httpx.AsyncClient | None = None

    @property
    def route_key(self) -> str:
        return self.config.route

    async def open(self) -> None:
        self.http = httpx.AsyncClient(timeout=10)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()

    async def parse_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        given = (request.header(SECRET_HEADER) or "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, self.config.secret_token.encode()):
            raise WebhookError(401, UNAUTHORISED)
        update = json_body(request)
        edited = "edited_message" in update
        message = update.get("edited_message") if edited else update.get("message")
        if not isinstance(message, dict):
            return []  # callback queries, chat member updates...: not messages
        sender = message.get("from") if isinstance(message.get("from"), dict) else {}
        if str(sender.get("id")) == self.config.bot_token.split(":", 1)[0]:
            return []  # the bot's own message
        kind = MessageKind.EDITED if edited else next(
            (k for key, k in TELEGRAM_KINDS if key in message), MessageKind.UNKNOWN)
        message_id = str(require(message, "message_id", int))
        if edited:  # an edit has the edited message's id: its edit date tells them apart
            message_id += f"-edit-{message.get('edit_date')}"
        return [InboundMessage(
            tenant=self.tenant, channel=self.name, chat_id=str(require(message, "chat.id", int)),
            message_id=message_id, text=str(message.get("text") or message.get("caption") or ""),
            sender_name=sender.get("first_name"), kind=kind, metadata={"update_id": update.get("update_id")},
        )]

    async def send(self, message: OutboundMessage) -> SendResult:
        assert self.http is not None
        first: str | None = None
        for part in split_text(message.text, MAX_CHARS):
            response = await self.http.post(f"{self.config.api_url}/bot{self.config.bot_token}/sendMessage",
                                            json={"chat_id": message.chat_id, "text": part})
            body = response.json()
            if not body.get("ok"):
                code, text = body.get("error_code"), body.get("description", "")
                if code == 429 or (isinstance(code, int) and code >= 500):
                    retry = (body.get("parameters") or {}).get("retry_after")
                    raise RetryableError(f"Telegram sendMessage: {text}", retry_after=retry)
                raise PermanentError(f"Telegram sendMessage refused ({code}): {text}")
            first = first or str(body["result"]["message_id"])
        return SendResult(message_id=first)


# -- Meta-like ---------------------------------------------------------------------------------
@attrs.frozen
class MetaConfig:
    phone_number_id: str = attrs.field(validator=non_empty)
    access_token: str = attrs.field(validator=non_empty)
    app_secret: str = attrs.field(validator=non_empty)
    verify_token: str = attrs.field(validator=non_empty)
    api_url: str = attrs.field(validator=http_url)


META_KINDS = {"text": MessageKind.TEXT, "image": MessageKind.IMAGE, "video": MessageKind.VIDEO,
              "audio": MessageKind.AUDIO, "document": MessageKind.DOCUMENT,
              "sticker": MessageKind.STICKER, "location": MessageKind.LOCATION,
              "contacts": MessageKind.CONTACT, "interactive": MessageKind.CHOICE,
              "button": MessageKind.CHOICE, "reaction": MessageKind.REACTION,
              "system": MessageKind.SYSTEM}
META_RETRYABLE = {1, 2, 4, 80007, 130429, 131000, 131016, 131056}


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class MetaLikeChannel(ChannelBase):
    name = "meta_like"
    Config = MetaConfig
    routing = Routing.body("entry.0.changes.0.value.metadata.phone_number_id")
    max_text_chars = MAX_CHARS

    def __init__(self, config: MetaConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self.config: MetaConfig = config
        for secret in (config.access_token, config.app_secret, config.verify_token):
            context.add_secret(secret)
        self.http: httpx.AsyncClient | None = None

    @property
    def route_key(self) -> str:
        return self.config.phone_number_id

    async def open(self) -> None:
        self.http = httpx.AsyncClient(timeout=10)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()

    async def handshake(self, request: WebhookRequest) -> WebhookReply:
        token = (request.query.get("hub.verify_token") or "").encode("utf-8", "replace")
        if request.query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
                token, self.config.verify_token.encode()):
            raise WebhookError(403, "verification refused")
        return WebhookReply(request.query.get("hub.challenge") or "")

    async def parse_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        given = (request.header("x-hub-signature-256") or "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, signature(self.config.app_secret, request.body).encode()):
            raise WebhookError(401, UNAUTHORISED)
        out: list[InboundMessage] = []
        for entry in json_body(request).get("entry") or []:
            for change in entry.get("changes") or []:
                value = change.get("value") or {}
                if (value.get("metadata") or {}).get("phone_number_id") != self.config.phone_number_id:
                    continue  # another number of the same app: not this tenant's
                # value.statuses (the bot's own messages: sent, delivered, read) are not messages.
                for item in value.get("messages") or []:
                    kind = META_KINDS.get(item.get("type"), MessageKind.UNKNOWN)
                    if kind is MessageKind.AUDIO and (item.get("audio") or {}).get("voice"):
                        kind = MessageKind.VOICE
                    out.append(InboundMessage(
                        tenant=self.tenant, channel=self.name, chat_id=require(item, "from"),
                        message_id=require(item, "id"), kind=kind,
                        text=str((item.get("text") or {}).get("body") or ""),
                        metadata={"type": item.get("type")},
                    ))
        return out

    async def send(self, message: OutboundMessage) -> SendResult:
        assert self.http is not None
        url = f"{self.config.api_url}/v21.0/{self.config.phone_number_id}/messages"
        first: str | None = None
        auth = {"Authorization": f"Bearer {self.config.access_token}"}
        for part in split_text(message.text, MAX_CHARS):
            payload = {"messaging_product": "whatsapp", "to": message.chat_id, "type": "text",
                       "text": {"body": part}}
            response = await self.http.post(url, headers=auth, json=payload)
            body: dict[str, Any] = response.json()
            if "error" in body:
                code = body["error"].get("code")
                text = f"WhatsApp Cloud error {code}: {body['error'].get('message')}"
                if code in META_RETRYABLE or response.status_code >= 500:
                    raise RetryableError(text)
                raise PermanentError(text)
            first = first or body["messages"][0]["id"]
        return SendResult(message_id=first)
