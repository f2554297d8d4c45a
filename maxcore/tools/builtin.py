"""The built-in tools: leads, records, messages, memory. A plugin like any other."""

from __future__ import annotations

from typing import Any

from ..connectors import LeadQuery
from ..errors import ToolError
from ..hookspecs import hookimpl
from ..leads import build_lead, normalise_email, normalise_phone
from ..types import OutboundMessage
from . import Tool, ToolContext

_LEAD_PROPERTIES: dict[str, Any] = {
    "first_name": {"type": "string", "description": "First name"},
    "last_name": {"type": "string", "description": "Last name"},
    "phone": {"type": "string", "description": "Phone number as written by the user"},
    "email": {"type": "string", "description": "E-mail address"},
    "company": {"type": "string", "description": "Company name"},
    "industry": {"type": "string", "description": "Industry, e.g. Construction, Real Estate"},
    "source": {"type": "string", "description": "Where the lead comes from"},
    "status": {"type": "string", "description": "New, Assigned, In Process, Converted, ..."},
    "description": {"type": "string", "description": "Free notes about the need"},
}


async def upsert_lead(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    defaults = dict(ctx.assistant.lead_defaults)
    lead = build_lead(
        args, options=ctx.crm.options(), defaults=defaults, region=ctx.assistant.phone_region
    )
    result = await ctx.crm.upsert_lead(lead)
    action = "lead_created" if result.created else "lead_updated"
    await ctx.audit(action, {"lead_id": result.lead.id, "lead": result.lead.as_dict()})
    # The conversation remembers the lead it last worked on, so a follow-up ("add his
    # e-mail: ...") reaches the same record; it is in the prompt of the next messages.
    await ctx.memory.remember(ctx.message.chat_id, "last_lead", {
        "id": result.lead.id, "name": result.lead.full_name or result.lead.company,
    })
    return {"status": "created" if result.created else "updated", "lead": result.lead.as_dict()}


async def search_leads(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    region = ctx.assistant.phone_region
    query = LeadQuery(
        text=args.get("query") or None,
        phone=normalise_phone(args["phone"], region) if args.get("phone") else None,
        email=normalise_email(args["email"]) if args.get("email") else None,
        status=args.get("status") or None,
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
        parameters={
            "type": "object", "properties": _LEAD_PROPERTIES, "additionalProperties": False,
        },
        function=upsert_lead,
        side_effect=True,
    ),
    Tool(
        name="search_leads",
        description="Search the CRM's leads by text (name, company), phone, e-mail or status.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "phone": {"type": "string"},
                "email": {"type": "string"},
                "status": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50},
            },
            "additionalProperties": False,
        },
        function=search_leads,
    ),
    Tool(
        name="create_record",
        description="Create a record of another CRM entity (e.g. DiagnosticIA, MissionMAX).",
        parameters={
            "type": "object",
            "properties": {
                "entity": {"type": "string"},
                "fields": {"type": "object"},
            },
            "required": ["entity", "fields"],
            "additionalProperties": False,
        },
        function=create_record,
        side_effect=True,
    ),
    Tool(
        name="send_message",
        description="Send an extra message to the user in this conversation.",
        parameters={
            "type": "object",
            "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 20000}},
            "required": ["text"],
            "additionalProperties": False,
        },
        function=send_message,
        side_effect=True,
    ),
    Tool(
        name="remember",
        description="Store a fact about this contact in memory for later conversations.",
        parameters={
            "type": "object",
            "properties": {
                "key": {"type": "string", "minLength": 1, "maxLength": 100},
                "value": {"type": "string", "maxLength": 2000},
            },
            "required": ["key", "value"],
            "additionalProperties": False,
        },
        function=remember,
        side_effect=True,
    ),
]


@hookimpl
def register_tools() -> list[Tool]:
    return list(BUILTIN_TOOLS)
