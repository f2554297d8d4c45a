"""Replays follow the recorded path: model replies and tool results are read back by
content, so a model that would answer differently the second time changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from maxcore import InboundMessage, LLMReply
from maxcore.connectors import LeadQuery
from maxcore.errors import RetryableError
from maxcore.journal import DONE, MemoryJournalStore, MessageJournal
from maxcore.runtime import Runtime
from tests.conftest import REQUESTS, call

LEAD = {"first_name": "Jean", "last_name": "Dupont", "email": "jean@dupont.fr", "industry": "btp"}


@pytest.fixture
async def runtime(make_config: Any, plugins: Any) -> Any:
    rt = Runtime.from_directory(make_config("acme", llm="scripted"), plugins=plugins)
    await rt.open()
    yield rt
    await rt.close()


def message(message_id: str = "m1") -> InboundMessage:
    return InboundMessage(tenant="acme", channel="webchat", chat_id="chat-1", message_id=message_id,
                          text="Nouveau lead : Jean Dupont")


def upstream_down(_request: Any) -> LLMReply:
    raise RetryableError("the model is down")


async def test_a_replay_reuses_the_recorded_model_reply_and_tool_result(
        runtime: Any, script: Any, test_plugin: Any) -> None:
    # First attempt: the model calls upsert_lead, then fails on the second round.
    # Asked again from scratch it would answer in words at once (another path).
    script(LLMReply(tool_calls=(call("upsert_lead", LEAD, "c1"),)), upstream_down,
           LLMReply(text="Lead créé"), LLMReply(text="(a different path)"))
    with pytest.raises(RetryableError):
        await runtime.handle(message())
    result = await runtime.handle(message())
    assert result.reply.text == "Lead créé" and result.tool_calls == ("upsert_lead",)
    assert result.replayed_steps >= 2  # the memory read and the model's first reply
    # Round 0 was asked once; round 1 twice (the failure, then the answer).
    assert len(REQUESTS["default"]) == 3
    assert [e for e in test_plugin.events if e[0] == "tool_called"] == [("tool_called", "upsert_lead")]
    crm = runtime.tenant("acme").crm
    assert len(await crm.search_leads(LeadQuery(email="jean@dupont.fr"))) == 1
    memory = runtime.tenant("acme").memory
    assert len(await memory.audit_log(action="lead_created")) == 1
    assert len(await memory.audit_log(action="llm_call")) == 2  # one row per answered request

    again = await runtime.handle(message())  # a third delivery: already answered
    assert again.reply.text == "Lead créé" and len(REQUESTS["default"]) == 3
    assert len(await memory.audit_log(action="reply_sent")) == 1


async def test_steps_are_keyed_by_content_not_position() -> None:
    store = MemoryJournalStore()
    first = await MessageJournal.open(store, message())
    step = first.step("tool", {"name": "upsert_lead", "arguments": {"email": "a@x.fr", "first_name": "A"}})
    first.finish(step, {"result": {"id": "1"}})

    replay = await MessageJournal.open(store, message())
    # Same call, arguments in another order: the recorded result.
    same = replay.step("tool", {"name": "upsert_lead", "arguments": {"first_name": "A", "email": "a@x.fr"}})
    assert replay.done(same) == {"result": {"id": "1"}}
    # Another call at the same position: not the old result.
    other = replay.step("tool", {"name": "upsert_lead", "arguments": {"email": "b@x.fr"}})
    assert replay.done(other) is None
    # The same request twice in one message: two steps.
    assert replay.step("tool", {"name": "upsert_lead", "arguments": {"email": "a@x.fr", "first_name": "A"}}) \
        != same
    assert (await store.load(message().dedupe_key))[step].state == DONE
