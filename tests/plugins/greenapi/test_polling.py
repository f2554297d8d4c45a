"""Polling mode end to end: receiveNotification → inbox → deleteNotification → reply."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from greenapi_support import INSTANCE, load_fixture

from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.harness import running

CHAT = "15550123456@c.us"


def lead_message(message_id: str, name: str, email: str) -> dict[str, Any]:
    body = load_fixture("polling_receive_notification.json")["body"]
    body["idMessage"] = message_id
    body["messageData"]["textMessageData"]["textMessage"] = f"Nouveau lead : {name}, {email}"
    return body


async def test_polling_delivers_and_deletes(make_config: Callable[..., Path],
                                            emulator: GreenApiEmulator) -> None:
    wrapper = load_fixture("polling_receive_notification.json")
    instance = emulator.instances[INSTANCE]
    async with running(make_config(mode="polling")) as r:
        emulator.enqueue(INSTANCE, wrapper["body"], receipt_id=wrapper["receiptId"])
        await emulator.wait_for(lambda: wrapper["receiptId"] in instance.deleted and len(instance.sent) == 1)
        await r.settle()
    assert [m["chatId"] for m in instance.sent] == [CHAT]
    assert not instance.queue


async def test_delete_failure_replays_but_processes_once(
    make_config: Callable[..., Path], emulator: GreenApiEmulator
) -> None:
    """The delete after the inbox commit fails: the notification comes back, deduped."""
    instance = emulator.instances[INSTANCE]
    emulator.fail("deleteNotification", status=500, times=2)
    async with running(make_config(mode="polling")) as r:
        receipt = emulator.enqueue(INSTANCE, lead_message("3EB0POLLDEL01", "Jean Dupont", "jean@dupont.fr"))
        await emulator.wait_for(lambda: receipt in instance.deleted)
        await r.settle()
        llm_rounds = await r.runtime.tenant("acme").memory.audit_log(action="llm_call")
    assert instance.calls.count("deleteNotification") == 3
    assert instance.calls.count("receiveNotification") >= 3  # the same head, three times
    assert len(emulator.sent_to(CHAT)) == 1
    assert len({e.message_id for e in llm_rounds}) == 1


async def test_crash_between_inbox_and_delete(
    make_config: Callable[..., Path], emulator: GreenApiEmulator
) -> None:
    """The server dies after the inbox commit, before the delete; the next one skips it."""
    instance = emulator.instances[INSTANCE]
    config_dir = make_config(mode="polling")
    emulator.fail("deleteNotification", status=500, times=10_000)  # the delete never lands
    async with running(config_dir) as r:
        receipt = emulator.enqueue(INSTANCE, lead_message("3EB0CRASH0001", "Jean Dupont", "jean@dupont.fr"))
        await emulator.wait_for(lambda: "deleteNotification" in instance.calls and len(instance.sent) == 1)
        await r.settle()
    assert receipt not in instance.deleted and instance.queue  # still upstream, as after a crash
    emulator.clear_faults()
    async with running(config_dir) as r:
        await emulator.wait_for(lambda: receipt in instance.deleted)
        await r.settle()
        memory = r.runtime.tenant("acme").memory
        llm_rounds = await memory.audit_log(action="llm_call")
        replies = await memory.audit_log(action="reply_sent")
        leads = await r.runtime.tenant("acme").crm.list_leads()
    assert len(emulator.sent_to(CHAT)) == 1 and len(replies) == 1
    assert len({e.message_id for e in llm_rounds}) == 1
    assert [lead.email for lead in leads] == ["jean@dupont.fr"]


async def test_fifo_and_backoff_on_errors(make_config: Callable[..., Path],
                                          emulator: GreenApiEmulator) -> None:
    instance = emulator.instances[INSTANCE]
    emulator.fail("receiveNotification", status=502, times=2)
    people = [("Alice Martin", "alice@martin.fr"), ("Bruno Petit", "bruno@petit.fr"),
              ("Chloé Roux", "chloe@roux.fr")]
    for index, (name, email) in enumerate(people):
        emulator.enqueue(INSTANCE, lead_message(f"3EB0FIFO000{index}", name, email))
    async with running(make_config(mode="polling")) as r:
        await emulator.wait_for(lambda: not instance.queue and len(instance.sent) == 3)
        await r.settle()
    texts = [m["message"] for m in instance.sent]
    for (name, _email), text in zip(people, texts, strict=True):
        assert name.split()[0] in text, texts


async def test_malformed_notification_is_dropped(make_config: Callable[..., Path],
                                                 emulator: GreenApiEmulator) -> None:
    instance = emulator.instances[INSTANCE]
    async with running(make_config(mode="polling")) as r:
        bad = emulator.enqueue(INSTANCE, {"typeWebhook": "incomingMessageReceived"})
        echo = emulator.enqueue(INSTANCE, load_fixture("outgoing_api_message_received.json"))
        await emulator.wait_for(lambda: {bad, echo} <= set(instance.deleted))
        await r.settle()
    assert instance.sent == []


async def test_shutdown_during_long_poll_is_prompt(make_config: Callable[..., Path],
                                                   emulator: GreenApiEmulator) -> None:
    instance = emulator.instances[INSTANCE]
    async with running(make_config(mode="polling")):  # receiveTimeout 20 s
        await emulator.wait_for(lambda: "receiveNotification" in instance.calls)
    # Stopping hung up on the pending long poll instead of waiting out its 20 s.
    await emulator.wait_for(lambda: instance.polls_abandoned == 1)
    assert instance.polls_timed_out == 0
