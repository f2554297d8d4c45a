"""The typed facade over pluggy's hook relay: one method per hook in :mod:`maxcore.hookspecs`.

Every call goes through ``pm.hook`` (or a pluggy subset caller), so pluggy's semantics
hold: an implementation may accept a subset of the arguments, ``wrapper=True``
implementations wrap the others, ``tryfirst``/``trylast`` order the calls and tracing
(``MAXCORE_TRACE_PLUGINS=1``) sees every call. This module is the only one in the
core that touches ``pm.hook``.

pluggy is synchronous: an implementation may return an awaitable, which the facade
awaits after pluggy returns (see the module docstring of :mod:`maxcore.hookspecs`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, TypeVar

import attrs
import click
import pluggy

from .connectors import ConnectorContext
from .types import InboundMessage, OutboundMessage, ToolCall, Veto

M = TypeVar("M", InboundMessage, OutboundMessage)


async def settle(results: Iterable[Any]) -> list[Any]:
    """Await the awaitables among ``results`` in call order; drop None.

    If one raises, the coroutines not yet awaited are closed (no "never awaited"
    warning) and the error propagates.
    """
    pending = list(results)
    out: list[Any] = []
    try:
        while pending:
            value = pending.pop(0)
            if inspect.isawaitable(value):
                value = await value
            if value is not None:
                out.append(value)
    except BaseException:
        for value in pending:
            if inspect.iscoroutine(value):
                value.close()
        raise
    return out


def merge_replacements(original: M, results: list[Any], keep: tuple[str, ...]) -> M:
    """Apply each replacement's changed fields to ``original``.

    Every implementation received the same ``original``; when two change the same
    field, the one pluggy called first wins. Fields in ``keep`` never change.
    """
    merged = original
    cls = type(original)
    for result in reversed(results):
        if not isinstance(result, cls):
            continue
        changes = {
            f.alias: getattr(result, f.name)
            for f in attrs.fields(cls)
            if f.init and f.name not in keep and getattr(result, f.name) != getattr(original, f.name)
        }
        if changes:
            merged = attrs.evolve(merged, **changes)
    return merged


def _first_veto(results: list[Any]) -> Veto | None:
    return next((r for r in results if isinstance(r, Veto)), None)


class Hooks:
    """One typed method per hook; the only place that touches pluggy's hook relay."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm

    # -- register_* hooks: called per plugin so each result is attributed ------------
    def call_for(self, plugin_name: str, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call ``hook_name`` through pluggy with only ``plugin_name``'s implementations.

        Used for the ``register_*`` hooks, whose results must be attributed to the
        plugin that returned them (listing, error reports). Lists are flattened.
        """
        plugin = self._pm.get_plugin(plugin_name)
        if not any(i.plugin is plugin for i in getattr(self._pm.hook, hook_name).get_hookimpls()):
            return []
        others = [p for p in self._pm.get_plugins() if p is not plugin]
        caller = self._pm.subset_hook_caller(hook_name, remove_plugins=others)
        out: list[Any] = []
        for result in caller(**kwargs):
            out.extend(result if isinstance(result, list | tuple) else [result])
        return out

    def implementers(self, hook_name: str) -> list[str]:
        """Names of the plugins implementing ``hook_name``, in pluggy's call order."""
        names: list[str] = []
        for impl in reversed(getattr(self._pm.hook, hook_name).get_hookimpls()):
            if impl.plugin_name not in names:
                names.append(impl.plugin_name)
        return names

    def provided(self, hook_name: str) -> list[tuple[str, list[Any]]]:
        """Call a ``register_*`` hook and say which plugin returned what."""
        return [(name, self.call_for(name, hook_name)) for name in self.implementers(hook_name)]

    def register_channels(self) -> list[tuple[str, list[type]]]:
        return self.provided("register_channels")

    def register_crms(self) -> list[tuple[str, list[type]]]:
        return self.provided("register_crms")

    def register_memories(self) -> list[tuple[str, list[type]]]:
        return self.provided("register_memories")

    def register_llms(self) -> list[tuple[str, list[type]]]:
        return self.provided("register_llms")

    def register_tools(self) -> list[tuple[str, list[Any]]]:
        return self.provided("register_tools")

    def register_commands(self, cli: click.Group) -> None:
        self._pm.hook.register_commands(cli=cli)

    def commands_by_plugin(self) -> list[tuple[str, list[str]]]:
        """Which top-level commands each plugin adds (for ``maxcore plugins``)."""
        out: list[tuple[str, list[str]]] = []
        for name in self.implementers("register_commands"):
            group = click.Group()
            self.call_for(name, "register_commands", cli=group)
            out.append((name, sorted(group.commands)))
        return out

    def register_routes(self) -> list[Any]:
        routes: list[Any] = []
        for batch in self._pm.hook.register_routes():
            routes.extend(batch or [])
        return routes

    # -- event hooks: one pluggy call, then await and combine -------------------------
    async def message_received(
        self, message: InboundMessage, context: ConnectorContext
    ) -> InboundMessage | Veto:
        results = await settle(self._pm.hook.message_received(message=message, context=context))
        veto = _first_veto(results)
        if veto is not None:
            return veto
        # Identity fields come from the authenticated entry point only.
        return merge_replacements(message, results, keep=("tenant", "channel", "chat_id", "message_id"))

    async def tool_called(
        self, call: ToolCall, arguments: dict[str, Any], context: ConnectorContext
    ) -> Veto | None:
        results = await settle(
            self._pm.hook.tool_called(call=call, arguments=arguments, context=context)
        )
        return _first_veto(results)

    async def reply_sent(
        self, message: OutboundMessage, context: ConnectorContext
    ) -> OutboundMessage | Veto:
        results = await settle(self._pm.hook.reply_sent(message=message, context=context))
        veto = _first_veto(results)
        if veto is not None:
            return veto
        return merge_replacements(message, results, keep=("chat_id",))

    async def extend_prompt(
        self, message: InboundMessage, context: ConnectorContext
    ) -> list[str]:
        results = await settle(self._pm.hook.extend_prompt(message=message, context=context))
        return [str(r) for r in results if r]
