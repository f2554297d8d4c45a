"""pluggy hooks of the Green-API plugin (entry point ``greenapi`` in group ``maxcore``)."""

from __future__ import annotations

from typing import Any

import click

from maxcore import hookimpl
from maxcore.connectors import ConnectorContext
from maxcore.types import InboundMessage, MessageKind, Veto

from .channel import GreenApiChannel
from .parse import CHANNEL


@hookimpl
def register_channels() -> list[type]:
    return [GreenApiChannel]


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import greenapi

    cli.add_command(greenapi)


@hookimpl
def message_received(message: InboundMessage, context: ConnectorContext) -> Any:
    """Keep the model out of deletions: recorded (inbox, audit ``message_vetoed``), not answered.

    Unreadable messages ({{SWE001}}...) carry a fixed "please resend" reply set by the
    channel, which the pipeline sends without calling the model.
    """
    if message.channel != CHANNEL:
        return None
    if message.kind == MessageKind.DELETED:
        deleted = message.metadata.get("deleted_message_id")
        return Veto(f"the sender deleted message {deleted}; recorded, not answered")
    return None
