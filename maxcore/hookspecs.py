"""Every hook a maxcore plugin can implement.

Plugins are found through the ``maxcore`` entry-point group and implement these
with ``@maxcore.hookimpl``. The built-in connectors (sqlite, offline, webchat, console)
are plugins too, registered the same way.

pluggy calls hooks synchronously. A hook that needs to do I/O returns an awaitable
(for instance the coroutine of an ``async def`` helper); the core awaits it. The core
never calls these through ``pm.hook``: it goes through :class:`maxcore.plugins.Hooks`,
which has one typed method per hook below.
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
    """Add sub-commands to the ``maxcore`` command line (``cli.command()`` etc.)."""


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
    enrich it. ``tenant``, ``channel`` and ``chat_id`` of a replacement are ignored:
    a plugin cannot move a message to another tenant. May return an awaitable.
    """


@hookspec
def tool_called(call: ToolCall, arguments: dict[str, Any], context: ConnectorContext) -> Any:
    """Called before a tool runs, with its validated arguments.

    Return None to let it run or a :class:`maxcore.types.Veto`: the model then
    receives the veto reason as the tool's result. May return an awaitable.
    """


@hookspec
def reply_sent(message: OutboundMessage, context: ConnectorContext) -> Any:
    """Called for each reply just before the channel delivers it.

    Return None to send it as is, a new :class:`OutboundMessage` to change the text
    (``chat_id`` is kept), or a :class:`maxcore.types.Veto` to not send it. May
    return an awaitable.
    """


@hookspec
def extend_prompt(message: InboundMessage, context: ConnectorContext) -> Any:
    """Return text (or an awaitable of text) appended to the system prompt, or None."""
