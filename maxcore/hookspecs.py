"""Every hook a maxcore plugin can implement.

Plugins are found through the ``maxcore`` entry-point group and implement these
with ``@maxcore.hookimpl``. The built-in connectors (sqlite, offline, webchat, console)
are plugins too, registered the same way. docs/hooks.md is the reference (a test keeps
it in step with the signatures below).

How the core calls them: through :class:`maxcore.plugin_hooks.Hooks`, which goes
through pluggy (``pm.hook``), so pluggy's rules hold:

- an implementation may accept any subset of a hook's arguments
  (``def message_received(message): ...``);
- implementations run most recently registered first, adjusted by
  ``@hookimpl(tryfirst=True)`` / ``trylast=True``;
- ``@hookimpl(wrapper=True)`` generators wrap the other implementations:
  ``results = yield`` receives the list of their (non-None) results, and what the
  wrapper returns replaces it; old-style ``hookwrapper=True`` works too;
- ``MAXCORE_TRACE_PLUGINS=1`` prints every call and its results.

Async: pluggy calls hooks synchronously. A hook that needs I/O returns an awaitable
(for instance the coroutine of an ``async def`` helper; an ``async def`` hook
implementation returns one too). The facade awaits each awaitable *after* pluggy
returns, in call order. So a wrapper sees the raw results, awaitables not yet awaited:
to transform one, return a new coroutine that awaits it (``async def f(): v = await r``);
an exception raised inside an awaitable surfaces when the facade awaits it, outside the
wrapper's ``try``. If an awaitable raises, the ones not yet awaited are closed.

Event hooks (``message_received``, ``tool_called``, ``reply_sent``, ``extend_prompt``)
all receive the same arguments: implementations do not see each other's replacements.
A :class:`maxcore.types.Veto` from any implementation wins. Replacements are merged
field by field; when two implementations change the same field, the one called first
wins. A plugin that needs another's result wraps it (``wrapper=True``).

``register_*`` hooks are called once per plugin (a pluggy subset call), so that each
connector class and tool is attributed to the plugin that returned it; a wrapper on a
``register_*`` hook wraps its own plugin's implementations only.
"""

from __future__ import annotations

from typing import Any

import click
import pluggy

from .connectors import ConnectorContext
from .types import InboundMessage, OutboundMessage, ToolCall

hookspec = pluggy.HookspecMarker("maxcore")
hookimpl = pluggy.HookimplMarker("maxcore")


@hookspec
def register_channels() -> list[type]:
    """Return channel connector classes.

    Each class has a ``name`` (the tenant YAML ``channel.type``), a frozen attrs
    ``Config`` class and implements :class:`maxcore.connectors.Channel`.
    """


@hookspec
def register_crms() -> list[type]:
    """Return CRM connector classes (:class:`maxcore.connectors.CRM`).

    ``name`` is the value of ``crm.type`` in tenant YAML.
    """


@hookspec
def register_memories() -> list[type]:
    """Return memory connector classes (:class:`maxcore.connectors.Memory`).

    ``name`` is the value of ``memory.type`` in tenant YAML.
    """


@hookspec
def register_llms() -> list[type]:
    """Return LLM connector classes (:class:`maxcore.connectors.LLM`).

    ``name`` is the value of ``llm.type`` in tenant YAML.
    """


@hookspec
def register_tools() -> list[Any]:
    """Return :class:`maxcore.tools.Tool` objects the model may call.

    A tool receives a :class:`maxcore.tools.ToolContext` (the tenant and its bound
    connectors) and arguments already validated against its JSON schema. Tenants
    enable tools by name in ``assistant.allowed_tools``.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``maxcore`` command line (``cli.command()`` etc.).

    Give each command ``@maxcore.cli.config_option`` so that, like every built-in
    command, it takes ``--config DIR``.
    """


@hookspec
def register_routes() -> list[Any]:
    """Return extra Starlette routes (``starlette.routing.Route``) for the HTTP app.

    Handlers reach the running server through ``request.app.state.runtime``.
    """


@hookspec
def message_received(message: InboundMessage, context: ConnectorContext) -> Any:
    """Called before the pipeline processes an inbound message.

    Return None to let it through, a :class:`maxcore.types.Veto` to drop it (the
    reason is audited), or a new :class:`InboundMessage` (``attrs.evolve``) to
    enrich it. ``tenant``, ``channel``, ``chat_id`` and ``message_id`` of a
    replacement are ignored: a plugin cannot move a message to another tenant.
    Replacements from several plugins are merged field by field (first called wins
    a conflict); any Veto wins. May return an awaitable.
    """


@hookspec
def tool_called(call: ToolCall, arguments: dict[str, Any], context: ConnectorContext) -> Any:
    """Called before a tool runs, with its validated arguments.

    Return None to let it run or a :class:`maxcore.types.Veto`: the model then
    receives the veto reason as the tool's result (the first Veto in call order).
    May return an awaitable.
    """


@hookspec
def reply_sent(message: OutboundMessage, context: ConnectorContext) -> Any:
    """Called for each reply just before the channel delivers it.

    Return None to send it as is, a new :class:`OutboundMessage` to change the text
    (``chat_id`` is kept; replacements merge as for ``message_received``), or a
    :class:`maxcore.types.Veto` to not send it. May return an awaitable.
    """


@hookspec
def extend_prompt(message: InboundMessage, context: ConnectorContext) -> Any:
    """Return text (or an awaitable of text) appended to the system prompt, or None.

    Every implementation's text is appended, in call order.
    """
