"""pluggy hooks of the Green-API plugin (entry point ``greenapi`` in group ``maxcore``)."""

from __future__ import annotations

from typing import Any

import click
from loguru import logger

from maxcore import hookimpl
from maxcore.connectors import ConnectorContext
from maxcore.types import InboundMessage, Veto

from .channel import OPEN_CHANNELS, GreenApiChannel
from .parse import CHANNEL, RESEND_PROMPT


@hookimpl
def register_channels() -> list[type]:
    return [GreenApiChannel]


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import greenapi

    cli.add_command(greenapi)


@hookimpl
def message_received(message: InboundMessage, context: ConnectorContext) -> Any:
    """Keep the model out of what is not a question: deletions and unreadable messages.

    Both went through the inbox (deduped, audited as ``message_vetoed``); an unreadable
    one gets a single polite "please resend" reply instead of a model call.
    """
    if message.channel != CHANNEL:
        return None
    if message.metadata.get("greenapi_action") == RESEND_PROMPT:
        return _ask_to_resend(message, context)
    if message.kind == "deletedMessage":
        deleted = message.metadata.get("deleted_message_id")
        return Veto(f"the sender deleted message {deleted}; recorded, not answered")
    return None


async def _ask_to_resend(message: InboundMessage, context: ConnectorContext) -> Veto:
    marker = message.metadata.get("marker")
    channel = OPEN_CHANNELS.get(id(context))
    if channel is None:
        logger.bind(tenant=message.tenant, message_id=message.message_id).warning(
            "[GREENAPI_SEND] no open Green-API channel to ask for a resend")
        return Veto(f"unreadable message ({marker}); channel closed, no reply sent")
    await channel.send_resend_prompt(message)
    return Veto(f"unreadable message ({marker}); asked the sender to resend")
