"""The ``offline`` LLM: deterministic rules in place of a model.

It reads the conversation like a model would, calls the same tools a real model
would call (``upsert_lead``, ``search_leads``, ``remember``) and phrases the answer in
the tenant's language. It never needs a network or a key, so the demo and the tests
exercise the real pipeline end to end.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import attrs

from ..config.models import in_range, non_empty
from ..connectors import ConnectorBase
from ..errors import PermanentError, RetryableError
from ..hookspecs import hookimpl
from ..types import ChatTurn, Health, LLMReply, LLMRequest, Role, ToolCall, Usage
from .offline_rules import (
    REMEMBER_RE,
    SEARCH_RE,
    extract_lead,
    has_lead_intent,
)

TEXTS: dict[str, dict[str, Any]] = {
    "fr": {
        "created": "✅ Lead créé : {name}",
        "updated": "✅ Lead mis à jour : {name}",
        "missing": "Pour enregistrer ce lead, il me manque : {what}.",
        "missing_name": "le nom (ou la société)",
        "missing_contact": "un téléphone ou un e-mail",
        "failed": "❌ Je n'ai pas pu enregistrer le lead : {error}",
        "found": "🔎 {count} lead(s) trouvé(s) :",
        "none_found": "🔎 Aucun lead trouvé.",
        "remembered": "📝 C'est noté.",
        "help": (
            "Bonjour, je suis {assistant}. Envoyez-moi un lead, par exemple : "
            "« Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, +33 6 12 34 56 78 »."
        ),
        "error": "❌ {error}",
        "labels": {"industry": "Secteur", "phone": "Tél", "email": "E-mail", "company": "Société"},
    },
    "en": {
        "created": "✅ Lead created: {name}",
        "updated": "✅ Lead updated: {name}",
        "missing": "To save this lead I still need: {what}.",
        "missing_name": "a name (or the company)",
        "missing_contact": "a phone number or an e-mail",
        "failed": "❌ I could not save the lead: {error}",
        "found": "🔎 {count} lead(s) found:",
        "none_found": "🔎 No lead found.",
        "remembered": "📝 Noted.",
        "help": (
            "Hello, I am {assistant}. Send me a lead, for example: "
            "\"New lead: John Smith, real estate, john@smith.com, +44 7700 900123\"."
        ),
        "error": "❌ {error}",
        "labels": {"industry": "Industry", "phone": "Phone", "email": "E-mail", "company": "Company"},
    },
}


@attrs.frozen
class OfflineConfig:
    assistant_name: str = "MAX"
    # Emulates a slow model: every completion waits this long (tests, benchmarks).
    latency_ms: int = attrs.field(default=0, validator=in_range(0, 600_000))
    # Fault injection an operator or a test controls from outside the process: while
    # this file exists (relative to data_dir) each completion fails as its first line says:
    # "retryable" (a 5xx-like error), "retryable N" (the next N calls only, then the file
    # is removed), or "permanent" (a 4xx-like error).
    fault_file: str | None = attrs.field(default=None, validator=non_empty)


def _call_id(seed: str, index: int) -> str:
    return "call_" + hashlib.sha1(f"{seed}:{index}".encode()).hexdigest()[:20]


def _lead_name(lead: dict[str, Any]) -> str:
    name = " ".join(p for p in (lead.get("first_name"), lead.get("last_name")) if p)
    return name or lead.get("company") or lead.get("email") or lead.get("phone") or "?"


def decide(request: LLMRequest, assistant_name: str = "MAX") -> LLMReply:
    """The rules: what a helpful model would do with this conversation."""
    texts = TEXTS.get(request.language, TEXTS["fr"])
    tools = {spec.name for spec in request.tools}
    messages = list(request.messages)
    if messages and messages[-1].role == Role.TOOL:
        return LLMReply(text=_answer_from_results(messages, texts), model="offline")
    user = next((m for m in reversed(messages) if m.role == Role.USER), None)
    text = (user.content or "") if user else ""
    seed = hashlib.sha1(json.dumps([m.content for m in messages], default=str).encode()).hexdigest()
    # The CRM's fields and values, as the tool schema shows them to any model.
    lead_tool = next((spec for spec in request.tools if spec.name == "upsert_lead"), None)
    properties = (lead_tool.parameters.get("properties") or {}) if lead_tool else {}

    remember = REMEMBER_RE.match(text)
    if remember and "remember" in tools:
        return _calls(seed, [("remember", {"key": "note", "value": remember.group(1).strip()})])
    search = SEARCH_RE.match(text)
    if search and "search_leads" in tools:
        term = search.group(1).strip(" ?.!")
        fields = extract_lead(term)
        args: dict[str, Any] = {}
        if "email" in fields:
            args["email"] = fields["email"]
        elif "phone" in fields:
            args["phone"] = fields["phone"]
        else:
            args["query"] = term
        return _calls(seed, [("search_leads", args)])

    fields = extract_lead(text, properties)
    if has_lead_intent(text) or fields:
        fields = {**_pending_fields(messages, texts, properties), **fields}
        missing = []
        if not (fields.get("first_name") or fields.get("company")):
            missing.append(texts["missing_name"])
        if not (fields.get("phone") or fields.get("email")):
            missing.append(texts["missing_contact"])
        if not missing and "upsert_lead" in tools:
            return _calls(seed, [("upsert_lead", fields)])
        if missing:
            return LLMReply(text=texts["missing"].format(what=", ".join(missing)), model="offline")
    return LLMReply(text=texts["help"].format(assistant=assistant_name), model="offline")


def _pending_fields(
    messages: list[ChatTurn], texts: dict[str, Any], properties: dict[str, Any]
) -> dict[str, Any]:
    """Fields from the previous user message when the assistant asked for the rest."""
    marker = texts["missing"].split("{")[0]
    users = [i for i, m in enumerate(messages) if m.role == Role.USER]
    if len(users) < 2:
        return {}
    previous_user = users[-2]
    between = messages[previous_user + 1 : users[-1]]
    if any(m.role == Role.ASSISTANT and (m.content or "").startswith(marker) for m in between):
        return extract_lead(messages[previous_user].content or "", properties)
    return {}


def _calls(seed: str, calls: list[tuple[str, dict[str, Any]]]) -> LLMReply:
    return LLMReply(
        tool_calls=tuple(
            ToolCall(id=_call_id(seed, i), name=name, arguments=json.dumps(args, ensure_ascii=False))
            for i, (name, args) in enumerate(calls)
        ),
        model="offline",
    )


def _answer_from_results(messages: list[ChatTurn], texts: dict[str, Any]) -> str:
    # The results of the latest round: tool turns after the last assistant turn.
    index = max(i for i, m in enumerate(messages) if m.role == Role.ASSISTANT)
    calls = {c.id: c for c in messages[index].tool_calls}
    lines: list[str] = []
    for turn in messages[index + 1 :]:
        call = calls.get(turn.tool_call_id or "")
        try:
            result = json.loads(turn.content or "{}")
        except json.JSONDecodeError:
            result = {"error": turn.content}
        if isinstance(result, dict) and "error" in result:
            template = texts["failed"] if call and call.name == "upsert_lead" else texts["error"]
            lines.append(template.format(error=result["error"]))
        elif call and call.name == "upsert_lead":
            lead = result.get("lead", {})
            key = "created" if result.get("status") == "created" else "updated"
            lines.append(texts[key].format(name=_lead_name(lead)))
            details = [
                f"{label} : {lead[field]}" if texts is TEXTS["fr"] else f"{label}: {lead[field]}"
                for field, label in texts["labels"].items()
                if lead.get(field)
            ]
            if details:
                lines.append(" · ".join(details))
        elif call and call.name == "search_leads":
            leads = result.get("leads", [])
            if not leads:
                lines.append(texts["none_found"])
            else:
                lines.append(texts["found"].format(count=len(leads)))
                for lead in leads[:10]:
                    contact = lead.get("phone") or lead.get("email") or ""
                    lines.append(f"• {_lead_name(lead)} {contact}".rstrip())
        elif call and call.name == "remember":
            lines.append(texts["remembered"])
        else:
            lines.append("✅")
    return "\n".join(lines) or "✅"


class OfflineLLM(ConnectorBase):
    """``llm: {type: offline}`` — the rules above, behind the LLM protocol."""

    name = "offline"
    Config = OfflineConfig

    async def complete(self, request: LLMRequest) -> LLMReply:
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)
        if self.config.fault_file:
            self._inject_fault(Path(self.context.data_dir) / self.config.fault_file)
        reply = decide(request, self.config.assistant_name)
        prompt_chars = len(request.system) + sum(len(m.content or "") for m in request.messages)
        return attrs.evolve(
            reply, usage=Usage(prompt_tokens=prompt_chars // 4, completion_tokens=len(reply.text or "") // 4)
        )

    async def health(self) -> Health:
        return Health.ok("deterministic rules, no network")

    @staticmethod
    def _inject_fault(path: Path) -> None:
        try:
            words = path.read_text().split()
        except FileNotFoundError:
            return
        if words[:1] == ["permanent"]:
            raise PermanentError("offline model: injected permanent failure (HTTP 400)")
        if len(words) > 1 and words[1].isdigit():
            remaining = int(words[1]) - 1
            if remaining > 0:
                path.write_text(f"retryable {remaining}\n")
            else:
                path.unlink(missing_ok=True)
        raise RetryableError("offline model: injected transient failure (HTTP 503)")


@hookimpl
def register_llms() -> list[type]:
    return [OfflineLLM]
