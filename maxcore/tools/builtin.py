"""The built-in tools: leads, records, messages, memory. A plugin like any other.

The lead tools' schemas are built per tenant from its CRM's declaration, so the
model sees that CRM's own field names and values (see :mod:`maxcore.vocabulary`).
"""

from __future__ import annotations

from typing import Any

from ..connectors import LeadQuery
from ..errors import ToolError
from ..hookspecs import hookimpl
from ..leads import build_lead, normalise_email, normalise_phone
from ..types import Lead, OutboundMessage
from ..vocabulary import FieldType, LeadSchema
from . import Tool, ToolContext

IDENTITY_PROPERTIES: dict[str, Any] = {
    "first_name": {"type": "string", "description": "First name"},
    "last_name": {"type": "string", "description": "Last name"},
    "phone": {"type": "string", "description": "Phone number as written by the user"},
    "email": {"type": "string", "description": "E-mail address"},
    "company": {"type": "string", "description": "Company name"},
}
_LEAD_ID = {"type": "string", "minLength": 1, "maxLength": 64,
            "description": "Id of the lead to update; default: the lead this conversation last worked on"}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def lead_schemas(schema: LeadSchema, _entities: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """upsert_lead: identity plus every field the CRM declares."""
    return (_object({**IDENTITY_PROPERTIES, **schema.properties(shown=True)}),
            _object({**IDENTITY_PROPERTIES, **schema.properties(shown=False)}))


def update_schemas(schema: LeadSchema, entities: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    shown, accepted = lead_schemas(schema, entities)
    return (_object({"lead_id": _LEAD_ID, **shown["properties"]}),
            _object({"lead_id": _LEAD_ID, **accepted["properties"]}))


def search_schemas(schema: LeadSchema, _entities: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """search_leads: text, phone, e-mail, and the CRM's enumerations as exact filters."""
    base = {
        "query": {"type": "string", "description": "Words of a name, company or e-mail"},
        "phone": {"type": "string"},
        "email": {"type": "string"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50},
    }
    enums = [f for f in schema.fields if f.type is FieldType.ENUM]
    return (_object({**base, **{f.name: f.json_schema(shown=True) for f in enums}}),
            _object({**base, **{f.name: f.json_schema(shown=False) for f in enums}}))


def record_schemas(_schema: LeadSchema, entities: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    entity: dict[str, Any] = {"type": "string", "description": "One of: " + (", ".join(entities) or "none")}
    if entities:
        entity["enum"] = list(entities)
    properties = {"entity": entity, "fields": {"type": "object"}}
    return _object(properties, ("entity", "fields")), _object(properties, ("entity", "fields"))


async def _remember_lead(ctx: ToolContext, lead: Lead) -> None:
    # The conversation remembers the lead it last worked on, so a follow-up ("add his
    # e-mail: ...") reaches the same record; it is in the prompt of the next messages.
    await ctx.memory.remember(ctx.message.chat_id, "last_lead", {
        "id": lead.id, "name": lead.full_name or lead.company,
    })


async def upsert_lead(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    schema = await ctx.crm.lead_schema()
    lead = build_lead(args, schema=schema, region=ctx.assistant.phone_region)
    # Defaults go to the CRM, which applies them only if it creates the lead.
    result = await ctx.crm.upsert_lead(lead, defaults=dict(ctx.assistant.lead_defaults))
    action = "lead_created" if result.created else "lead_updated"
    await ctx.audit(action, {"lead_id": result.lead.id, "lead": result.lead.as_dict()})
    await _remember_lead(ctx, result.lead)
    return {"status": "created" if result.created else "updated", "lead": result.lead.as_dict()}


async def update_lead(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    lead_id = args.pop("lead_id", None)
    if lead_id is None:
        last = (await ctx.memory.facts(ctx.message.chat_id)).get("last_lead")
        lead_id = last.get("id") if isinstance(last, dict) else None
        if not isinstance(lead_id, str) or not lead_id:
            raise ToolError("no lead to update in this conversation: give lead_id, or use upsert_lead")
    schema = await ctx.crm.lead_schema()
    lead = build_lead(args, schema=schema, region=ctx.assistant.phone_region, require_identity=False)
    if lead == Lead():
        raise ToolError("nothing to update: give at least one field")
    updated = await ctx.crm.update_lead(lead_id, lead)
    if updated is None:
        raise ToolError(f"lead {lead_id!r} not found")
    await ctx.audit("lead_updated", {"lead_id": updated.id, "lead": updated.as_dict()})
    await _remember_lead(ctx, updated)
    return {"status": "updated", "lead": updated.as_dict()}


async def search_leads(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    region = ctx.assistant.phone_region
    schema = await ctx.crm.lead_schema()
    filters = {k: v for k, v in args.items() if k not in ("query", "phone", "email", "limit")}
    query = LeadQuery(
        text=args.get("query") or None,
        phone=normalise_phone(args["phone"], region) if args.get("phone") else None,
        email=normalise_email(args["email"]) if args.get("email") else None,
        fields=schema.normalise(filters),
        limit=int(args.get("limit", 10)),
    )
    leads = await ctx.crm.search_leads(query)
    return {"count": len(leads), "leads": [lead.as_dict() for lead in leads]}


async def create_record(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    entity = args["entity"]
    if entity not in ctx.crm.entities:
        allowed = ", ".join(ctx.crm.entities) or "none"
        raise ToolError(f"entity {entity!r} is not available; allowed entities: {allowed}")
    record = await ctx.crm.create_record(entity, args.get("fields") or {})
    await ctx.audit("record_created", {"entity": entity, "record_id": record.id})
    return {"status": "created", "entity": entity, "id": record.id, "fields": record.fields}


async def send_message(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    # Only the current conversation can be written to: the model never picks a recipient.
    outbound = OutboundMessage(chat_id=ctx.message.chat_id, text=args["text"])
    result = await ctx.channel.send(outbound)
    await ctx.audit("message_sent", {"chat_id": ctx.message.chat_id, "via": "tool"})
    return {"status": "sent", "message_id": result.message_id}


async def remember(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    await ctx.memory.remember(ctx.message.chat_id, args["key"], args["value"])
    await ctx.audit("memory_updated", {"chat_id": ctx.message.chat_id, "key": args["key"]})
    return {"status": "remembered", "key": args["key"]}


BUILTIN_TOOLS = [
    Tool(
        name="upsert_lead",
        description=(
            "Create a lead in the CRM, or update the existing one with the same phone or "
            "e-mail. Needs a name or company, and a phone or an e-mail."
        ),
        parameters=_object(IDENTITY_PROPERTIES),
        function=upsert_lead,
        side_effect=True,
        schema_for=lead_schemas,
    ),
    Tool(
        name="update_lead",
        description=(
            "Change fields of an existing lead: by default the one this conversation last "
            "created or updated (e.g. 'add his e-mail', 'move it back to New')."
        ),
        parameters=_object({"lead_id": _LEAD_ID, **IDENTITY_PROPERTIES}),
        function=update_lead,
        side_effect=True,
        schema_for=update_schemas,
    ),
    Tool(
        name="search_leads",
        description="Search the CRM's leads by text (name, company), phone, e-mail or field values.",
        parameters=_object({"query": {"type": "string"}}),
        function=search_leads,
        schema_for=search_schemas,
    ),
    Tool(
        name="create_record",
        description="Create a record of another entity of the CRM (the entities it offers are listed).",
        parameters=_object({"entity": {"type": "string"}, "fields": {"type": "object"}},
                           ("entity", "fields")),
        function=create_record,
        side_effect=True,
        schema_for=record_schemas,
    ),
    Tool(
        name="send_message",
        description="Send an extra message to the user in this conversation.",
        parameters=_object({"text": {"type": "string", "minLength": 1, "maxLength": 20000}}, ("text",)),
        function=send_message,
        side_effect=True,
    ),
    Tool(
        name="remember",
        description="Store a fact about this contact in memory for later conversations.",
        parameters=_object({
            "key": {"type": "string", "minLength": 1, "maxLength": 100},
            "value": {"type": "string", "maxLength": 2000},
        }, ("key", "value")),
        function=remember,
        side_effect=True,
    ),
]


@hookimpl
def register_tools() -> list[Tool]:
    return list(BUILTIN_TOOLS)
