"""Plugin loading and the typed facade the core uses instead of ``pm.hook``.

Entry points of the ``maxcore`` group are loaded one at a time so that a plugin that
fails to import is reported and the others still load (pluggy's bulk loader stops at
the first failure). ``MAXCORE_LOAD_PLUGINS`` (comma-separated allow-list) and
``MAXCORE_BLOCK_PLUGINS`` (block-list) filter third-party plugins by entry-point name;
the built-in plugins always load.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import os
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import attrs
import click
import pluggy

from . import hookspecs
from .connectors import KINDS, ConnectorContext
from .errors import PluginError
from .types import InboundMessage, OutboundMessage, ToolCall, Veto

ENTRY_POINT_GROUP = "maxcore"

# The embedded defaults, registered exactly like third-party plugins (the root
# pyproject declares them as entry points too; this list covers source checkouts).
DEFAULT_PLUGINS: dict[str, str] = {
    "sqlite": "maxcore.builtin.sqlite_plugin",
    "offline": "maxcore.builtin.offline_llm",
    "webchat": "maxcore.builtin.webchat",
    "console": "maxcore.builtin.console",
    "core_tools": "maxcore.tools.builtin",
    "memory_cli": "maxcore.builtin.memory_commands",
    "inbox_cli": "maxcore.builtin.inbox_commands",
    "usage": "maxcore.builtin.usage_command",
    "doctor": "maxcore.builtin.doctor_command",
}

_REGISTER_HOOKS = {
    "channel": "register_channels",
    "crm": "register_crms",
    "memory": "register_memories",
    "llm": "register_llms",
}


@attrs.define
class PluginInfo:
    """What ``maxcore plugins`` shows for one plugin."""

    name: str
    module: str
    version: str | None = None
    distribution: str | None = None
    builtin: bool = False
    error: str | None = None
    connectors: dict[str, list[str]] = attrs.field(factory=dict)
    tools: list[str] = attrs.field(factory=list)
    commands: list[str] = attrs.field(factory=list)
    hooks: list[str] = attrs.field(factory=list)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


class Hooks:
    """One typed method per hook; the only place that touches pluggy's hook relay."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm

    def _impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        # pluggy calls the most recently registered implementation first; we keep
        # that order when chaining so behaviour matches ``pm.hook`` calls.
        return list(reversed(getattr(self._pm.hook, hook_name).get_hookimpls()))

    def provided(self, hook_name: str) -> list[tuple[str, list[Any]]]:
        """Call a ``register_*`` hook and say which plugin returned what."""
        out: list[tuple[str, list[Any]]] = []
        for impl in self._impls(hook_name):
            result: Any = impl.function()
            out.append((impl.plugin_name, list(result or [])))
        return out

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
        for impl in self._impls("register_commands"):
            group = click.Group()
            impl.function(cli=group)
            out.append((impl.plugin_name, sorted(group.commands)))
        return out

    def register_routes(self) -> list[Any]:
        routes: list[Any] = []
        for batch in self._pm.hook.register_routes():
            routes.extend(batch or [])
        return routes

    async def message_received(
        self, message: InboundMessage, context: ConnectorContext
    ) -> InboundMessage | Veto:
        for impl in self._impls("message_received"):
            result = await _resolve(impl.function(message=message, context=context))
            if isinstance(result, Veto):
                return result
            if isinstance(result, InboundMessage):
                # Identity fields come from the authenticated entry point only.
                message = attrs.evolve(
                    result,
                    tenant=message.tenant,
                    channel=message.channel,
                    chat_id=message.chat_id,
                    message_id=message.message_id,
                )
        return message

    async def tool_called(
        self, call: ToolCall, arguments: dict[str, Any], context: ConnectorContext
    ) -> Veto | None:
        for impl in self._impls("tool_called"):
            result = await _resolve(
                impl.function(call=call, arguments=arguments, context=context)
            )
            if isinstance(result, Veto):
                return result
        return None

    async def reply_sent(
        self, message: OutboundMessage, context: ConnectorContext
    ) -> OutboundMessage | Veto:
        for impl in self._impls("reply_sent"):
            result = await _resolve(impl.function(message=message, context=context))
            if isinstance(result, Veto):
                return result
            if isinstance(result, OutboundMessage):
                message = attrs.evolve(result, chat_id=message.chat_id)
        return message

    async def extend_prompt(
        self, message: InboundMessage, context: ConnectorContext
    ) -> list[str]:
        parts: list[str] = []
        for impl in self._impls("extend_prompt"):
            result = await _resolve(impl.function(message=message, context=context))
            if result:
                parts.append(str(result))
        return parts


async def _resolve(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class PluginSet:
    """The loaded plugins, their connectors and tools, and the hook facade."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("maxcore")
        self.pm.add_hookspecs(hookspecs)
        self.hooks = Hooks(self.pm)
        self.infos: dict[str, PluginInfo] = {}
        self.connectors: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}
        self.tools: dict[str, Any] = {}

    # -- loading ---------------------------------------------------------------
    def load(
        self,
        *,
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
        extra: Iterable[tuple[str, ModuleType | object]] = (),
    ) -> PluginSet:
        """Load built-ins, entry points and ``extra`` (name, plugin) pairs, then index."""
        allow = _env_list("MAXCORE_LOAD_PLUGINS")
        block = _env_list("MAXCORE_BLOCK_PLUGINS") or set()
        eps = (
            entry_points
            if entry_points is not None
            else importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        )
        for ep in eps:
            builtin = ep.name in DEFAULT_PLUGINS and ep.value == DEFAULT_PLUGINS[ep.name]
            if not builtin and (ep.name in block or (allow is not None and ep.name not in allow)):
                continue
            if ep.name in self.infos:
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                builtin=builtin,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
            )
            self.infos[ep.name] = info
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is reported
                info.error = f"{type(exc).__name__}: {exc}"
                continue
            self._register(ep.name, plugin, info)
        for name, module_name in DEFAULT_PLUGINS.items():
            if name not in self.infos:
                info = PluginInfo(name=name, module=module_name, builtin=True)
                self.infos[name] = info
                self._register(name, importlib.import_module(module_name), info)
        for name, plugin in extra:
            info = PluginInfo(name=name, module=getattr(plugin, "__name__", repr(plugin)))
            self.infos[name] = info
            self._register(name, plugin, info)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from exc
        self._index()
        return self

    def _register(self, name: str, plugin: object, info: PluginInfo) -> None:
        if info.version is None:
            info.version = _module_version(plugin)
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} has an invalid hook implementation: {exc}") from exc
        except ValueError as exc:
            info.error = f"not registered: {exc}"
            return
        info.hooks = sorted(
            impl.name
            for impl in self.pm.get_hookcallers(plugin) or []
        )

    def _index(self) -> None:
        for kind, hook_name in _REGISTER_HOOKS.items():
            for plugin_name, classes in self.hooks.provided(hook_name):
                for cls in classes:
                    _check_connector_class(kind, cls, plugin_name)
                    owner = self.connectors[kind].get(cls.name)
                    if owner is not None and owner is not cls:
                        first = getattr(owner, "__maxcore_plugin__", "?")
                        raise PluginError(
                            f"two {kind} connectors are named {cls.name!r}: one from plugin "
                            f"{first!r}, one from plugin {plugin_name!r}; block one with "
                            "MAXCORE_BLOCK_PLUGINS"
                        )
                    cls.__maxcore_plugin__ = plugin_name  # type: ignore[attr-defined]
                    self.connectors[kind][cls.name] = cls
                    if plugin_name in self.infos:
                        self.infos[plugin_name].connectors.setdefault(kind, []).append(cls.name)
        for plugin_name, tools in self.hooks.register_tools():
            for tool in tools:
                if tool.name in self.tools:
                    raise PluginError(
                        f"two tools are named {tool.name!r} (plugin {plugin_name!r} and "
                        f"plugin {self.tools[tool.name].plugin!r})"
                    )
                self.tools[tool.name] = attrs.evolve(tool, plugin=plugin_name)
                if plugin_name in self.infos:
                    self.infos[plugin_name].tools.append(tool.name)

    def describe_commands(self) -> None:
        """Fill ``PluginInfo.commands`` (for ``maxcore plugins`` only: it builds every
        plugin's click commands, which serving never needs)."""
        for plugin_name, commands in self.hooks.commands_by_plugin():
            if plugin_name in self.infos:
                self.infos[plugin_name].commands = commands

    def connector_class(self, kind: str, name: str) -> type | None:
        return self.connectors[kind].get(name)

    @property
    def failed(self) -> list[PluginInfo]:
        return [info for info in self.infos.values() if info.error]


def _check_connector_class(kind: str, cls: Any, plugin_name: str) -> None:
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"plugin {plugin_name!r} registered a {kind} class {cls!r} without a name")
    config_cls = getattr(cls, "Config", None)
    if config_cls is None or not attrs.has(config_cls):
        raise PluginError(
            f"plugin {plugin_name!r}: {kind} {name!r} needs a frozen attrs class named Config"
        )


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def _module_version(plugin: object) -> str | None:
    module = inspect.getmodule(plugin) if not isinstance(plugin, ModuleType) else plugin
    top = (module.__name__ if module else "").split(".")[0]
    try:
        for dist in _packages_distributions().get(top, []):
            return importlib.metadata.version(dist)
    except Exception:  # noqa: BLE001 - version is informative only
        return None
    return None


def load_plugins(extra: Iterable[tuple[str, object]] = ()) -> PluginSet:
    """Load every plugin available in this environment."""
    return PluginSet().load(extra=extra)


Factory = Callable[[], PluginSet]
