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


async def test_an_earlier_reply_of_the_same_text_is_not_taken_for_an_interrupted_one(
        greenapi: tuple[GreenApiEmulator, str], greenapi_config: Callable[..., Path]) -> None:
    emulator, _ = greenapi
    update = "Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, +33612345678"
    async with running(greenapi_config()) as r:
        for message_id, text in (("3EB0SAME01", LEAD), ("3EB0SAME02", update)):
            await r.runtime.submit(inbound(message_id, text))
            await r.settle(20)
        # The same update again: the same reply text, to the same chat, a moment later.
        # Its send fails on the way (502, not delivered): the outgoing journal then holds
        # only the previous message's identical reply, which is not this one.
        emulator.fail("sendMessage", status=502, times=1)
        await r.runtime.submit(inbound("3EB0SAME03", update))
        await r.settle(20)
        audit = await replies(r.runtime)
    sent = emulator.instances[INSTANCE].sent
    assert len(sent) == 3 and sent[1]["message"] == sent[2]["message"]
    assert len(audit) == 3 and not any(a.get("reconciled") for a in audit), audit
    assert len({a["provider_message_id"] for a in audit}) == 3


async def test_a_channel_without_exclude_gets_a_claimed_answer_treated_as_not_sent() -> None:
    from maxcore.sending import reconcile, takes_exclude
    from maxcore.types import OutboundMessage, SendResult

    class OlderChannel:  # find_sent written before `exclude` existed
        can_reconcile = True

        async def find_sent(self, chat_id: str, text: str, since: float) -> SendResult | None:
            return SendResult(message_id="earlier-reply")

    class CurrentChannel(OlderChannel):
        async def find_sent(self, chat_id: str, text: str, since: float, *,  # type: ignore[override]
                            exclude: frozenset[str] = frozenset()) -> SendResult | None:
            return None if "earlier-reply" in exclude else SendResult(message_id="earlier-reply")

    outbound = OutboundMessage(chat_id=CHAT, text="✅ Lead mis à jour")
    assert not takes_exclude(OlderChannel()) and takes_exclude(CurrentChannel())
    for channel in (OlderChannel(), CurrentChannel()):
        assert await reconcile(channel, outbound, 0.0, frozenset({"earlier-reply"})) is None
        found = await reconcile(channel, outbound, 0.0, frozenset({"another"}))
        assert found is not None and found.message_id == "earlier-reply"
