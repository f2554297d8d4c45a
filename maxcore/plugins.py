"""Plugin loading: entry points, built-ins, per-plugin checks, and the index of what
each plugin provides. The core calls hooks through :class:`maxcore.plugin_hooks.Hooks`.

Entry points of the ``maxcore`` group are loaded one at a time so that a plugin that
fails to import is reported and the others still load (pluggy's bulk loader stops at
the first failure). Likewise a plugin that misspells a hook, whose hook implementation
pluggy refuses, or whose connector class does not satisfy its protocol is disabled and
reported on its own (``PluginInfo.error``) instead of stopping every command.

``MAXCORE_LOAD_PLUGINS`` (comma-separated allow-list) and ``MAXCORE_BLOCK_PLUGINS``
(block-list) filter third-party plugins by entry-point name; the built-in plugins
always load. ``MAXCORE_TRACE_PLUGINS=1`` prints every hook call (pluggy's tracing) to
standard error.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .connectors import KINDS
from .errors import PluginError
from .logs import REDACTOR
from .plugin_checks import connector_problems, tool_problems, unknown_hooks
from .plugin_hooks import Hooks

__all__ = ["DEFAULT_PLUGINS", "ENTRY_POINT_GROUP", "Hooks", "PluginInfo", "PluginSet", "load_plugins"]

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
    "new_plugin": "maxcore.builtin.new_plugin_command",
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
    # tenants whose configuration uses one of this plugin's connectors (maxcore plugins --config)
    used_by: list[str] = attrs.field(factory=list)

    @property
    def origin(self) -> str:
        """Where the plugin comes from: distribution and entry point, for error reports."""
        if self.builtin:
            return "built-in"
        where = f"entry point {self.name} = {self.module}"
        if self.distribution:
            version = f" {self.version}" if self.version else ""
            return f"distribution {self.distribution}{version}, {where}"
        return where

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _trace_writer(text: str) -> None:
    from .logs import redact  # configured secrets never reach the terminal

    sys.stderr.write(redact(text))


class PluginSet:
    """The loaded plugins, their connectors and tools, and the hook facade."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("maxcore")
        self.pm.add_hookspecs(hookspecs)
        if os.environ.get("MAXCORE_TRACE_PLUGINS", "") not in ("", "0"):
            self.pm.trace.root.setwriter(_trace_writer)
            self.pm.enable_tracing()
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
                info.error = f"cannot be imported: {type(exc).__name__}: {exc}"
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
        self._disable_unknown_hooks()
        for name in list(self.infos):
            self._index(name)
        return self

    def _register(self, name: str, plugin: object, info: PluginInfo) -> None:
        if info.version is None:
            info.version = _module_version(plugin)
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            info.error = f"has an invalid hook implementation: {exc}"
            return
        except ValueError as exc:
            info.error = f"not registered: {exc}"
            return
        info.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])

    def _disable(self, name: str, error: str) -> None:
        self.infos[name].error = error
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)

    def _disable_unknown_hooks(self) -> None:
        """pluggy's ``check_pending``, plugin by plugin: a misspelt hook disables its
        plugin only."""
        for name in list(self.infos):
            plugin = self.pm.get_plugin(name)
            if plugin is None:
                continue
            unknown = unknown_hooks(self.pm, plugin)
            if unknown:
                self._disable(name, "; ".join(unknown))
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:  # pragma: no cover - checked above
            raise PluginError(f"plugin {exc.plugin!r}: {exc}") from exc

    def _index(self, name: str) -> None:
        """Check and index what one plugin registers; any problem disables it whole."""
        if self.pm.get_plugin(name) is None:
            return
        problems: list[str] = []
        connectors: list[tuple[str, Any]] = []
        tools: list[Any] = []
        try:
            for kind, hook_name in _REGISTER_HOOKS.items():
                for cls in self.hooks.call_for(name, hook_name):
                    problems.extend(connector_problems(kind, cls))
                    connectors.append((kind, cls))
            for tool in self.hooks.call_for(name, "register_tools"):
                problems.extend(tool_problems(tool))
                tools.append(tool)
        except Exception as exc:  # noqa: BLE001 - a register hook that crashes is reported
            problems.append(f"a register hook raised {type(exc).__name__}: {exc}")
        for kind, cls in connectors if not problems else ():
            owner = self.connectors[kind].get(cls.name)
            if owner is not None and owner is not cls:
                first = getattr(owner, "__maxcore_plugin__", "?")
                problems.append(
                    f"{kind} connector {cls.name!r} is already provided by plugin {first!r} "
                    "(block one with MAXCORE_BLOCK_PLUGINS)"
                )
        for tool in tools if not problems else ():
            if tool.name in self.tools:
                problems.append(
                    f"tool {tool.name!r} is already provided by plugin {self.tools[tool.name].plugin!r}"
                )
        if problems:
            self._disable(name, "; ".join(problems))
            return
        info = self.infos[name]
        for kind, cls in connectors:
            cls.__maxcore_plugin__ = name  # type: ignore[attr-defined]
            self.connectors[kind][cls.name] = cls
            info.connectors.setdefault(kind, []).append(cls.name)
            # The upstream's secret shapes (a token in a URL path) hide in every log line
            # from now on, whether or not a tenant uses the connector.
            for pattern in getattr(cls, "redact_patterns", ()):
                REDACTOR.add_pattern(pattern)
        for tool in tools:
            self.tools[tool.name] = attrs.evolve(tool, plugin=name)
            info.tools.append(tool.name)

    def describe_commands(self) -> None:
        """Fill ``PluginInfo.commands`` (for ``maxcore plugins`` only: it builds every
        plugin's click commands, which serving never needs)."""
        for plugin_name, commands in self.hooks.commands_by_plugin():
            if plugin_name in self.infos:
                self.infos[plugin_name].commands = commands

    def describe_usage(self, tenants: Iterable[Any]) -> None:
        """Fill ``PluginInfo.used_by`` from validated tenant configurations."""
        for tenant in tenants:
            for kind in KINDS:
                cls = self.connector_class(kind, getattr(tenant, kind).type)
                owner = self.infos.get(getattr(cls, "__maxcore_plugin__", ""))
                if owner is not None and tenant.tenant not in owner.used_by:
                    owner.used_by.append(tenant.tenant)

    def connector_class(self, kind: str, name: str) -> type | None:
        return self.connectors[kind].get(name)

    @property
    def failed(self) -> list[PluginInfo]:
        return [info for info in self.infos.values() if info.error]


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
