"""The ``greenapi`` channel: Green-API webhooks or polling in, sendMessage out."""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
from loguru import logger

from maxcore.connectors import ChannelBase, ConnectorContext, Submit, WebhookRequest
from maxcore.errors import MaxcoreError, PermanentError, RetryableError, WebhookError
from maxcore.routing import Routing
from maxcore.types import FIXED_REPLY, Health, HealthStatus, InboundMessage, OutboundMessage, SendResult
from maxcore.webhooks import UNAUTHORISED, UnprocessableBody, dead_letter, json_body

from .client import MAX_MESSAGE_CHARS, URL_TOKEN_RE, GreenApiClient, RateLimited, split_message
from .config import GreenApiConfig
from .parse import CHANNEL, PROCESS, RESEND_PROMPT, Parsed, parse_notification
from .settings_check import check_settings

HEALTH_CACHE_S = 15.0
POLL_BACKOFF_MAX_S = 60.0
HEALTH_RETRY_MAX_S = 2.0
T = TypeVar("T")

# stateInstance → (status, what it means — fix: what the operator does), contract §6.
HEALTH_BY_STATE = {
    "authorized": ("ok", "authorized"),
    "starting": ("degraded", "starting (the instance is booting) — fix: wait a few minutes, then run "
                             "the doctor again"),
    "sleepMode": ("degraded", "sleepMode (the phone is offline) — fix: switch the tenant's phone on and "
                              "connect it to the internet"),
    "notAuthorized": ("down", "notAuthorized (no WhatsApp account linked) — fix: scan the QR code in the "
                              "Green-API console with the tenant's WhatsApp phone"),
    "blocked": ("down", "blocked (the number is banned by WhatsApp) — fix: appeal in the WhatsApp app, or "
                        "link another number to the instance"),
    "yellowCard": ("down", "yellowCard (sending suspended for suspected spam) — fix: stop bulk sends and "
                           "wait for WhatsApp to lift the suspension"),
}

RESEND_TEXTS = {
    "SWE002": (
        "Désolé, ce fichier dépasse 100 Mo et n'a pas pu être reçu. Pouvez-vous l'envoyer "
        "plus léger ? / Sorry, this file is over 100 MB and could not be received. Could you "
        "send a smaller one?"
    ),
    "default": (
        "Désolé, votre message est arrivé vide. Pouvez-vous le renvoyer ? / Sorry, your "
        "message arrived empty. Could you send it again?"
    ),
}

# Open channels by the identity of their ConnectorContext, so the message_received hook
# (which only receives the context) reaches the channel of that exact tenant runtime.
async def _once_more_if_limited(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, retried once after a short 429: getStateInstance and getSettings allow
    1 request/s per instance, shared with every other caller (the server's /api/health
    and a ``maxcore doctor`` run in another process)."""
    try:
        return await call()
    except RateLimited as exc:
        wait = exc.retry_after if exc.retry_after is not None else 1.0
        if wait > HEALTH_RETRY_MAX_S:
            raise
        await asyncio.sleep(wait)
        return await call()


def _dump(body: Any) -> str:
    try:
        return json.dumps(body, ensure_ascii=False)
    except (RecursionError, ValueError, TypeError) as exc:
        return f"<notification body not representable: {type(exc).__name__}>"


def _ids(data: dict[str, Any]) -> tuple[str | None, str | None]:
    """(chat id, message id) of a notification, where it has them as strings."""
    sender = data.get("senderData")
    chat = sender.get("chatId") if isinstance(sender, dict) else None
    message_id = data.get("idMessage")
    return (chat if isinstance(chat, str) else None,
            message_id if isinstance(message_id, str) else None)


class JournalLag(RetryableError):
    """An interrupted send is not in the outgoing journal, which may still lag: ask later."""


def health_of(state: str) -> Health:
    status, reason = HEALTH_BY_STATE.get(
        state, ("degraded", f"{state} (unknown state) — fix: look at the instance in the Green-API console"))
    return Health(status, f"Green-API instance state: {reason}")


class GreenApiChannel(ChannelBase):
    """One tenant's Green-API instance."""

    name = CHANNEL
    Config = GreenApiConfig
    # Every notification names its instance; one URL serves every tenant's instance.
    routing = Routing.body("instanceData.idInstance")
    max_text_chars = MAX_MESSAGE_CHARS
    # The API token sits in the URL path: /waInstance{id}/{method}/{token}.
    redact_patterns = (URL_TOKEN_RE,)
    # lastOutgoingMessages tells whether an interrupted send went out (contract §10).
    can_reconcile = True

    def __init__(self, config: GreenApiConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self.config: GreenApiConfig = config
        context.add_secret(config.api_token)
        if config.webhook_token:
            context.add_secret(config.webhook_token)
        self.client = GreenApiClient(config, context.tenant, context.http)
        self._state: str | None = None
        self._state_at = 0.0
        self._settings_verdict: Health | None = None
        self._settings_at = 0.0

    # -- lifecycle ---------------------------------------------------------------
    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()

    async def health(self) -> Health:
        """Instance authorised (getStateInstance), then notifications routed here (getSettings)."""
        # getStateInstance is limited to 1 request/s: answer from a recent state
        # (polled or pushed by a stateInstanceChanged webhook) when there is one.
        if self._state is None or time.monotonic() - self._state_at > HEALTH_CACHE_S:
            try:
                self._remember_state(await _once_more_if_limited(self.client.get_state))
            except MaxcoreError as exc:
                return Health.down(f"Green-API getStateInstance failed: {exc}")
        assert self._state is not None
        state = health_of(self._state)
        if state.status is not HealthStatus.OK:
            return state  # an unauthorised instance is the first thing to fix
        return await self._settings_health(state)

    async def _settings_health(self, state: Health) -> Health:
        # getSettings is limited to 1 request/s too, and settings change only through
        # setup: a verdict is reused for HEALTH_CACHE_S (only successful reads are kept).
        if self._settings_verdict is not None and time.monotonic() - self._settings_at <= HEALTH_CACHE_S:
            return self._settings_verdict
        try:
            settings = await _once_more_if_limited(self.client.get_settings)
        except MaxcoreError as exc:
            return Health.degraded(f"instance authorized but Green-API getSettings failed: {exc}")
        finding = check_settings(settings, self.config, self.tenant, self.context.public_url, self.name)
        if finding is None:
            url = str(settings.get("webhookUrl") or "")
            target = f"webhook {url}" if self.config.mode == "webhook" and url else f"{self.config.mode} mode"
            finding = Health.ok(f"{state.reason}, {target}")
        self._settings_verdict, self._settings_at = finding, time.monotonic()
        return finding

    def _remember_state(self, state: str) -> None:
        self._state, self._state_at = state, time.monotonic()

    # -- inbound -----------------------------------------------------------------
    @property
    def route_key(self) -> str:
        return str(self.config.instance_id)

    def _check_token(self, request: WebhookRequest) -> None:
        # One answer for every refusal (and for an unknown instance, from the core): the
        # caller learns nothing about which instances exist or how they are set up. The
        # log says which it was.
        expected = self.config.webhook_token
        given = (request.header("authorization") or "").strip()
        # Green-API sends "Bearer <token>"; its own sample servers also accept the bare token.
        if given[:7].lower() == "bearer ":
            given = given[7:].strip()
        if not expected:
            why = "webhooks are disabled for this instance (polling mode)"
        elif not given:
            why = "missing Authorization header (Bearer <webhook token>)"
        elif not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
            why = "invalid webhook token"
        else:
            return
        logger.bind(tenant=self.tenant).info("[GREENAPI_WEBHOOK] webhook refused: {}", why)
        raise WebhookError(401, UNAUTHORISED)

    async def parse_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        self._check_token(request)
        data = json_body(request)
        try:
            return self.handle_notification(data, "webhook")
        except WebhookError as exc:
            # Authenticated: Green-API would redeliver a refused body for a day. It is
            # answered 200 and kept as a dead letter instead.
            raise UnprocessableBody(exc.reason, *_ids(data)) from None
        except Exception as exc:  # noqa: BLE001 - a parser bug must not become a 500
            logger.bind(tenant=self.tenant).opt(exception=exc).error(
                "[GREENAPI_WEBHOOK] notification could not be parsed: {}: {}", type(exc).__name__, exc)
            raise UnprocessableBody(f"{type(exc).__name__}: {exc}", *_ids(data)) from None

    def handle_notification(self, data: dict[str, Any], transport: str) -> list[InboundMessage]:
        """Classify, log and return the messages to record (both transports)."""
        parsed = parse_notification(data, self.tenant, self.config.ignore_groups)
        self._log(parsed, transport)
        if parsed.state is not None:
            self._remember_state(parsed.state)
        if parsed.message is None:
            return []
        if parsed.action == RESEND_PROMPT:
            # Answered without the model, through the core's journalled reply path.
            return [attrs.evolve(parsed.message, metadata={
                **parsed.message.metadata, FIXED_REPLY: self.resend_text(parsed.message),
            })]
        if parsed.action == PROCESS:
            return [parsed.message]
        return []

    def _log(self, parsed: Parsed, transport: str) -> None:
        message_id = parsed.message.message_id if parsed.message else "-"
        log = logger.bind(tenant=self.tenant, message_id=message_id)
        log.log(parsed.level, "[GREENAPI_WEBHOOK] {} {} via {}: {}", parsed.type_webhook,
                parsed.action, transport, parsed.summary)

    # -- polling ---------------------------------------------------------------------
    @property
    def polls(self) -> bool:
        """Only a polling instance needs a receiver task (and its client open at start)."""
        return self.config.mode == "polling"

    async def run_receiver(self, submit: Submit) -> None:
        if self.config.mode != "polling":
            return
        log = logger.bind(tenant=self.tenant)
        log.info("[GREENAPI_WEBHOOK] polling instance {} (receiveTimeout {}s)",
                 self.config.instance_id, self.config.receive_timeout_s)
        failures = 0
        while True:
            try:
                notification = await self.client.receive(self.config.receive_timeout_s)
                if notification is not None:
                    await self._take(notification, submit)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the poller backs off and goes on
                failures += 1
                delay = self._poll_delay(failures, permanent=isinstance(exc, PermanentError))
                log.log("ERROR" if isinstance(exc, PermanentError) else "WARNING",
                        "[GREENAPI_WEBHOOK] polling failed ({}: {}); next try in {:.2f}s",
                        type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)

    def _poll_delay(self, failures: int, permanent: bool) -> float:
        initial = self.config.backoff_initial_ms / 1000
        ceiling = min(initial * 2 ** min(failures - 1, 16), POLL_BACKOFF_MAX_S)
        # A bad token or quota will not heal in a second: wait the ceiling at once.
        return POLL_BACKOFF_MAX_S if permanent else random.uniform(ceiling / 2, ceiling)

    async def _take(self, notification: dict[str, Any], submit: Submit) -> None:
        """Record one notification in the inbox, and only then delete it upstream."""
        receipt = notification.get("receiptId")
        body = notification.get("body")
        log = logger.bind(tenant=self.tenant)
        if not isinstance(receipt, int) or isinstance(receipt, bool):
            log.error("[GREENAPI_WEBHOOK] notification without a receiptId ignored")
            return
        messages: list[InboundMessage] = []
        if isinstance(body, dict):
            try:
                messages = self.handle_notification(body, "polling")
            except Exception as exc:  # noqa: BLE001 - kept as a dead letter, the queue goes on
                reason = exc.reason if isinstance(exc, WebhookError) else f"{type(exc).__name__}: {exc}"
                log.warning("[GREENAPI_WEBHOOK] malformed notification {} kept as a dead letter: {}",
                            receipt, reason)
                messages = [dead_letter(self.tenant, CHANNEL, _dump(body), reason, *_ids(body))]
        else:
            log.warning("[GREENAPI_WEBHOOK] notification {} has no body; dropped", receipt)
        for message in messages:
            # Returns once the inbox holds it (True) or already held it (False): either
            # way it is safe to delete. A crash before the delete replays it, deduped.
            await submit(message)
        if not await self.client.delete(receipt):
            log.info("[GREENAPI_WEBHOOK] receipt {} was already deleted", receipt)

    # -- outbound ---------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SendResult:
        parts = split_message(message.text)
        first_id: str | None = None
        log = logger.bind(tenant=self.tenant, message_id=message.reply_to or "-")
        for index, part in enumerate(parts):
            payload: dict[str, Any] = {"chatId": message.chat_id, "message": part}
            quote = message.metadata.get("quoted_message_id") or (
                message.reply_to if self.config.quote_replies else None)
            if index == 0 and quote:
                payload["quotedMessageId"] = quote
            if self.config.link_preview is not None:
                payload["linkPreview"] = self.config.link_preview
            if self.config.typing_time_ms is not None:
                payload["typingTime"] = self.config.typing_time_ms
            provider_id = await self.client.send_message(payload)
            first_id = first_id or provider_id
            log.info("[GREENAPI_SEND] sent part {}/{} ({} chars) to chat {}: idMessage {}",
                     index + 1, len(parts), len(part), message.chat_id, provider_id)
        if self._state == "notAuthorized":
            # Accepted and kept up to 24 h by Green-API until the QR code is scanned (§12).
            log.warning("[GREENAPI_SEND] instance not authorised: the reply is queued at Green-API, "
                        "not delivered — fix: scan the QR code in the Green-API console")
            return SendResult(message_id=first_id, status="queued")
        return SendResult(message_id=first_id)

    async def find_sent(self, chat_id: str, text: str, since: float, *,
                        exclude: frozenset[str] = frozenset()) -> SendResult | None:
        """Look for an interrupted send in the outgoing journal (``lastOutgoingMessages``):
        every part of ``text`` sent by the API to ``chat_id`` since ``since``, leaving out
        the messages in ``exclude`` (an earlier reply of the same text). Not there
        yet while the journal may still lag (``outgoing_journal_lag_s`` from ``since``):
        raise RetryableError so the inbox asks again once the lag has passed."""
        elapsed = time.time() - since
        minutes = max(1, int(elapsed // 60) + 2)
        journal = await self.client.last_outgoing(minutes)
        # Timestamps are whole seconds: a send in the second ``since`` falls in counts.
        earliest = int(since) - 1
        found: dict[str, str | None] = {}
        for entry in journal:
            if (entry.get("chatId") == chat_id and entry.get("sendByApi") is not False
                    and isinstance(entry.get("timestamp"), int) and entry["timestamp"] >= earliest
                    and entry.get("idMessage") not in exclude):
                found.setdefault(str(entry.get("textMessage")), entry.get("idMessage"))
        parts = split_message(text)
        log = logger.bind(tenant=self.tenant)
        if all(part in found for part in parts):
            status = "queued" if any(e.get("statusMessage") == "pending" for e in journal
                                     if e.get("idMessage") == found[parts[0]]) else "sent"
            return SendResult(message_id=found[parts[0]], status=status)
        lag = self.config.outgoing_journal_lag_s
        if elapsed < lag:
            log.info("[GREENAPI_SEND] interrupted send to chat {} not in the outgoing journal yet; "
                     "asking again in {:.1f}s", chat_id, lag - elapsed)
            raise JournalLag(f"Green-API outgoing journal may lag {lag:g}s; the send started "
                             f"{elapsed:.1f}s ago", retry_after=lag - elapsed)
        if any(part in found for part in parts):
            # Some parts of a long reply went out: sending again repeats them (at least once).
            log.warning("[GREENAPI_SEND] only some parts of an interrupted send to chat {} went "
                        "out: sending the whole reply again", chat_id)
        return None

    def resend_text(self, message: InboundMessage) -> str:
        """What to answer when Green-API could not deliver the sender's message to us."""
        marker = str(message.metadata.get("marker") or "")
        return self.config.resend_text or RESEND_TEXTS.get(marker, RESEND_TEXTS["default"])
