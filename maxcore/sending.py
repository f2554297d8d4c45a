"""Sends that happen once: journalled before and after, reconciled when interrupted.

A send is recorded as ``started`` (with its chat and text) before the channel is called
and as ``done`` (with the provider's id) after. A replay that finds a send started but
not done does not know whether it went out: a channel that can look at the provider's
record of sent messages (``can_reconcile``, ``find_sent``; Green-API's outgoing journal)
is asked first; a channel that cannot is sent to again (at least once).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, cast

from loguru import logger

from .connectors import Channel
from .journal import MessageJournal
from .retry import is_retryable
from .types import AuditEntry, OutboundMessage, SendResult

AuditFor = Callable[[SendResult, bool], list[AuditEntry]]


def refused_before_sending(exc: BaseException) -> bool:
    """The provider certainly did not take the message: a permanent refusal (4xx), or an
    error the channel marks ``not_sent`` (a 429, an instance still booting)."""
    return bool(getattr(exc, "not_sent", False)) or not is_retryable(exc)


# Sends recorded this long before an interrupted one are offered to find_sent as taken.
CLAIMED_WINDOW_S = 600.0


def takes_exclude(channel: Any) -> bool:
    """Whether ``channel.find_sent`` accepts ``exclude`` (channels written before it do not)."""
    return _class_takes_exclude(type(channel))  # type: ignore[arg-type]  # classes hash


@functools.cache
def _class_takes_exclude(cls: type) -> bool:
    try:
        parameters = inspect.signature(cls.find_sent).parameters  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return False
    return "exclude" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


async def reconcile(channel: Any, outbound: OutboundMessage, since: float,
                    claimed: frozenset[str] = frozenset()) -> SendResult | None:
    """What the provider knows of a send started at ``since``: its result, or None when it
    was not sent (or the channel cannot tell). ``claimed``: provider ids the journal gave
    to other sends, which are not this one. May raise RetryableError: "ask again later"."""
    log = logger.bind(message_id=outbound.reply_to or "-")
    if not getattr(channel, "can_reconcile", False):
        log.warning("[PIPELINE] a send to chat {} was interrupted and this channel cannot check "
                    "whether it went out: sending again (at least once)", outbound.chat_id)
        return None
    if takes_exclude(channel):
        found: SendResult | None = await channel.find_sent(
            outbound.chat_id, outbound.text, since, exclude=claimed)
    else:
        found = await channel.find_sent(outbound.chat_id, outbound.text, since)
        if found is not None and found.message_id in claimed:
            # Another message's send of the same text: this one cannot be told apart.
            log.warning("[PIPELINE] the provider's record of chat {} shows only an earlier send "
                        "of the same text: sending again (at least once)", outbound.chat_id)
            found = None
    if found is not None:
        log.info("[PIPELINE] interrupted send to chat {} found at the provider (id {}): not repeated",
                 outbound.chat_id, found.message_id)
    else:
        log.info("[PIPELINE] interrupted send to chat {} not found at the provider: sending it",
                 outbound.chat_id)
    return found


async def send_once(channel: Channel, journal: MessageJournal, step: str,
                    outbound: OutboundMessage, audit_for: AuditFor) -> SendResult:
    """Send ``outbound`` as journal step ``step`` (which must not be done yet)."""
    started = journal.started(step)
    if started is not None:
        claimed = await journal.store.sent_ids(
            journal.message.tenant, outbound.chat_id, started.started_at - CLAIMED_WINDOW_S)
        found = await reconcile(channel, outbound, started.started_at, frozenset(claimed))
        if found is not None:
            journal.finish(step, _done(outbound, found, reconciled=True), audit_for(found, True))
            return found
    await journal.start(step, {"chat_id": outbound.chat_id, "text": outbound.text})
    try:
        result = await channel.send(outbound)
    except Exception as exc:
        if refused_before_sending(exc):
            await journal.clear(step)
        raise
    journal.finish(step, _done(outbound, result, reconciled=False), audit_for(result, False))
    return result


def _done(outbound: OutboundMessage, result: SendResult, *, reconciled: bool) -> dict[str, Any]:
    return {"chat_id": outbound.chat_id, "text": outbound.text, "message_id": result.message_id,
            "status": result.status, "reconciled": reconciled}


def result_of(recorded: dict[str, Any]) -> SendResult:
    return SendResult(message_id=recorded.get("message_id"), status=recorded.get("status") or "sent")


class JournalledChannel:
    """The tenant's channel as tools see it: ``send`` goes through the journal."""

    def __init__(self, channel: Channel, journal: MessageJournal) -> None:
        self._channel = channel
        self._journal = journal

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)

    async def send(self, message: OutboundMessage) -> SendResult:
        step = self._journal.step("tool_send", {"chat_id": message.chat_id, "text": message.text})
        recorded = self._journal.done(step)
        if recorded is not None:
            return result_of(recorded)
        return await send_once(self._channel, self._journal, step, message, lambda _r, _c: [])

    def as_channel(self) -> Channel:
        return cast(Channel, self)
