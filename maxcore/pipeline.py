"""One message through the assistant: memory → prompt → model ⇄ tools → reply → audit.

The tenant is bound when the pipeline is built (from the entry point that accepted
the message); tools receive a context holding that tenant's connectors only.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from .errors import ToolError
from .prompts import pack_of, render_user_message, system_prompt
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
    ToolCall,
    Veto,
)

if TYPE_CHECKING:
    from .plugins import Hooks
    from .tenants import TenantRuntime

@attrs.frozen
class PipelineResult:
    reply: OutboundMessage | None
    tool_calls: tuple[str, ...] = ()
    vetoed: str | None = None


class Pipeline:
    """Processes messages for one tenant."""

    def __init__(self, tenant: TenantRuntime, hooks: Hooks) -> None:
        self.tenant = tenant
        self.hooks = hooks

    async def process(self, message: InboundMessage) -> PipelineResult:
        if message.tenant != self.tenant.id:
            raise ValueError(f"message for tenant {message.tenant!r} sent to {self.tenant.id!r}")
        # Lines logged by connectors while this message is processed carry its ids too.
        with logger.contextualize(tenant=message.tenant, message_id=message.message_id):
            return await self._process(message)

    async def _process(self, message: InboundMessage) -> PipelineResult:
        tenant = self.tenant
        log = logger.bind(tenant=tenant.id, message_id=message.message_id)
        assistant = tenant.config.assistant
        context = tenant.context
        log.info("[PIPELINE] processing message from chat {}", message.chat_id)

        checked = await self.hooks.message_received(message, context)
        if isinstance(checked, Veto):
            log.info("[PIPELINE] message vetoed by a plugin: {}", checked.reason)
            await self._audit(message, "message_vetoed", {"reason": checked.reason})
            return PipelineResult(reply=None, vetoed=checked.reason)
        message = checked

        fixed = message.metadata.get(FIXED_REPLY)
        if isinstance(fixed, str) and fixed:
            # The channel already knows the answer (e.g. "please resend, your message did
            # not reach us"): no model call, but the same journalled, audited reply path.
            log.info("[PIPELINE] fixed reply set by the channel, model not called")
            await self._audit(message, "fixed_reply", {"kind": message.kind})
            return PipelineResult(reply=await self._reply(message, fixed))

        history = await tenant.memory.history(message.chat_id, assistant.history_messages)
        facts = await tenant.memory.facts(message.chat_id)
        extra = await self.hooks.extend_prompt(message, context)
        system = system_prompt(assistant, tenant.display_name, facts, extra)
        user_turn = ChatTurn(role=Role.USER, content=render_user_message(message, pack_of(assistant)))
        turns: list[ChatTurn] = [*history, user_turn]
        tools = tenant.tools
        specs = tuple(tool.spec() for tool in tools.values())
        called: list[str] = []

        text: str | None = None
        for round_index in range(assistant.max_tool_rounds):
            reply = await self._complete(message, system, turns, specs, round_index)
            if not reply.tool_calls:
                text = reply.text
                break
            log.info(
                "[LLM] {} tool call(s) detected: {}",
                len(reply.tool_calls), ", ".join(c.name for c in reply.tool_calls),
            )
            turns.append(ChatTurn(role=Role.ASSISTANT, content=reply.text, tool_calls=reply.tool_calls))
            for call_index, call in enumerate(reply.tool_calls):
                result = await self._run_tool(message, call, tools, round_index, call_index)
                called.append(call.name)
                turns.append(ChatTurn(
                    role=Role.TOOL, content=json.dumps(result, ensure_ascii=False, default=str),
                    tool_call_id=call.id, name=call.name,
                ))
        else:
            log.warning("[PIPELINE] still calling tools after {} rounds", assistant.max_tool_rounds)
            await self._audit(message, "max_tool_rounds_exceeded", {"rounds": assistant.max_tool_rounds})
            # One last call with no tools on offer, so the model has to answer in words.
            reply = await self._complete(message, system, turns, (), assistant.max_tool_rounds)
            text = reply.text if not reply.tool_calls else None
        if not text:
            text = pack_of(assistant).texts["fallback_reply"]

        outbound = await self._reply(message, text)
        await self._once(message, "history", lambda: self._append_history(message, user_turn, text))
        return PipelineResult(reply=outbound, tool_calls=tuple(called))

    async def _complete(
        self, message: InboundMessage, system: str, turns: list[ChatTurn],
        specs: tuple[Any, ...], round_index: int,
    ) -> LLMReply:
        request = LLMRequest(
            system=system, messages=tuple(turns), tools=specs,
            language=self.tenant.config.assistant.language,
        )
        reply = await self.tenant.llm.complete(request)
        await self._audit(message, "llm_call", {
            "round": round_index, "model": reply.model,
            "prompt_tokens": reply.usage.prompt_tokens,
            "completion_tokens": reply.usage.completion_tokens,
            "tool_calls": [c.name for c in reply.tool_calls],
        })
        return reply

    async def _run_tool(
        self, message: InboundMessage, call: ToolCall, tools: dict[str, Tool],
        round_index: int, call_index: int,
    ) -> dict[str, Any]:
        log = logger.bind(tenant=self.tenant.id, message_id=message.message_id)
        tool = tools.get(call.name)
        if tool is None:
            available = ", ".join(tools) or "none"
            log.warning("[PIPELINE] model called unknown tool {!r}", call.name)
            await self._audit(message, "tool_error", {"tool": call.name, "error": "unknown tool"})
            return {"error": f"unknown tool {call.name!r}; available tools: {available}"}
        try:
            arguments, ignored = parse_arguments(tool, call.arguments)
        except ToolError as exc:
            log.info("[PIPELINE] bad arguments for {}: {}", call.name, exc)
            await self._audit(message, "tool_error", {"tool": call.name, "error": str(exc)})
            return {"error": str(exc)}
        if ignored:
            log.warning("[PIPELINE] ignored tenant arguments {} in {}", ignored, call.name)
        veto = await self.hooks.tool_called(call, arguments, self.tenant.context)
        if isinstance(veto, Veto):
            await self._audit(message, "tool_vetoed", {"tool": call.name, "reason": veto.reason})
            return {"error": f"refused: {veto.reason}"}

        key = f"{message.dedupe_key}:tool:{round_index}:{call_index}:{call.name}"
        if tool.side_effect:
            done = await self.tenant.memory.get_effect(key)
            if done is not None:
                log.info("[PIPELINE] {} already done for this message, not repeated", call.name)
                return done
        ctx = ToolContext(
            tenant=self.tenant.id, assistant=self.tenant.config.assistant, message=message,
            channel=self.tenant.channel, crm=self.tenant.crm, memory=self.tenant.memory,
            llm=self.tenant.llm, connector_context=self.tenant.context,
        )
        try:
            result = await tool.function(ctx, arguments)
        except ToolError as exc:
            log.info("[PIPELINE] tool {} refused: {}", call.name, exc)
            await self._audit(message, "tool_error", {"tool": call.name, "error": str(exc)})
            return {"error": str(exc)}
        if not isinstance(result, dict):
            result = {"result": result}
        await self._audit(message, "tool_called", {"tool": call.name, "ok": True})
        if tool.side_effect:
            await self.tenant.memory.put_effect(key, result)
        return result

    async def _reply(self, message: InboundMessage, text: str) -> OutboundMessage | None:
        log = logger.bind(tenant=self.tenant.id, message_id=message.message_id)
        outbound = OutboundMessage(chat_id=message.chat_id, text=text, reply_to=message.message_id)
        checked = await self.hooks.reply_sent(outbound, self.tenant.context)
        if isinstance(checked, Veto):
            log.info("[PIPELINE] reply vetoed by a plugin: {}", checked.reason)
            await self._audit(message, "reply_vetoed", {"reason": checked.reason})
            return None

        async def send() -> dict[str, Any]:
            result = await self.tenant.channel.send(checked)
            await self._audit(message, "reply_sent", {
                "chat_id": message.chat_id, "provider_message_id": result.message_id,
            })
            return {"message_id": result.message_id}

        await self._once(message, "reply", send)
        log.info("[PIPELINE] reply sent to chat {}", message.chat_id)
        return checked

    async def _append_history(
        self, message: InboundMessage, user_turn: ChatTurn, text: str
    ) -> dict[str, Any]:
        await self.tenant.memory.append_history(
            message.chat_id, [user_turn, ChatTurn(role=Role.ASSISTANT, content=text)]
        )
        return {"ok": True}

    async def _once(self, message: InboundMessage, step: str, action: Any) -> dict[str, Any]:
        key = f"{message.dedupe_key}:{step}"
        done = await self.tenant.memory.get_effect(key)
        if done is not None:
            return done
        result = await action()
        await self.tenant.memory.put_effect(key, result)
        return result

    async def _audit(self, message: InboundMessage, action: str, details: dict[str, Any]) -> None:
        await self.tenant.memory.audit(
            AuditEntry(action=action, details=details, message_id=message.message_id)
        )
        if action in ("lead_created", "lead_updated", "reply_sent", "llm_call"):
            logger.bind(tenant=self.tenant.id, message_id=message.message_id).debug(
                "[PIPELINE] audit {}", action
            )
