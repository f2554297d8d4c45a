"""The ``console`` channel: replies printed to a terminal, used by ``maxcore chat``."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import attrs

from ..connectors import ChannelBase, ConnectorContext, WebhookRequest
from ..errors import WebhookError
from ..hookspecs import hookimpl
from ..routing import Routing
from ..types import OutboundMessage, SendResult


@attrs.frozen
class ConsoleConfig:
    prefix: str = ""


class ConsoleChannel(ChannelBase):
    """Prints each reply; keeps them in ``sent`` for whoever drives it."""

    name = "console"
    Config = ConsoleConfig
    routing = Routing.custom("none: the console channel receives no webhooks")

    def __init__(
        self, config: ConsoleConfig, context: ConnectorContext, stream: TextIO | None = None
    ) -> None:
        super().__init__(config, context)
        self.stream = stream
        self.sent: list[OutboundMessage] = []

    @classmethod
    def webhook_route_key(cls, request: WebhookRequest) -> str:
        raise WebhookError(404, "the console channel receives no webhooks")

    @property
    def route_key(self) -> str:
        return self.tenant

    async def parse_webhook(self, request: WebhookRequest) -> list[Any]:
        raise WebhookError(404, "the console channel receives no webhooks")

    async def send(self, message: OutboundMessage) -> SendResult:
        self.sent.append(message)
        stream = self.stream or sys.stdout
        stream.write(f"{self.config.prefix}{message.text}\n")
        stream.flush()
        return SendResult(message_id=f"console-{len(self.sent)}")


@hookimpl
def register_channels() -> list[type]:
    return [ConsoleChannel]
