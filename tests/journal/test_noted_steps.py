"""Steps without an outside effect are noted, then written with the next durable step:
never later than the effect they lead to, in fewer commits than one per step."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from maxcore import InboundMessage, LLMReply, hookimpl
from maxcore.config.models import InboxConfig
from maxcore.durable_inbox import SqliteInbox
from maxcore.journal import DONE, MessageJournal, journal_store_for
from maxcore.plugins import PluginSet
from maxcore.runtime import Runtime
from maxcore.types import AuditEntry
from tests.conftest import RecordingPlugin, call

LEAD = {"first_name": "Jean", "last_name": "Dupont", "email": "jean@dupont.fr", "industry": "btp"}


def message(message_id: str = "m1") -> InboundMessage:
    return InboundMessage(tenant="acme", channel="webchat", chat_id="chat-1", message_id=message_id,
                          text="Nouveau lead : Jean Dupont")


@pytest.fixture
async def inbox(tmp_path: Path) -> Any:
    box = SqliteInbox(InboxConfig(), tmp_path)

    async def never(_message: InboundMessage) -> None:
        raise AssertionError("no message is processed here")

    await box.start(never)
    yield box
    await box.stop(1)


async def test_noted_steps_are_written_with_the_next_durable_one_in_one_commit(inbox: Any) -> None:
    store = journal_store_for(inbox)
    audits: list[int] = []
    journal = MessageJournal(store, message(), {}, lambda: audits.append(1))
    await journal.flush()  # nothing noted: nothing written
    memory, reply, send = journal.step("memory"), journal.step("llm", {"q": 1}), journal.step("reply")
    journal.note(memory, {"history": [], "facts": {}})
    journal.note(reply, {"text": "ok"}, [AuditEntry(action="llm_call", details={}, message_id="m1")])
    assert journal.done(memory) == {"history": [], "facts": {}}  # read back at once in this run
    assert await store.load(message().dedupe_key) == {}  # not in the database yet
    assert audits == []

    batches = inbox.stats()["commit_batches"]
    await journal.start(send, {"chat_id": "chat-1", "text": "ok"})
    stored = await store.load(message().dedupe_key)
    assert {step: record.state for step, record in stored.items()} == {
        memory: DONE, reply: DONE, send: "started"}
    assert audits == [1]
    # The load above is one more batch: the three steps and the audit row took one commit.
    assert inbox.stats()["commit_batches"] == batches + 2
    assert await store.outbox_size() == 1


async def test_the_last_step_commits_with_the_inbox_write_queued_after_it(inbox: Any) -> None:
    store = journal_store_for(inbox)
    await store.load("warm-up")  # the journal's tables exist
    journal = MessageJournal(store, message(), {})
    journal.note(journal.step("memory"), {"history": [], "facts": {}})
    final = journal.step("history")
    batches = inbox.stats()["commit_batches"]
    journal.finish(final, {"reply": "ok", "tools": []})
    assert journal.done(final) == {"reply": "ok", "tools": []}
    # What the inbox queues next (a message's done) shares the commit.
    await inbox.write(lambda conn: conn.execute("SELECT 1").fetchone())
    assert inbox.stats()["commit_batches"] == batches + 1
    stored = await store.load(message().dedupe_key)
    assert stored[final].state == DONE and stored["memory"].state == DONE


class JournalWitness(RecordingPlugin):
    """When a tool is about to run, reads what the journal store holds for the message."""

    def __init__(self) -> None:
        super().__init__()
        self.runtime: Runtime | None = None
        self.seen: list[list[str]] = []

    @hookimpl
    def tool_called(self, call: Any, arguments: dict[str, Any], context: Any) -> Any:
        async def look() -> None:
            assert self.runtime is not None
            # Driven outside the inbox, the pipeline journals in the runtime's direct store.
            store = self.runtime.journal if self.runtime.started else self.runtime._direct_journal
            stored = await store.load(message().dedupe_key)
            self.seen.append(sorted(step.split(":")[0] for step, r in stored.items() if r.state == DONE))

        return look()


async def test_the_model_reply_is_durable_before_its_tool_runs(make_config: Any, script: Any) -> None:
    witness = JournalWitness()
    plugins = PluginSet().load(extra=[("witness", witness)])
    script(LLMReply(tool_calls=(call("upsert_lead", LEAD, "c1"),)), LLMReply(text="Lead créé"))
    runtime = Runtime.from_directory(make_config("acme", llm="scripted"), plugins=plugins)
    witness.runtime = runtime
    await runtime.open()
    try:
        result = await runtime.handle(message())
    finally:
        await runtime.close()
    assert result.reply is not None and result.tool_calls == ("upsert_lead",)
    # The memory read and the reply that asked for the tool, recorded before it ran.
    assert witness.seen == [["llm", "memory"]]


async def test_a_finished_step_is_queued_and_commits_before_the_next_effect_starts(inbox: Any) -> None:
    store = journal_store_for(inbox)
    await store.load("warm-up")
    journal = MessageJournal(store, message(), {})
    tool, send = journal.step("tool", {"name": "upsert_lead"}), journal.step("reply", {"text": "ok"})
    batches = inbox.stats()["commit_batches"]
    journal.finish(tool, {"result": {"id": "1"}},
                   [AuditEntry(action="tool_called", details={}, message_id="m1")])
    assert journal.done(tool) == {"result": {"id": "1"}}  # read back at once in this run
    # The send's start, queued after it, commits with it: one commit for both.
    await journal.start(send, {"chat_id": "chat-1", "text": "ok"})
    assert inbox.stats()["commit_batches"] == batches + 1
    stored = await store.load(message().dedupe_key)
    assert stored[tool].state == DONE and stored[tool].result == {"result": {"id": "1"}}
    assert stored[send].state == "started"
    assert await store.outbox_size() == 1


async def test_a_finished_step_that_fails_to_commit_is_reported(inbox: Any) -> None:
    from loguru import logger

    store = journal_store_for(inbox)
    await store.load("warm-up")
    # The journal's table gone: the step's statement fails (rolled back alone).
    await inbox.write(lambda conn: conn.execute("ALTER TABLE journal RENAME TO journal_away"))
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        journal = MessageJournal(store, message(), {})
        journal.finish(journal.step("tool", {"name": "upsert_lead"}), {"result": {"id": "1"}})
        await inbox.write(lambda conn: conn.execute("SELECT 1").fetchone())
        await asyncio.sleep(0)  # the done callbacks run
    finally:
        logger.remove(sink)
    assert any("step tool of a message was not recorded" in line for line in lines)
