"""Interrupted sends: checked against Green-API's outgoing journal before any retry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.harness import running
from maxcore.types import InboundMessage

from .conftest import CHAT, INSTANCE

LEAD = "Nouveau lead : Jean Dupont, BTP, jean@dupont.fr"


def inbound(message_id: str = "3EB0JOURNAL01", text: str = LEAD) -> InboundMessage:
    return InboundMessage(tenant="acme", channel="greenapi", chat_id=CHAT, message_id=message_id,
                          text=text)


async def replies(runtime: object) -> list[dict[str, object]]:
    memory = runtime.tenant("acme").memory  # type: ignore[attr-defined]
    return [entry.details for entry in await memory.audit_log(action="reply_sent")]


async def test_a_send_whose_answer_was_lost_is_found_and_not_repeated(
        greenapi: tuple[GreenApiEmulator, str], greenapi_config: Callable[..., Path]) -> None:
    emulator, _ = greenapi
    # Green-API takes the message, then the answer is lost (a 502 on the way back).
    emulator.fail("sendMessage", status=502, deliver=True)
    async with running(greenapi_config()) as r:
        await r.runtime.submit(inbound())
        await r.settle(20)
        audit = await replies(r.runtime)
    instance = emulator.instances[INSTANCE]
    assert [m["chatId"] for m in instance.sent] == [CHAT]  # once, not twice
    assert len(audit) == 1 and audit[0]["reconciled"] is True
    assert audit[0]["provider_message_id"] == instance.sent[0]["idMessage"]
    # The journal was read after its lag, never in a tight loop (1 request/s upstream).
    assert 1 <= instance.calls.count("lastOutgoingMessages") <= 4


async def test_a_send_that_never_left_is_sent_once_the_lag_has_passed(
        greenapi: tuple[GreenApiEmulator, str], greenapi_config: Callable[..., Path]) -> None:
    emulator, _ = greenapi
    # The request hangs and times out on our side: it may or may not have reached Green-API.
    emulator.fail("sendMessage", status=502, times=1)
    async with running(greenapi_config()) as r:
        await r.runtime.submit(inbound())
        await r.settle(20)
        audit = await replies(r.runtime)
    instance = emulator.instances[INSTANCE]
    assert len(instance.sent) == 1 and len(audit) == 1 and "reconciled" not in audit[0]
    assert instance.calls.count("lastOutgoingMessages") >= 1


async def test_a_refused_send_is_retried_without_asking_the_journal(
        greenapi: tuple[GreenApiEmulator, str], greenapi_config: Callable[..., Path]) -> None:
    emulator, _ = greenapi
    emulator.fail("sendMessage", status=429, times=2)  # rate limited: certainly not taken
    async with running(greenapi_config()) as r:
        await r.runtime.submit(inbound())
        await r.settle(20)
    instance = emulator.instances[INSTANCE]
    assert len(instance.sent) == 1 and instance.calls.count("lastOutgoingMessages") == 0


async def test_a_reply_to_a_not_authorised_instance_is_audited_as_queued(
        greenapi: tuple[GreenApiEmulator, str], greenapi_config: Callable[..., Path]) -> None:
    emulator, _ = greenapi
    emulator.set_state(INSTANCE, "notAuthorized")
    async with running(greenapi_config()) as r:
        health = await r.runtime.health()
        await r.runtime.submit(inbound())
        await r.settle(20)
        audit = await replies(r.runtime)
    channel = health["tenants"]["acme"]["connectors"]["channel"]
    assert channel["status"] == "down" and "scan the QR code" in channel["reason"]
    assert [a["status"] for a in audit] == ["queued"]
    instance = emulator.instances[INSTANCE]
    assert instance.sent == [] and len(instance.queued) == 1
