"""One message through the assistant: memory → prompt → model ⇄ tools → reply → audit.

The tenant is bound when the pipeline is built (from the entry point that accepted
the message); tools receive a context holding that tenant's connectors only.

Every step is journalled (:mod:`maxcore.journal`): the memory the message is answered
with, each model reply, each tool result, each send. A send's start is durable before
the channel is called, and the memory read and the model replies before a tool runs;
results are queued for the next commit, which the next effect's start waits for. A replay
after a crash reads them back, so it asks the model nothing it already answered, runs no
tool twice, and checks with the channel before sending a reply again (:mod:`.sending`).
Audit rows are committed with the step that produced them and shipped in batches.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from .errors import ToolError
from .identity_cache import IdentityCache
from .journal import JournalStore, MemoryJournalStore, MessageJournal, request_hash
from .prompts import pack_of, render_user_message, system_prompt
from .sending import JournalledChannel, send_once
from .tools import Tool, ToolContext, parse_arguments
from .types import (
    FIXED_REPLY,
    AuditEntry,
    ChatTurn,
    InboundMessage,
    LLMReply,
    LLMRequest,
    OutboundMessage,
    Role,
    SendResult,
    ToolCall,
    Usage,
    Veto,
)
from .webhooks import clean_text

if TYPE_CHECKING:
    from .plugins import Hooks
    from .tenants import TenantRuntime

@attrs.frozen
class PipelineResult:
    reply: OutboundMessage | None
    tool_calls: tuple[str, ...] = ()
    vetoed: str | None = None
    replayed_steps: int = 0


def _calls_json(calls: tuple[ToolCall, ...]) -> list[dict[str, str]]:
    return [{"id": call.id, "name": call.name, "arguments": call.arguments} for call in calls]


def turn_to_json(turn: ChatTurn) -> dict[str, Any]:
    return {
        "role": str(turn.role), "content": turn.content, "tool_call_id": turn.tool_call_id,
        "name": turn.name, "tool_calls": _calls_json(turn.tool_calls),
    }


def turn_from_json(data: dict[str, Any]) -> ChatTurn:
    return ChatTurn(
        role=data["role"], content=data.get("content"), tool_call_id=data.get("tool_call_id"),
        name=data.get("name"), tool_calls=tuple(ToolCall(**c) for c in data.get("tool_calls") or ()),
    )


# A tenant's tools are built once: each schema is hashed once, not once per message.
_schema_digest: IdentityCache[dict[str, Any], str] = IdentityCache(request_hash)


def llm_step_request(request: LLMRequest) -> dict[str, Any]:
    """What identifies a completion in the journal: the prompt, the conversation, the
    tools (their schemas by digest) and the language. A replay of the same message
    asks the same, so it finds the recorded answer."""
    return {
        "system": request.system, "language": request.language,
        "messages": [turn_to_json(turn) for turn in request.messages],
        "tools": [(spec.name, spec.description, _schema_digest(spec.parameters))
                  for spec in request.tools],
    }


def reply_to_json(reply: LLMReply) -> dict[str, Any]:
    return {
        "text": reply.text, "model": reply.model, "usage": attrs.asdict(reply.usage),
        "tool_calls": _calls_json(reply.tool_calls),
    }


def reply_from_json(data: dict[str, Any]) -> LLMReply:
    return LLMReply(
        text=data.get("text"), model=data.get("model"), usage=Usage(**(data.get("usage") or {})),
        tool_calls=tuple(ToolCall(**c) for c in data.get("tool_calls") or ()),
    )


def clean_reply(reply: LLMReply) -> LLMReply:
    """``reply`` with lone surrogates (which no store or channel can encode) replaced by
    U+FFFD in its text and tool calls, as a webhook's text is at intake."""
    text = clean_text(reply.text) if reply.text is not None else None
    model = clean_text(reply.model) if reply.model is not None else None
    calls = tuple(ToolCall(id=clean_text(c.id), name=clean_text(c.name), arguments=clean_text(c.arguments))
                  for c in reply.tool_calls)
    if text is reply.text and model is reply.model and calls == reply.tool_calls:
        return reply
    return attrs.evolve(reply, text=text, model=model, tool_calls=calls)


def _arguments_key(arguments: str) -> Any:
    """Tool arguments compared by content: ``{"a": 1, "b": 2}`` and ``{"b":2,"a":1}`` match."""
    try:
        return json.loads(arguments)
    except (json.JSONDecodeError, TypeError):
        return arguments


class Pipeline:
    """Processes messages for one tenant."""

    def __init__(self, tenant: TenantRuntime, hooks: Hooks, journal: JournalStore | None = None,
                 on_audit: Callable[[], None] | None = None) -> None:
        self.tenant = tenant
        self.hooks = hooks
        self.journal_store: JournalStore = journal if journal is not None else MemoryJournalStore()
        self._on_audit = on_audit or (lambda: None)

    async def process(self, message: InboundMessage) -> PipelineResult:
        if message.tenant != self.tenant.id:
            raise ValueError(f"message for tenant {message.tenant!r} sent to {self.tenant.id!r}")
        # Lines logged by connectors while this message is processed carry its ids too.
        with logger.contextualize(tenant=message.tenant, message_id=message.message_id):
            journal = await MessageJournal.open(self.journal_store, message, self._on_audit)
            result = await self._process(message, journal)
            return attrs.evolve(result, replayed_steps=journal.replayed)

    async def _audit_once(self, journal: MessageJournal, kind: str, request: Any,
                          action: str, details: dict[str, Any]) -> None:
        """An audit row that belongs to no other step, written once per message."""
        step = journal.step(kind, request)
        if journal.done(step) is None:
            journal.note(step, {}, [self._entry(journal.message, action, details)])

    def _entry(self, message: InboundMessage, action: str, details: dict[str, Any]) -> AuditEntry:
        if action in ("lead_created", "lead_updated", "reply_sent", "llm_call"):
            logger.bind(tenant=self.tenant.id, message_id=message.message_id).debug(
                "[PIPELINE] audit {}", action)
        return AuditEntry(action=action, details=details, message_id=message.message_id)

    async def _process(self, message: InboundMessage, journal: MessageJournal) -> PipelineResult:
        tenant = self.tenant
        log = logger.bind(tenant=tenant.id, message_id=message.message_id)
        assistant = tenant.config.assistant
        context = tenant.context

        final_step = journal.step("history")
        final = journal.done(final_step)
        if final is not None:
            log.info("[PIPELINE] message already answered (journal): nothing repeated")
            reply = final.get("reply")
            outbound = (OutboundMessage(chat_id=message.chat_id, text=reply, reply_to=message.message_id)
                        if isinstance(reply, str) else None)
            return PipelineResult(reply=outbound, tool_calls=tuple(final.get("tools") or ()))
        log.info("[PIPELINE] processing message from chat {}", message.chat_id)

        veto_step = journal.step("message_vetoed")
        vetoed = journal.done(veto_step)
        if vetoed is None:
            checked = await self.hooks.message_received(message, context)
            if isinstance(checked, Veto):
                log.info("[PIPELINE] message vetoed by a plugin: {}", checked.reason)
                journal.finish(veto_step, {"reason": checked.reason}, [
                    self._entry(message, "message_vetoed", {"reason": checked.reason})])
                return PipelineResult(reply=None, vetoed=checked.reason)
            message = checked
        else:
            return PipelineResult(reply=None, vetoed=str(vetoed.get("reason")))

        fixed = message.metadata.get(FIXED_REPLY)
        if isinstance(fixed, str) and fixed:
            # The channel already knows the answer (e.g. "please resend, your message did
            # not reach us"): no model call, but the same journalled, audited reply path.
            log.info("[PIPELINE] fixed reply set by the channel, model not called")
            await self._audit_once(journal, "fixed_reply", None, "fixed_reply", {"kind": message.kind})
            outbound = await self._reply(message, journal, fixed)
            journal.finish(final_step, {"reply": fixed, "tools": []})
            return PipelineResult(reply=outbound)

        history, facts = await self._memory(message, journal)
        extra = await self.hooks.extend_prompt(message, context)
        system = system_prompt(assistant, tenant.display_name, facts, extra)
        user_turn = ChatTurn(role=Role.USER, content=render_user_message(message, pack_of(assistant)))
        turns: list[ChatTurn] = [*history, user_turn]
        tools = tenant.tools
        specs = tuple(tool.spec() for tool in tools.values())
        called: list[str] = []

        text: str | None = None
        for round_index in range(assistant.max_tool_rounds):
            reply = await self._complete(message, journal, system, turns, specs, round_index)
            if not reply.tool_calls:
                text = reply.text
                break
            log.info(
                "[LLM] {} tool call(s) detected: {}",
                len(reply.tool_calls), ", ".join(c.name for c in reply.tool_calls),
            )
            turns.append(ChatTurn(role=Role.ASSISTANT, content=reply.text, tool_calls=reply.tool_calls))
            for call in reply.tool_calls:
                result = await self._tool_step(message, journal, call, tools)
                called.append(call.name)
                turns.append(ChatTurn(
                    role=Role.TOOL, content=json.dumps(result, ensure_ascii=False, default=str),
                    tool_call_id=call.id, name=call.name,
                ))
        else:
            log.warning("[PIPELINE] still calling tools after {} rounds", assistant.max_tool_rounds)
            await self._audit_once(journal, "max_tool_rounds", None, "max_tool_rounds_exceeded",
                                   {"rounds": assistant.max_tool_rounds})
            # One last call with no tools on offer, so the model has to answer in words.
            reply = await self._complete(message, journal, system, turns, (), assistant.max_tool_rounds)
            text = reply.text if not reply.tool_calls else None
        if not text:
            text = pack_of(assistant).texts["fallback_reply"]

        outbound = await self._reply(message, journal, text)
        # At least once: a crash between the append and this record appends the turns again.
        await tenant.memory.append_history(
            message.chat_id, [user_turn, ChatTurn(role=Role.ASSISTANT, content=text)])
        journal.finish(final_step, {"reply": text, "tools": called})
        return PipelineResult(reply=outbound, tool_calls=tuple(called))

    async def _memory(
        self, message: InboundMessage, journal: MessageJournal
    ) -> tuple[list[ChatTurn], dict[str, Any]]:
        """History and facts as this message first saw them (a replay sees the same)."""
        step = journal.step("memory")
        recorded = journal.done(step)
        if recorded is not None:
            return [turn_from_json(t) for t in recorded["history"]], dict(recorded["facts"])
        memory = self.tenant.memory
        history = await memory.history(message.chat_id, self.tenant.config.assistant.history_messages)
        facts = await memory.facts(message.chat_id)
        journal.note(step, {"history": [turn_to_json(t) for t in history], "facts": facts})
        return history, facts

    async def _complete(
        self, message: InboundMessage, journal: MessageJournal, system: str,
        turns: list[ChatTurn], specs: tuple[Any, ...], round_index: int,
    ) -> LLMReply:
        request = LLMRequest(
            system=system, messages=tuple(turns), tools=specs,
            language=self.tenant.config.assistant.language,
        )
        step = journal.step("llm", llm_step_request(request))
        recorded = journal.done(step)
        if recorded is not None:
            return reply_from_json(recorded)
        reply = clean_reply(await self.tenant.llm.complete(request))
        journal.note(step, reply_to_json(reply), [self._entry(message, "llm_call", {
            "round": round_index, "model": reply.model,
            "prompt_tokens": reply.usage.prompt_tokens,
            "completion_tokens": reply.usage.completion_tokens,
            "tool_calls": [c.name for c in reply.tool_calls],
        })])
        return reply

    async def _tool_step(
        self, message: InboundMessage, journal: MessageJournal, call: ToolCall, tools: dict[str, Tool],
    ) -> dict[str, Any]:
        step = journal.step("tool", {"name": call.name, "arguments": _arguments_key(call.arguments)})
        recorded = journal.done(step)
        if recorded is not None:
            logger.bind(tenant=self.tenant.id, message_id=message.message_id).info(
                "[PIPELINE] {} already done for this message (journal), not repeated", call.name)
            return dict(recorded["result"])
        audits: list[AuditEntry] = []
        result = await self._run_tool(message, journal, call, tools, audits)
        journal.finish(step, {"result": result}, audits)
        return result

    async def _run_tool(
        self, message: InboundMessage, journal: MessageJournal, call: ToolCall,
        tools: dict[str, Tool], audits: list[AuditEntry],
    ) -> dict[str, Any]:
        log = logger.bind(tenant=self.tenant.id, message_id=message.message_id)

        def audit(action: str, details: dict[str, Any]) -> None:
            audits.append(self._entry(message, action, details))

        tool = tools.get(call.name)
        if tool is None:
            available = ", ".join(tools) or "none"
            log.warning("[PIPELINE] model called unknown tool {!r}", call.name)
            audit("tool_error", {"tool": call.name, "error": "unknown tool"})
            return {"error": f"unknown tool {call.name!r}; available tools: {available}"}
        try:
            arguments, ignored = parse_arguments(tool, call.arguments)
        except ToolError as exc:
            log.info("[PIPELINE] bad arguments for {}: {}", call.name, exc)
            audit("tool_error", {"tool": call.name, "error": str(exc)})
            return {"error": str(exc)}
        if ignored:
            log.warning("[PIPELINE] ignored tenant arguments {} in {}", ignored, call.name)
        # The model replies that led here are durable before anything has an effect: a
        # replay asks nothing again, so it calls the tool with the same arguments.
        await journal.flush()
        veto = await self.hooks.tool_called(call, arguments, self.tenant.context)
        if isinstance(veto, Veto):
            audit("tool_vetoed", {"tool": call.name, "reason": veto.reason})
            return {"error": f"refused: {veto.reason}"}

        async def sink(entry: AuditEntry) -> None:
            audits.append(entry)

        channel = JournalledChannel(self.tenant.channel, journal)
        ctx = ToolContext(
            tenant=self.tenant.id, assistant=self.tenant.config.assistant, message=message,
            channel=channel.as_channel(), crm=self.tenant.crm, memory=self.tenant.memory,
            llm=self.tenant.llm, connector_context=self.tenant.context, audit_sink=sink,
        )
        try:
            result = await tool.function(ctx, arguments)
        except ToolError as exc:
            log.info("[PIPELINE] tool {} refused: {}", call.name, exc)
            audit("tool_error", {"tool": call.name, "error": str(exc)})
            return {"error": str(exc)}
        if not isinstance(result, dict):
            result = {"result": result}
        audit("tool_called", {"tool": call.name, "ok": True})
        return result

    async def _reply(
        self, message: InboundMessage, journal: MessageJournal, text: str
    ) -> OutboundMessage | None:
        log = logger.bind(tenant=self.tenant.id, message_id=message.message_id)
        outbound = OutboundMessage(chat_id=message.chat_id, text=text, reply_to=message.message_id)
        step = journal.step("reply", {"chat_id": outbound.chat_id, "text": text})
        recorded = journal.done(step)
        if recorded is not None:
            if recorded.get("vetoed"):
                return None
            return attrs.evolve(outbound, text=recorded.get("text", text))
        started = journal.started(step)
        if started is not None and started.result is not None:
            # Interrupted mid-send: what the hooks let through then is what may have gone out.
            checked: OutboundMessage | Veto = attrs.evolve(outbound, text=started.result["text"])
        else:
            checked = await self.hooks.reply_sent(outbound, self.tenant.context)
        if isinstance(checked, Veto):
            log.info("[PIPELINE] reply vetoed by a plugin: {}", checked.reason)
            journal.finish(step, {"vetoed": checked.reason}, [
                self._entry(message, "reply_vetoed", {"reason": checked.reason})])
            return None

        def audit_for(result: SendResult, reconciled: bool) -> list[AuditEntry]:
            details: dict[str, Any] = {
                "chat_id": message.chat_id, "provider_message_id": result.message_id,
                "status": result.status,
            }
            if reconciled:
                details["reconciled"] = True
            return [self._entry(message, "reply_sent", details)]

        result = await send_once(self.tenant.channel, journal, step, checked, audit_for)
        if result.status == "queued":
            log.warning("[PIPELINE] reply queued by the channel, not delivered yet (chat {})",
                        message.chat_id)
        else:
            log.info("[PIPELINE] reply sent to chat {}", message.chat_id)
        return checked
