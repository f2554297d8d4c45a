"""Tools the model may call: their definition, context and argument validation."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import jsonschema

from ..config.models import AssistantConfig
from ..connectors import CRM, LLM, Channel, ConnectorContext, Memory
from ..errors import ToolError
from ..identity_cache import IdentityCache
from ..types import AuditEntry, InboundMessage, ToolSpec
from ..vocabulary import LeadSchema
from ..webhooks import BodyRejected, decode_json

# Argument names a model might use to point at another tenant. They are dropped
# before validation: the tenant always comes from the entry point.
TENANT_ARGUMENTS = frozenset({"tenant", "tenant_id", "tenantId", "tenant_name", "tenantName"})


@attrs.frozen
class ToolContext:
    """What a tool may touch: the bound tenant's connectors and the current message."""

    tenant: str
    assistant: AssistantConfig
    message: InboundMessage
    channel: Channel
    crm: CRM
    memory: Memory
    llm: LLM
    connector_context: ConnectorContext
    # Where audit rows go: the pipeline's journal, committed with the tool's result.
    audit_sink: Callable[[AuditEntry], Awaitable[None]] | None = None

    async def audit(self, action: str, details: dict[str, Any]) -> None:
        entry = AuditEntry(action=action, details=details, message_id=self.message.message_id)
        if self.audit_sink is not None:
            await self.audit_sink(entry)
        else:
            await self.memory.audit_batch([entry])


ToolFunction = Callable[[ToolContext, dict[str, Any]], Awaitable[Any]]
# Builds a tool's argument schemas for one tenant from its CRM's declaration and
# record entities: (what the model is shown, what arguments are checked against).
SchemaBuilder = Callable[[LeadSchema, tuple[str, ...]], tuple[dict[str, Any], dict[str, Any]]]


@attrs.frozen
class Tool:
    """A tool: JSON schema for its arguments, a description, an async function.

    ``side_effect`` marks tools that change the outside world (CRM writes, messages):
    their results are journalled so a replayed message does not repeat them.

    ``schema_for`` makes the schema depend on the tenant's CRM (the lead tools show
    the CRM's own fields and values): :meth:`for_tenant` returns the tool with its
    schemas built. ``accepts``, when set, is what arguments are checked against
    instead of ``parameters`` (synonyms of enum values are accepted, then mapped).
    """

    name: str
    description: str
    parameters: dict[str, Any]
    function: ToolFunction
    side_effect: bool = False
    plugin: str | None = None
    schema_for: SchemaBuilder | None = None
    accepts: dict[str, Any] | None = None

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)

    def for_tenant(self, schema: LeadSchema, entities: tuple[str, ...]) -> Tool:
        if self.schema_for is None:
            return self
        shown, accepted = self.schema_for(schema, entities)
        return attrs.evolve(self, parameters=shown, accepts=accepted, schema_for=None)


def parse_arguments(tool: Tool, raw: str) -> tuple[dict[str, Any], list[str]]:
    """Decode and validate the model's JSON arguments.

    Returns (arguments, ignored tenant keys). Raises ToolError with a message the
    model can act on.
    """
    try:
        # Bounded like a webhook body, and a lone surrogate escaped in a string (which no
        # store can encode) becomes U+FFFD.
        arguments = decode_json(raw or "{}")
    except json.JSONDecodeError as exc:
        raise ToolError(f"arguments of {tool.name} are not valid JSON ({exc.msg})") from exc
    except BodyRejected as exc:
        raise ToolError(f"arguments of {tool.name} refused: {exc}") from exc
    if not isinstance(arguments, dict):
        raise ToolError(f"arguments of {tool.name} must be a JSON object")
    ignored = sorted(key for key in arguments if key in TENANT_ARGUMENTS)
    for key in ignored:
        arguments.pop(key)
    nested = arguments.get("fields")
    if isinstance(nested, dict):
        for key in [k for k in nested if k in TENANT_ARGUMENTS]:
            nested.pop(key)
            ignored.append(f"fields.{key}")
    validator = _validator(tool.accepts or tool.parameters)
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    if errors:
        parts = []
        for error in errors[:5]:
            where = ".".join(str(p) for p in error.path) or "arguments"
            parts.append(f"{where}: {error.message}")
        raise ToolError(f"invalid arguments for {tool.name}: " + "; ".join(parts))
    return arguments, ignored


# Building a validator checks the schema and sets up its resolver: several times the cost
# of validating a few arguments. A tenant's tools keep their schemas until a reload.
_validator: IdentityCache[dict[str, Any], jsonschema.Draft202012Validator] = IdentityCache(
    jsonschema.Draft202012Validator)


__all__ = ["TENANT_ARGUMENTS", "SchemaBuilder", "Tool", "ToolContext", "ToolFunction", "parse_arguments"]
