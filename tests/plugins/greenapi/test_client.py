"""Sending, error mapping, health and configuration, against the emulator over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from greenapi_support import API_TOKEN, INSTANCE, TOKENS, load_fixture
from maxcore_greenapi.channel import GreenApiChannel
from maxcore_greenapi.client import MAX_MESSAGE_CHARS, split_message
from maxcore_greenapi.config import GreenApiConfig

from maxcore.config.structure import structure
from maxcore.errors import PermanentError, RetryableError
from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.types import OutboundMessage

CHAT = "33612345678@c.us"


@pytest.fixture
async def channel(make_channel: Callable[..., GreenApiChannel]) -> AsyncIterator[GreenApiChannel]:
    opened = make_channel()
    await opened.open()
    yield opened
    await opened.close()


def no_secret(text: str) -> None:
    assert not any(token in text for token in TOKENS), text


async def test_send_matches_the_documented_request(
    make_channel: Callable[..., GreenApiChannel], emulator: GreenApiEmulator
) -> None:
    request = load_fixture("send_message_request.json")
    channel = make_channel(quote_replies=True, link_preview=False, typing_time_ms=3000)
    await channel.open()
    try:
        result = await channel.send(OutboundMessage(
            chat_id=request["chatId"], text=request["message"], reply_to=request["quotedMessageId"]))
    finally:
        await channel.close()
    [sent] = emulator.instances[INSTANCE].sent
    assert {k: v for k, v in sent.items() if k != "idMessage"} == request
    assert result.message_id == sent["idMessage"]


async def test_long_message_split_on_paragraphs(channel: GreenApiChannel, emulator: GreenApiEmulator) -> None:
    paragraphs = [f"Paragraphe {i} : " + "mot " * 1200 for i in range(12)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    assert len(text) > 2 * MAX_MESSAGE_CHARS
    await channel.send(OutboundMessage(chat_id=CHAT, text=text, reply_to="3EB0X"))
    parts = [m["message"] for m in emulator.instances[INSTANCE].sent]
    assert len(parts) >= 3 and all(len(p) <= MAX_MESSAGE_CHARS for p in parts)
    assert all(p.startswith("Paragraphe") for p in parts)  # cut between paragraphs
    assert "\n\n".join(parts) == text
    assert "quotedMessageId" not in emulator.instances[INSTANCE].sent[0]  # quote_replies is off


def test_split_without_paragraphs() -> None:
    assert split_message("court") == ["court"]
    words = "a" * 50 + " " + "b" * 50
    assert split_message(words, 60) == ["a" * 50, "b" * 50]
    assert split_message("x" * 130, 60) == ["x" * 60, "x" * 60, "x" * 10]


async def test_429_and_502_are_raised_for_the_inbox_to_retry(
        channel: GreenApiChannel, emulator: GreenApiEmulator) -> None:
    """No retry loop inside a worker: one call, a RetryableError, the inbox schedules."""
    emulator.fail("sendMessage", status=429, times=1)
    with pytest.raises(RetryableError) as limited:
        await channel.send(OutboundMessage(chat_id=CHAT, text="Bonjour"))
    assert getattr(limited.value, "not_sent", False)  # a 429 took nothing
    emulator.fail("sendMessage", status=502, times=1)
    with pytest.raises(RetryableError) as failed:
        await channel.send(OutboundMessage(chat_id=CHAT, text="Bonjour"))
    assert "502" in str(failed.value) and not getattr(failed.value, "not_sent", False)
    no_secret(str(failed.value))
    await channel.send(OutboundMessage(chat_id=CHAT, text="Bonjour"))
    calls = emulator.instances[INSTANCE].calls
    assert calls.count("sendMessage") == 3 and len(emulator.instances[INSTANCE].sent) == 1


async def test_not_authorised_instance_queues_the_reply(
        channel: GreenApiChannel, emulator: GreenApiEmulator) -> None:
    """Green-API accepts sendMessage before the QR code is scanned and holds it (§12)."""
    emulator.set_state(INSTANCE, "notAuthorized")
    assert (await channel.health()).status == "down"
    result = await channel.send(OutboundMessage(chat_id=CHAT, text="Bonjour"))
    assert result.status == "queued" and result.message_id
    instance = emulator.instances[INSTANCE]
    assert instance.sent == [] and [m["message"] for m in instance.queued] == ["Bonjour"]
    emulator.set_state(INSTANCE, "authorized")
    assert [m["message"] for m in instance.sent] == ["Bonjour"] and instance.queued == []


@pytest.mark.parametrize(("setup", "expected"), [
    ("state:blocked", "scan the QR code"),
    ("quota", "monthly quota exceeded"),
    ("token", "api_token"),
    ("instance", "instance_id"),
    ("too_long", "20000"),
])
async def test_permanent_errors_name_the_cause(
    setup: str, expected: str, make_channel: Callable[..., GreenApiChannel], emulator: GreenApiEmulator
) -> None:
    overrides: dict[str, Any] = {}
    text = "Bonjour"
    if setup.startswith("state:"):
        emulator.set_state(INSTANCE, setup.split(":")[1])
    elif setup == "quota":
        emulator.instances[INSTANCE].quota_exceeded = True
    elif setup == "token":
        overrides["api_token"] = API_TOKEN[::-1]
    elif setup == "instance":
        overrides["instance_id"] = 7105999999
    else:
        text = "x" * (MAX_MESSAGE_CHARS + 1)
    channel = make_channel(**overrides)
    await channel.open()
    try:
        if setup == "too_long":  # our splitter never sends it: call the client directly
            with pytest.raises(PermanentError) as info:
                await channel.client.send_message({"chatId": CHAT, "message": text})
        else:
            with pytest.raises(PermanentError) as info:
                await channel.send(OutboundMessage(chat_id=CHAT, text=text))
    finally:
        await channel.close()
    assert expected in str(info.value)
    no_secret(str(info.value))
    assert emulator.instances.get(INSTANCE) is None or len(emulator.instances[INSTANCE].sent) == 0
    if setup == "quota":
        assert "CORRESPONDENTS_QUOTE_EXCEEDED" in str(info.value)


async def test_starting_instance_is_retryable(channel: GreenApiChannel, emulator: GreenApiEmulator) -> None:
    emulator.set_state(INSTANCE, "starting")
    with pytest.raises(RetryableError) as info:
        await channel.client.send_message({"chatId": CHAT, "message": "Bonjour"})
    assert "starting" in str(info.value)


@pytest.mark.parametrize(("state", "status"), [
    ("authorized", "ok"), ("starting", "degraded"), ("sleepMode", "degraded"),
    ("notAuthorized", "down"), ("blocked", "down"), ("yellowCard", "down"),
])
async def test_health_from_get_state_instance(
    state: str, status: str, channel: GreenApiChannel, emulator: GreenApiEmulator
) -> None:
    emulator.set_state(INSTANCE, state)
    health = await channel.health()
    assert health.status == status and state in health.reason
    await channel.health()  # answered from the cache: getStateInstance allows 1 request/s
    assert emulator.instances[INSTANCE].calls.count("getStateInstance") == 1


async def test_health_down_when_unreachable_or_refused(make_channel: Callable[..., GreenApiChannel]) -> None:
    refused = make_channel(api_token="wrong-token-value")
    unreachable = make_channel(api_url="http://127.0.0.1:9", timeout_s=2)
    for channel in (refused, unreachable):
        await channel.open()
        try:
            health = await channel.health()
        finally:
            await channel.close()
        assert health.status == "down"
        no_secret(health.reason)
        assert "wrong-token-value" not in health.reason


async def test_rate_limit_answers_429(channel: GreenApiChannel) -> None:
    await channel.client.get_state()
    with pytest.raises(RetryableError) as info:
        await channel.client.get_state()
    assert "429" in str(info.value) and info.value.retry_after == 1.0


@pytest.mark.parametrize(("settings", "problem"), [
    ({"api_token": "t", "webhook_token": "w"}, "instance_id"),
    ({"instance_id": "71O5", "api_token": "t", "webhook_token": "w"}, "instance_id"),
    ({"instance_id": 1, "api_token": "t"}, "webhook_token"),
    ({"instance_id": 1, "api_token": "t", "webhook_token": "w", "mode": "push"}, "mode"),
    ({"instance_id": 1, "api_token": "t", "webhook_token": "w", "api_url": "ftp://x"}, "api_url"),
    ({"instance_id": 1, "api_token": "t", "webhook_token": "w", "typing_time_ms": 50}, "typing_time_ms"),
    ({"instance_id": 1, "api_token": "t", "webhook_token": "w", "send_delay_ms": 100}, "send_delay_ms"),
    ({"instance_id": 1, "api_token": "t", "webhook_token": "w", "receive_timeout_s": 90},
     "receive_timeout_s"),
    ({"instance_id": 1, "api_token": "t", "webhook_token": "w", "ignore_groups": "no"}, "ignore_groups"),
    ({"instance_id": 1, "api_token": "t", "webhook_token": "w", "tokn": "x"}, "tokn"),
])
def test_config_problems_name_the_key(settings: dict[str, Any], problem: str) -> None:
    config, problems = structure(settings, GreenApiConfig, "channel")
    assert config is None
    assert any(problem in path for path, _message in problems), problems


def test_config_accepts_env_strings_and_instance_hosts() -> None:
    config, problems = structure({"instance_id": "7105000001", "api_token": "t", "mode": "polling",
                                  "api_url": "https://7105.api.greenapi.com/"}, GreenApiConfig)
    assert problems == [] and config is not None
    assert config.instance_id == "7105000001" and config.api_url == "https://7105.api.greenapi.com"
    assert config.ignore_groups is True and config.webhook_token is None


async def test_upstream_timeout_is_retryable_and_may_have_been_sent(
        make_channel: Callable[..., GreenApiChannel], emulator: GreenApiEmulator) -> None:
    """A hung upstream (no answer within timeout_s) is a transport failure the inbox retries;
    it is not marked ``not_sent``: the request may have got through (the journal checks)."""
    channel = make_channel(timeout_s=1)
    emulator.fail("sendMessage", status=502, delay_s=1.5, times=1)
    await channel.open()
    try:
        with pytest.raises(RetryableError) as info:
            await channel.send(OutboundMessage(chat_id=CHAT, text="Bonjour"))
        assert not getattr(info.value, "not_sent", False)
        await channel.send(OutboundMessage(chat_id=CHAT, text="Bonjour"))
    finally:
        await channel.close()
    assert len(emulator.instances[INSTANCE].sent) == 1
