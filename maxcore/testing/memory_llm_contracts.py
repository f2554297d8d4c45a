"""Contract tests of the memory and LLM connector kinds (pytest classes to subclass).

They use pytest fixtures and async tests (pytest-asyncio in ``auto`` mode, or
``asyncio_mode = "auto"`` in the plugin's pytest configuration). The CRM contract in
:mod:`maxcore.testing.contracts` needs neither.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ..types import AuditEntry, ChatTurn, Health, HealthStatus, LLMRequest, Role, ToolSpec


class MemoryContract:
    """What every memory connector guarantees. Subclass and provide ``make_memory``."""

    @pytest.fixture
    async def memory_pair(
        self, make_memory: Callable[[str], Any]
    ) -> AsyncIterator[tuple[Any, Any]]:
        a, b = make_memory("tenant-a"), make_memory("tenant-b")
        await a.open()
        await b.open()
        try:
            yield a, b
        finally:
            await a.close()
            await b.close()

    async def test_health_ok(self, memory_pair: tuple[Any, Any]) -> None:
        health = await memory_pair[0].health()
        assert health.status == "ok", health.reason

    async def test_history_order_and_limit(self, memory_pair: tuple[Any, Any]) -> None:
        memory, _ = memory_pair
        turns = [ChatTurn(role=Role.USER if i % 2 == 0 else Role.ASSISTANT, content=f"m{i}")
                 for i in range(6)]
        await memory.append_history("chat-1", turns[:3])
        await memory.append_history("chat-1", turns[3:])
        last = await memory.history("chat-1", 4)
        assert [t.content for t in last] == ["m2", "m3", "m4", "m5"]
        assert [t.role for t in last] == [Role.USER, Role.ASSISTANT, Role.USER, Role.ASSISTANT]
        assert await memory.history("chat-2", 10) == []

    async def test_facts_upsert(self, memory_pair: tuple[Any, Any]) -> None:
        memory, _ = memory_pair
        await memory.remember("chat-1", "budget", "10k")
        await memory.remember("chat-1", "budget", "20k")
        await memory.remember("chat-1", "city", "Lyon")
        assert await memory.facts("chat-1") == {"budget": "20k", "city": "Lyon"}

    async def test_audit_log(self, memory_pair: tuple[Any, Any]) -> None:
        memory, _ = memory_pair
        await memory.audit_batch([
            AuditEntry(action="lead_created", details={"lead_id": "x"}, message_id="m1"),
            AuditEntry(action="reply_sent", details={}, message_id="m1"),
        ])
        rows = await memory.audit_log()
        assert [r.action for r in rows] == ["lead_created", "reply_sent"]
        assert rows[0].details == {"lead_id": "x"} and rows[0].message_id == "m1"
        only = await memory.audit_log(action="reply_sent")
        assert [r.action for r in only] == ["reply_sent"]

    async def test_audit_batch_is_idempotent_on_the_row_id(self, memory_pair: tuple[Any, Any]) -> None:
        """The core's outbox re-sends a batch whose answer it did not get."""
        memory, _ = memory_pair
        first = AuditEntry(action="llm_call", details={"round": 0}, message_id="m1")
        second = AuditEntry(action="reply_sent", details={}, message_id="m1")
        await memory.audit_batch([first])
        await memory.audit_batch([first, second])
        await memory.audit_batch([first, second])
        assert [r.action for r in await memory.audit_log()] == ["llm_call", "reply_sent"]

    async def test_tenants_are_isolated(self, memory_pair: tuple[Any, Any]) -> None:
        a, b = memory_pair
        await a.append_history("chat-1", [ChatTurn(role=Role.USER, content="secret A")])
        await a.remember("chat-1", "k", "A")
        await a.audit_batch([AuditEntry(action="lead_created", details={})])
        assert await b.history("chat-1", 10) == []
        assert await b.facts("chat-1") == {}
        assert await b.audit_log() == []
        assert all(row.get("tenant_id", "tenant-b") == "tenant-b" for row in await b.export())

    async def test_forget_and_export(self, memory_pair: tuple[Any, Any]) -> None:
        a, b = memory_pair
        await a.append_history("chat-1", [ChatTurn(role=Role.USER, content="bonjour")])
        await a.remember("chat-1", "k", "v")
        await b.remember("chat-1", "k", "v")
        exported = await a.export()
        assert {row["table"] for row in exported} >= {"tenant_memory", "sessions"}
        removed = await a.forget("chat-1")
        assert removed >= 2
        assert await a.history("chat-1", 10) == []
        assert await a.facts("chat-1") == {}
        assert await b.facts("chat-1") == {"k": "v"}


class LLMContract:
    """What every LLM connector guarantees, whatever its model decides.

    Subclass and provide ``make_llm`` (tenant → unopened connector). ``tool_call_message``
    is a user message for which the subclass's model calls the offered ``upsert_lead``
    tool: override it for a model that answers other words (the default suits the
    embedded offline rules, and the emulators built on them, in English).
    """

    tool_call_message = "New lead: Ada Lovelace, ada@example.com, +44 20 7946 0958"
    tool = ToolSpec("upsert_lead", "create or update a lead", {
        "type": "object",
        "properties": {"first_name": {"type": "string"}, "last_name": {"type": "string"},
                       "email": {"type": "string"}, "phone": {"type": "string"}},
    })

    @pytest.fixture
    async def llm(self, make_llm: Callable[[str], Any]) -> AsyncIterator[Any]:
        connector = make_llm("tenant-a")
        await connector.open()
        try:
            yield connector
        finally:
            await connector.close()

    def _asking(self, *extra: ChatTurn, tools: tuple[ToolSpec, ...] | None = None) -> LLMRequest:
        user = ChatTurn(role=Role.USER, content=self.tool_call_message)
        return LLMRequest(system="You are an assistant.", messages=(user, *extra),
                          tools=(self.tool,) if tools is None else tools)

    async def test_calls_only_offered_tools_with_json_object_arguments(self, llm: Any) -> None:
        reply = await llm.complete(self._asking())
        assert reply.tool_calls, "the model answered no tool call to tool_call_message"
        assert {c.name for c in reply.tool_calls} <= {self.tool.name}
        ids = [c.id for c in reply.tool_calls]
        assert all(ids) and len(set(ids)) == len(ids), ids
        for call in reply.tool_calls:
            assert isinstance(json.loads(call.arguments), dict), call.arguments

    async def test_a_tool_result_is_taken_back(self, llm: Any) -> None:
        first = await llm.complete(self._asking())
        results = tuple(ChatTurn(role=Role.TOOL, content='{"status": "created"}', tool_call_id=c.id,
                                 name=c.name) for c in first.tool_calls)
        after = await llm.complete(self._asking(
            ChatTurn(role=Role.ASSISTANT, tool_calls=first.tool_calls), *results))
        assert after.text or after.tool_calls

    async def test_no_tools_offered_means_words_only(self, llm: Any) -> None:
        reply = await llm.complete(self._asking(tools=()))
        assert reply.tool_calls == () and reply.text

    async def test_health_is_a_status_with_its_reason(self, llm: Any) -> None:
        health = await llm.health()
        assert isinstance(health, Health) and health.status in tuple(HealthStatus)
        assert health.status == HealthStatus.OK or health.reason
