"""Contract tests every connector of a kind must pass (classes to subclass in pytest).

The subclass provides one fixture, ``make_crm`` / ``make_memory`` / ``make_llm``: a
callable taking a tenant id and returning a *not yet opened* connector bound to it.
Two tenants are always built against the same backing store, so isolation is tested
where it can actually break.

:class:`CRMContract` reads the connector's own declaration (its lead fields and
values) instead of assuming any CRM's vocabulary. Its tests are plain functions that
run their own event loop: they need no pytest plugin and this module does not import
pytest. ``MemoryContract`` and ``LLMContract`` use async pytest fixtures (see
:mod:`maxcore.testing.memory_llm_contracts`) and are imported from there on first use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs

from ..connectors import ConnectorContext, LeadQuery
from ..errors import ToolError
from ..types import Lead
from ..vocabulary import FieldType, LeadField, LeadSchema

_PEOPLE = (("Jean", "Dupont", "Dupont & Fils"), ("Marie", "Curie", "Radium"),
           ("Ada", "Lovelace", "Engines"), ("Alan", "Turing", "Bombe"))
# Strings that are no record id of any CRM: each must read as "not found", never crash.
ODD_IDS = ("\r", "\x00", "?maxSize=1", "../x", "a b", "x" * 300)


def context_for(tenant: str, data_dir: Path) -> ConnectorContext:
    """A ConnectorContext for tests."""
    return ConnectorContext(tenant=tenant, data_dir=Path(data_dir))


def sample_value(field: LeadField, index: int = 0) -> Any:
    """A value ``field`` accepts: the ``index``-th choice of an enumeration, else by type."""
    if field.choices:
        return field.choices[index % len(field.choices)].value
    if field.type is FieldType.NUMBER:
        return index + 1
    if field.type is FieldType.BOOLEAN:
        return index % 2 == 0
    if field.type is FieldType.DATE:
        return f"2025-01-{index % 28 + 1:02d}"
    return f"sample {field.name} {index}"


def sample_lead(declaration: LeadSchema, index: int = 0, **identity: Any) -> Lead:
    """A lead a CRM with this declaration accepts: person ``index`` (distinct names,
    phone and e-mail per index), every declared field filled by :func:`sample_value`."""
    first, last, company = _PEOPLE[index % len(_PEOPLE)]
    values: dict[str, Any] = {
        "first_name": first, "last_name": last, "company": company,
        "phone": f"+3361234{index:04d}", "email": f"{first.lower()}.{last.lower()}{index}@example.com",
    }
    values.update(identity)
    fields = {field.name: sample_value(field, index) for field in declaration.fields}
    return Lead(**values, fields=fields)


def _text_field(schema: LeadSchema) -> LeadField | None:
    return next((f for f in schema.fields if f.type is FieldType.TEXT), None)


def _enum_field(schema: LeadSchema) -> LeadField | None:
    return next((f for f in schema.fields if len(f.choices) >= 2), None)


def _skip(reason: str) -> None:
    import pytest  # only when a test runs: importing this module needs no pytest

    pytest.skip(reason)


CRMBody = Callable[[Any, Any, Any, LeadSchema], Awaitable[None]]


def _crm_case(body: Callable[..., Awaitable[None]]) -> Callable[[Any, Callable[[str], Any]], None]:
    """A sync test running ``body(self, a, b, schema)`` on two opened tenants of one backend."""

    def test(self: Any, make_crm: Callable[[str], Any]) -> None:
        async def run() -> None:
            a, b = make_crm("tenant-a"), make_crm("tenant-b")
            await a.open()
            try:
                await b.open()
                try:
                    await body(self, a, b, await a.lead_schema())
                finally:
                    await b.close()
            finally:
                await a.close()

        asyncio.run(run())

    test.__name__, test.__doc__ = body.__name__, body.__doc__
    return test


class CRMContract:
    """What every CRM connector guarantees. Subclass and provide a ``make_crm`` fixture.

    The values used are the CRM's own (from its declaration, through
    :func:`sample_lead`). A backend with ``unique_emails`` (one e-mail, one record per
    account) is tested with distinct people per tenant, and must refuse — without
    touching it — a person another tenant already holds.
    """

    @_crm_case
    async def test_health_ok(self, a: Any, _b: Any, _schema: LeadSchema) -> None:
        health = await a.health()
        assert health.status == "ok", health.reason

    @_crm_case
    async def test_declares_its_lead_fields(self, a: Any, _b: Any, schema: LeadSchema) -> None:
        assert isinstance(schema, LeadSchema)
        assert await a.lead_schema() is schema, "the declaration is read once and cached"
        declared = a.declared_lead_schema()
        assert declared is None or declared == schema
        for field in schema.fields:
            for choice in field.choices:
                assert field.normalise(choice.value) == choice.value
                assert field.normalise(choice.display) == choice.value, (field.name, choice)
        with_unknown = {"no_such_field_xyz": "x"}
        try:
            schema.normalise(with_unknown)
        except ToolError:
            pass
        else:
            raise AssertionError("an undeclared field must be refused")

    @_crm_case
    async def test_upsert_creates_then_updates_by_phone(self, a: Any, _b: Any, schema: LeadSchema) -> None:
        lead = sample_lead(schema)
        first = await a.upsert_lead(lead)
        assert first.created and first.lead.id
        assert first.lead.phone == lead.phone and first.lead.email == lead.email
        assert first.lead.fields == lead.fields
        text = _text_field(schema)
        changed = {text.name: "rappeler lundi"} if text else {}
        again = await a.upsert_lead(attrs.evolve(lead, email=None, fields=changed))
        assert not again.created and again.lead.id == first.lead.id
        assert again.lead.email == lead.email  # a partial update keeps the other values
        assert again.lead.fields == {**lead.fields, **changed}

    @_crm_case
    async def test_upsert_dedupes_by_email(self, a: Any, _b: Any, schema: LeadSchema) -> None:
        lead = sample_lead(schema, 1, phone=None)
        first = await a.upsert_lead(lead)
        again = await a.upsert_lead(attrs.evolve(lead, phone="+33698765432"))
        assert not again.created and again.lead.id == first.lead.id
        assert again.lead.phone == "+33698765432"

    @_crm_case
    async def test_defaults_apply_on_create_only(self, a: Any, _b: Any, schema: LeadSchema) -> None:
        field = _enum_field(schema)
        if field is None:
            _skip("the CRM declares no enumeration with two values")
            return
        first_value, second_value = field.choices[0].value, field.choices[1].value
        bare = attrs.evolve(sample_lead(schema, 2), fields={})
        created = await a.upsert_lead(bare, defaults={field.name: second_value})
        assert created.created and created.lead.fields.get(field.name) == second_value
        # An update leaves the field alone when the lead does not state it...
        kept = await a.upsert_lead(bare, defaults={field.name: first_value})
        assert kept.lead.fields.get(field.name) == second_value
        # ...and writes what the lead states, the default value included ("back to New").
        stated = await a.upsert_lead(attrs.evolve(bare, fields={field.name: first_value}),
                                     defaults={field.name: first_value})
        assert stated.lead.fields.get(field.name) == first_value

    @_crm_case
    async def test_update_lead_by_id(self, a: Any, b: Any, schema: LeadSchema) -> None:
        created = (await a.upsert_lead(sample_lead(schema))).lead
        changes = Lead(email="new.address@example.com", fields={
            f.name: sample_value(f, 1) for f in schema.fields})
        updated = await a.update_lead(created.id, changes)
        assert updated is not None and updated.id == created.id
        assert updated.email == "new.address@example.com" and updated.phone == created.phone
        assert updated.fields == changes.fields
        assert await b.update_lead(created.id, Lead(company="Taken over")) is None
        assert (await a.get_lead(created.id)).company == created.company
        for odd in ODD_IDS:
            assert await a.update_lead(odd, Lead(company="x")) is None, repr(odd)
            assert await a.get_lead(odd) is None, repr(odd)

    @_crm_case
    async def test_get_and_search(self, a: Any, _b: Any, schema: LeadSchema) -> None:
        lead = sample_lead(schema)
        created = (await a.upsert_lead(lead)).lead
        assert (await a.get_lead(created.id)).email == lead.email
        by_phone = await a.search_leads(LeadQuery(phone=lead.phone))
        assert [found.id for found in by_phone] == [created.id]
        by_text = await a.search_leads(LeadQuery(text=lead.last_name))
        assert created.id in [found.id for found in by_text]
        assert await a.search_leads(LeadQuery(email="nobody@example.com")) == []
        field = _enum_field(schema)
        if field is not None:
            value = lead.fields[field.name]
            matching = await a.search_leads(LeadQuery(fields={field.name: value}))
            assert created.id in [found.id for found in matching]
        listed = await a.list_leads(limit=10)
        assert created.id in [found.id for found in listed]

    @_crm_case
    async def test_tenants_are_isolated(self, a: Any, b: Any, schema: LeadSchema) -> None:
        lead_a = (await a.upsert_lead(sample_lead(schema, 0))).lead
        lead_b = (await b.upsert_lead(sample_lead(schema, 1))).lead
        assert lead_a.id != lead_b.id
        assert await b.get_lead(lead_a.id) is None and await a.get_lead(lead_b.id) is None
        assert await b.search_leads(LeadQuery(phone=lead_a.phone)) == []
        assert await b.search_leads(LeadQuery(text=lead_a.last_name)) == []
        assert [lead.id for lead in await a.list_leads()] == [lead_a.id]
        assert [lead.id for lead in await b.list_leads()] == [lead_b.id]
        text = _text_field(schema)
        note = {text.name: "B's note"} if text else {}
        same_person = attrs.evolve(sample_lead(schema, 0), fields=note)
        if type(a).unique_emails:
            # One e-mail, one record per account: B may not reach A's, nor change it.
            try:
                await b.upsert_lead(same_person)
            except ToolError:
                pass
            else:
                raise AssertionError("a unique-e-mail CRM must refuse a person another tenant holds")
        else:
            # The same person written by B is B's own lead; A's stays untouched.
            copy = await b.upsert_lead(same_person)
            assert copy.created and copy.lead.id not in (lead_a.id, lead_b.id)
        assert (await a.get_lead(lead_a.id)).fields == lead_a.fields

    @_crm_case
    async def test_create_record(self, a: Any, _b: Any, _schema: LeadSchema) -> None:
        if not a.entities:
            _skip("the CRM offers no record entity")
            return
        entity = a.entities[0]
        record = await a.create_record(entity, {"name": "Contract test"})
        assert record.id and record.entity == entity
        try:
            await a.create_record("NoSuchEntityXyz", {"name": "x"})
        except ToolError:
            pass
        else:
            raise AssertionError("an entity the CRM does not offer must be refused")


def __getattr__(name: str) -> Any:
    # The memory and LLM contracts need pytest: imported only when asked for.
    if name in ("MemoryContract", "LLMContract"):
        from . import memory_llm_contracts

        return getattr(memory_llm_contracts, name)
    raise AttributeError(name)
