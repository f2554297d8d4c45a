"""Every contract fixture does what tests/fixtures/greenapi/expectations.json says.

Two levels per fixture: the channel's parser (the InboundMessage it builds, the log
level) and the whole server (HTTP 200, the inbox, whether the model ran, what was sent
back to the emulator's sendMessage).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from greenapi_support import INSTANCE, WEBHOOK_TOKEN, bearer, expectations, load_fixture
from loguru import logger
from maxcore_greenapi.channel import GreenApiChannel

from maxcore.connectors import WebhookRequest
from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.harness import running

EXPECTED = expectations()
WEBHOOK_CASES = sorted(name for name, e in EXPECTED.items() if e["delivery"] == "webhook")
LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "SUCCESS": 25, "WARNING": 30, "ERROR": 40}


def test_fixture_table_is_present() -> None:
    load_fixture("expectations.json")
    assert len(WEBHOOK_CASES) >= 20 and "polling_receive_notification.json" in EXPECTED


def request_for(body: dict[str, Any], token: str = WEBHOOK_TOKEN) -> WebhookRequest:
    return WebhookRequest(headers={"authorization": f"Bearer {token}"}, body=json.dumps(body).encode())


def check_message(messages: list[Any], expected: dict[str, Any]) -> None:
    stored = expected["action"] in ("process", "resend_prompt")
    assert len(messages) == (1 if stored else 0)
    if not stored:
        return
    message = messages[0]
    assert message.tenant == "acme" and message.channel == "greenapi"
    assert message.text == (expected["text"] or "")
    assert message.chat_id == expected["chat_id"]
    assert message.metadata["sender"] == expected["sender"]
    assert f"{message.chat_id}_{message.message_id}" == expected["dedupe_key"]
    assert message.metadata["dedupe_key"] == expected["dedupe_key"]
    assert message.metadata["greenapi_action"] == expected["action"]
    for key, value in (expected["context"] or {}).items():
        assert message.metadata.get(key) == value, key
    json.dumps(message.metadata)  # the durable inbox stores it as JSON


@pytest.mark.parametrize("name", WEBHOOK_CASES)
async def test_parser(name: str, make_channel: Callable[..., GreenApiChannel]) -> None:
    expected = EXPECTED[name]
    records: list[Any] = []
    sink = logger.add(lambda m: records.append(m.record), level="TRACE")
    try:
        messages = await make_channel().parse_webhook(request_for(load_fixture(name)))
    finally:
        logger.remove(sink)
    check_message(messages, expected)
    logged = [r for r in records if "[GREENAPI_WEBHOOK]" in r["message"]]
    assert logged, "no [GREENAPI_WEBHOOK] line"
    assert max(r["level"].no for r in logged) >= LEVELS[expected["log_level"]]
    assert all(r["extra"].get("tenant") == "acme" for r in logged)
    if messages:
        assert logged[-1]["extra"]["message_id"] == messages[0].message_id


async def test_group_message_when_groups_enabled(make_channel: Callable[..., GreenApiChannel]) -> None:
    expected = {**EXPECTED["incoming_group_text.json"], **EXPECTED["incoming_group_text.json"]
                ["if_groups_enabled"]}
    channel = make_channel(ignore_groups=False)
    messages = await channel.parse_webhook(request_for(load_fixture("incoming_group_text.json")))
    check_message(messages, expected)
    assert messages[0].sender_phone == "+15550123456"  # the member, not the group


async def test_lid_chat_has_no_phone(make_channel: Callable[..., GreenApiChannel]) -> None:
    [message] = await make_channel().parse_webhook(request_for(load_fixture("incoming_lid_text.json")))
    assert message.sender_phone is None
    text = await make_channel().parse_webhook(request_for(load_fixture("incoming_text.json")))
    assert text[0].sender_phone == "+33612345678"


async def test_state_webhook_updates_health(make_channel: Callable[..., GreenApiChannel],
                                            emulator: GreenApiEmulator) -> None:
    channel = make_channel()
    await channel.open()
    try:
        await channel.parse_webhook(request_for(load_fixture("state_instance_changed_not_authorized.json")))
        health = await channel.health()  # from the pushed state: no getStateInstance call
        assert health.status == "down" and "scan the QR code" in health.reason
        await channel.parse_webhook(request_for(load_fixture("state_instance_changed_authorized.json")))
        assert (await channel.health()).status == "ok"
        assert "getStateInstance" not in emulator.instances[INSTANCE].calls
    finally:
        await channel.close()


async def test_polling_fixture(
    make_channel: Callable[..., GreenApiChannel], emulator: GreenApiEmulator
) -> None:
    """The receiveNotification wrapper: same parser; deleted only after submit returned."""
    expected = EXPECTED["polling_receive_notification.json"]
    wrapper = load_fixture("polling_receive_notification.json")
    emulator.enqueue(INSTANCE, wrapper["body"], receipt_id=wrapper["receiptId"])
    channel = make_channel(mode="polling")
    submitted: list[Any] = []

    async def submit(message: Any) -> bool:
        assert expected["receipt_id"] not in emulator.instances[INSTANCE].deleted
        submitted.append(message)
        return True

    await channel.open()
    try:
        task = asyncio.create_task(channel.run_receiver(submit))
        await emulator.wait_for(lambda: expected["receipt_id"] in emulator.instances[INSTANCE].deleted)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await channel.close()
    check_message(submitted, expected)
    assert not emulator.instances[INSTANCE].queue


@pytest.mark.parametrize("name", WEBHOOK_CASES)
async def test_through_the_server(
    name: str, make_config: Callable[..., Path], emulator: GreenApiEmulator
) -> None:
    """HTTP 200 always; the model runs only for processed messages; replies as the table says."""
    expected = EXPECTED[name]
    async with running(make_config()) as r:
        response = await r.client.post("/webhooks/greenapi", content=json.dumps(load_fixture(name)),
                                       headers=bearer())
        assert response.status_code == expected["http_status"], response.text
        await r.settle()
        memory = r.runtime.tenant("acme").memory
        llm_calls = await memory.audit_log(action="llm_call")
        vetoed = await memory.audit_log(action="message_vetoed")
        fixed = await memory.audit_log(action="fixed_reply")
    sent = emulator.instances[INSTANCE].sent
    action = expected["action"]
    no_llm = action != "process" or (expected["context"] or {}).get("llm") is False
    assert (len(llm_calls) == 0) == no_llm, llm_calls
    if action == "process" and not no_llm:
        assert response.json()["accepted"] == 1
        assert [m["chatId"] for m in sent] == [expected["chat_id"]]
    elif action == "resend_prompt":
        assert [m["chatId"] for m in sent] == [expected["chat_id"]]
        assert "renvoyer" in sent[0]["message"] and "send it again" in sent[0]["message"]
        assert len(fixed) == 1 and vetoed == []
    elif action == "process":  # a deletion: recorded (inbox + audit), never answered
        assert sent == [] and len(vetoed) == 1
        assert "deleted" in vetoed[0].details["reason"]
    else:
        assert sent == [] and response.json()["accepted"] == 0


async def test_unhandled_message_type_is_ignored(make_channel: Callable[..., GreenApiChannel]) -> None:
    body = load_fixture("incoming_text.json")
    body["messageData"] = {"typeMessage": "pollMessage", "pollMessageData": {"name": "?", "options": []}}
    assert await make_channel().parse_webhook(request_for(body)) == []


async def test_unreadable_and_too_big_markers(make_channel: Callable[..., GreenApiChannel]) -> None:
    body = load_fixture("incoming_swe001.json")
    body["messageData"]["textMessageData"]["textMessage"] = "{{SWE003}}"
    [unreadable] = await make_channel().parse_webhook(request_for(body))
    assert unreadable.metadata["marker"] == "SWE003"
    image = load_fixture("incoming_image_caption.json")
    image["messageData"]["fileMessageData"]["downloadUrl"] = "{{SWE002}}"
    [big] = await make_channel().parse_webhook(request_for(image))
    assert big.metadata["greenapi_action"] == "resend_prompt" and big.metadata["marker"] == "SWE002"
