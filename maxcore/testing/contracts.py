"""Contract tests every connector of a kind must pass (pytest classes to subclass).

The subclass provides one fixture, ``make_crm`` / ``make_memory`` / ``make_llm``: a
callable taking a tenant id and returning a *not yet opened* connector bound to it.
Two tenants are always built against the same backing store, so isolation is tested
where it can actually break.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ..connectors import ConnectorContext, LeadQuery
from ..types import AuditEntry, ChatTurn, Lead, LLMRequest, Role, ToolSpec


def context_for(tenant: str, data_dir: Path) -> ConnectorContext:
    """A ConnectorContext for tests."""
    return ConnectorContext(tenant=tenant, data_dir=Path(data_dir))


def _lead(**overrides: Any) -> Lead:
    values: dict[str, Any] = {
        "first_name": "Jean", "last_name": "Dupont", "phone": "+33612345678",
        "email": "jean@dupont.fr", "company": "Dupont BTP", "industry": "Construction",
        "status": "New", "source": "Web Site",
    }
    values.update(overrides)
    return Lead(**values)


class CRMContract:
    """What every CRM connector guarantees. Subclass and provide ``make_crm``."""

    @pytest.fixture
    async def crm_pair(self, make_crm: Callable[[str], Any]) -> AsyncIterator[tuple[Any, Any]]:
        a, b = make_crm("tenant-a"), make_crm("tenant-b")
        await a.open()
        await b.open()
        try:
            yield a, b
        finally:
            await a.close()
            await b.close()

    async def test_health_ok(self, crm_pair: tuple[Any, Any]) -> None:
        health = await crm_pair[0].health()
        assert health.status == "ok", health.reason

    async def test_options_cover_enum_fields(self, crm_pair: tuple[Any, Any]) -> None:
        options = crm_pair[0].options()
        for field in ("status", "source", "industry"):
            assert options.get(field), f"no options for {field}"
        assert "Construction" in options["industry"]
        assert "New" in options["status"]

    async def test_upsert_creates_then_updates_by_phone(self, crm_pair: tuple[Any, Any]) -> None:
        crm, _ = crm_pair
        first = await crm.upsert_lead(_lead())
        assert first.created and first.lead.id
        assert first.lead.phone == "+33612345678"
        again = await crm.upsert_lead(_lead(email=None, description="rappeler lundi"))
        assert not again.created
        assert again.lead.id == first.lead.id
        assert again.lead.description == "rappeler lundi"
        assert again.lead.email == "jean@dupont.fr"  # partial update keeps other fields

    async def test_upsert_dedupes_by_email(self, crm_pair: tuple[Any, Any]) -> None:
        crm, _ = crm_pair
        first = await crm.upsert_lead(_lead(phone=None, email="marie@curie.fr", first_name="Marie",
                                            last_name="Curie"))
        again = await crm.upsert_lead(_lead(phone="+33698765432", email="marie@curie.fr",
                                            first_name="Marie", last_name="Curie"))
        assert not again.created
        assert again.lead.id == first.lead.id
        assert again.lead.phone == "+33698765432"

    async def test_get_and_search(self, crm_pair: tuple[Any, Any]) -> None:
        crm, _ = crm_pair
        created = await crm.upsert_lead(_lead())
        assert (await crm.get_lead(created.lead.id)).email == "jean@dupont.fr"
        by_phone = await crm.search_leads(LeadQuery(phone="+33612345678"))
        assert [lead.id for lead in by_phone] == [created.lead.id]
        by_text = await crm.search_leads(LeadQuery(text="Dupont"))
        assert created.lead.id in [lead.id for lead in by_text]
        assert await crm.search_leads(LeadQuery(email="nobody@example.com")) == []
        listed = await crm.list_leads(limit=10)
        assert created.lead.id in [lead.id for lead in listed]

    async def test_tenants_are_isolated(self, crm_pair: tuple[Any, Any]) -> None:
        a, b = crm_pair
        lead_a = (await a.upsert_lead(_lead())).lead
        assert await b.get_lead(lead_a.id) is None
        assert await b.search_leads(LeadQuery(phone="+33612345678")) == []
        assert await b.search_leads(LeadQuery(text="Dupont")) == []
        assert await b.list_leads() == []
        # The same person written by tenant B is B's own lead, A's stays untouched.
        lead_b = await b.upsert_lead(_lead(description="B's note"))
        assert lead_b.created and lead_b.lead.id != lead_a.id
        assert (await a.get_lead(lead_a.id)).description is None

    async def test_create_record(self, crm_pair: tuple[Any, Any]) -> None:
        crm, _ = crm_pair
        assert crm.entities, "a CRM should expose at least one record entity"
        entity = crm.entities[0]
        record = await crm.create_record(entity, {"name": "Diagnostic test"})
        assert record.id and record.entity == entity


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
    """What every LLM connector guarantees. Provide ``make_llm`` (tenant → connector)
    for a model that extracts a lead from the standard French demo message."""

    async def test_lead_message_gives_upsert_call(self, make_llm: Callable[[str], Any]) -> None:
        llm = make_llm("tenant-a")
        await llm.open()
        try:
            spec = ToolSpec("upsert_lead", "create or update a lead", {
                "type": "object", "properties": {"first_name": {"type": "string"}},
            })
            reply = await llm.complete(LLMRequest(
                system="Tu es MAX.",
                messages=(ChatTurn(role=Role.USER, content=(
                    "Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, +33 6 12 34 56 78")),),
                tools=(spec,),
            ))
            assert [c.name for c in reply.tool_calls] == ["upsert_lead"]
            assert all(c.id for c in reply.tool_calls)
        finally:
            await llm.close()
