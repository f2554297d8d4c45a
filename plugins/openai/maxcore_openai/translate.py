"""Translation between the core's types and Chat Completions bodies (OpenAI's API reference)."""

from __future__ import annotations

import json
from typing import Any

from maxcore.identity_cache import IdentityCache
from maxcore.types import ChatTurn, LLMReply, LLMRequest, Role, ToolCall, ToolSpec, Usage


def message_of(turn: ChatTurn) -> dict[str, Any]:
    """One core turn as a Chat Completions message."""
    if turn.role == Role.TOOL:
        # The pairing rule: a tool message answers exactly one call by its id.
        return {"role": "tool", "tool_call_id": turn.tool_call_id or "", "content": turn.content or ""}
    if turn.role == Role.ASSISTANT and turn.tool_calls:
        # Echoed back as the model sent it: content null when it said nothing.
        return {
            "role": "assistant",
            "content": turn.content or None,
            "tool_calls": [
                {"id": call.id, "type": "function",
                 "function": {"name": call.name, "arguments": call.arguments}}
                for call in turn.tool_calls
            ],
        }
    return {"role": str(turn.role), "content": turn.content or ""}


def messages_of(request: LLMRequest) -> list[dict[str, Any]]:
    # ``system`` rather than ``developer``: every compatible server knows it and OpenAI
    # still accepts it for every chat model.
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend(message_of(turn) for turn in request.messages)
    return messages


def without_annotations(schema: Any) -> Any:
    """``schema`` without ``x-…`` keys: annotations for the core's own models (such as the
    CRM's synonyms, which the core maps itself) cost prompt tokens and are not JSON Schema."""
    if isinstance(schema, dict):
        return {key: without_annotations(value) for key, value in schema.items()
                if not (isinstance(key, str) and key.startswith("x-"))}
    if isinstance(schema, list):
        return [without_annotations(item) for item in schema]
    return schema


# A tenant's tools are built once: each schema is cleaned once, not on every completion.
_cleaned: IdentityCache[dict[str, Any], Any] = IdentityCache(without_annotations)


# The cleaned schemas' JSON, encoded once: a tenant's tool schemas (the CRM's fields and
# values) are most of a completion request's body, and the same at every message.
encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_parameters_json: IdentityCache[dict[str, Any], str] = IdentityCache(
    lambda schema: encode_json(without_annotations(schema)))
_NO_PARAMETERS = '{"type":"object","properties":{}}'


def tool_json(spec: ToolSpec) -> str:
    """:func:`tool_of` as JSON text (the same value), its schema encoded once."""
    parameters = _parameters_json(spec.parameters) if spec.parameters else _NO_PARAMETERS
    return (f'{{"type":"function","function":{{"name":{encode_json(spec.name)},'
            f'"description":{encode_json(spec.description)},"parameters":{parameters}}}}}')


def tool_of(spec: ToolSpec) -> dict[str, Any]:
    # No ``strict``: local servers ignore it and the core validates arguments itself.
    parameters = _cleaned(spec.parameters) if spec.parameters else {"type": "object", "properties": {}}
    return {
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": parameters},
    }


def reply_of(completion: dict[str, Any]) -> tuple[LLMReply, str | None]:
    """A Chat Completions answer (decoded JSON) as the core's reply, and the finish reason."""
    usage = completion.get("usage") or {}
    counted = Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )
    model = completion.get("model")
    choices = completion.get("choices") or ()
    if not choices:
        return LLMReply(text=None, usage=counted, model=model), None
    choice = choices[0]
    message = choice.get("message") or {}
    calls = tuple(
        # Arguments stay raw text: the pipeline parses them and tells the model when
        # they are not JSON, which is how a model recovers from its own mistake.
        ToolCall(id=str(call["id"]), name=str(call["function"]["name"]),
                 arguments=call["function"].get("arguments") or "")
        for call in (message.get("tool_calls") or ())
        if call.get("type") == "function"
    )
    text = message.get("content")
    if not text and message.get("refusal"):
        text = message["refusal"]
    return LLMReply(text=text, tool_calls=calls, usage=counted, model=model), choice.get("finish_reason")
