"""What is checked about each plugin at load, so that a broken one is reported alone.

A misspelt hook name or a connector class that does not satisfy its protocol
disables that plugin only (listed ✗ by ``maxcore plugins`` with the reason and the
nearest hook name); every other plugin and command keeps working.
"""

from __future__ import annotations

import difflib
import inspect
import re
from typing import Any, Protocol

import attrs
import pluggy

from .connectors import CRM, LLM, Channel, Memory
from .routing import Routing

PROTOCOLS: dict[str, type] = {"channel": Channel, "crm": CRM, "memory": Memory, "llm": LLM}


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """The hooks ``plugin`` implements that no hookspec declares (``check_pending``'s
    test, for one plugin), each with the nearest declared hook name."""
    specs = sorted(
        name for name, caller in vars(pm.hook).items()
        if not name.startswith("_") and caller.has_spec()
    )
    out: list[str] = []
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.has_spec():
            continue
        impls = [i for i in caller.get_hookimpls() if i.plugin is plugin]
        if any(not i.optionalhook for i in impls):
            out.append(f"implements an unknown hook {caller.name!r}{did_you_mean(caller.name, specs)}")
    return out


def _protocol_methods(protocol: type) -> dict[str, bool]:
    """Method names a protocol declares (with their base protocols): name -> is async."""
    methods: dict[str, bool] = {}
    for base in reversed(protocol.__mro__):
        if base is Protocol or not getattr(base, "_is_protocol", False):
            continue
        for name, value in vars(base).items():
            if name.startswith("_"):
                continue
            if isinstance(value, classmethod | staticmethod):
                methods[name] = inspect.iscoroutinefunction(value.__func__)
            elif isinstance(value, property) or inspect.isfunction(value):
                methods[name] = inspect.iscoroutinefunction(value)
    return methods


def connector_problems(kind: str, cls: Any) -> list[str]:
    """Why ``cls`` cannot be a ``kind`` connector (empty when it can)."""
    if not isinstance(cls, type):
        return [f"registered {cls!r} as a {kind} connector: expected a class"]
    label = f"{kind} connector {cls.__qualname__}"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        return [f"{label} has no name (a class attribute `name = \"...\"`, the YAML {kind}.type)"]
    label = f"{kind} connector {name!r} ({cls.__qualname__})"
    problems: list[str] = []
    config_cls = getattr(cls, "Config", None)
    if config_cls is None or not attrs.has(config_cls):
        problems.append(f"{label} needs a frozen attrs class named Config")
    problems.extend(_declaration_problems(kind, cls, label))
    for method, is_async in _protocol_methods(PROTOCOLS[kind]).items():
        if not hasattr(cls, method):
            problems.append(f"{label} lacks {method}() of the {PROTOCOLS[kind].__name__} protocol")
            continue
        value = inspect.getattr_static(cls, method)
        if isinstance(value, classmethod | staticmethod):
            value = value.__func__
        if isinstance(value, property) or not callable(value):
            continue
        if is_async and not inspect.iscoroutinefunction(value):
            problems.append(f"{label}: {method}() must be `async def`")
        elif not is_async and inspect.iscoroutinefunction(value):
            problems.append(f"{label}: {method}() must not be `async def`")
    return problems


def _declaration_problems(kind: str, cls: type, label: str) -> list[str]:
    """The class attributes the core reads: ``redact_patterns`` (every kind), and for
    channels ``routing`` and ``max_text_chars``."""
    problems: list[str] = []
    patterns = getattr(cls, "redact_patterns", ())
    if not isinstance(patterns, tuple) or not all(isinstance(p, re.Pattern) for p in patterns):
        problems.append(f"{label}: redact_patterns must be a tuple of compiled re patterns")
    if kind != "channel":
        return problems
    if not isinstance(getattr(cls, "routing", None), Routing):
        problems.append(f"{label} declares no routing: routing = maxcore.routing.Routing.body(...), "
                        ".header(...), .path() or .custom(...)")
    limit = getattr(cls, "max_text_chars", None)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        problems.append(f"{label}: max_text_chars must be a positive integer or None")
    return problems


def tool_problems(tool: Any) -> list[str]:
    name = getattr(tool, "name", None)
    if not isinstance(name, str) or not name:
        return [f"registered a tool without a name: {tool!r}"]
    return []
