"""The Green-API channel passes ``ChannelContract`` against the Green-API emulator, whose
outgoing journal lags (``find_sent`` must say "cannot tell yet" until the lag has passed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from greenapi_support import (
    API_TOKEN,
    INSTANCE,
    OTHER_API_TOKEN,
    OTHER_INSTANCE,
    OTHER_WEBHOOK_TOKEN,
    WEBHOOK_TOKEN,
    load_fixture,
)
from maxcore_greenapi.channel import GreenApiChannel

from maxcore import WebhookRequest
from maxcore.testing import ChannelContract, ChannelDriver
from maxcore.testing.greenapi_emulator import GreenApiEmulator

INSTANCES = (INSTANCE, OTHER_INSTANCE)
API_TOKENS = (API_TOKEN, OTHER_API_TOKEN)
WEBHOOK_TOKENS = (WEBHOOK_TOKEN, OTHER_WEBHOOK_TOKEN)
CHAT = "33612345678@c.us"
# A sent message appears in the emulator's lastOutgoingMessages this long after the send;
# the channel is told its journal may lag a little more, as configured upstream.
OUTGOING_LAG_S = 0.2
JOURNAL_LAG_S = 0.5


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[GreenApiEmulator, str]]:
    """This module's emulator (the conftest's ``emulator`` and ``api_url`` use it)."""
    emulator = GreenApiEmulator(outgoing_lag_s=OUTGOING_LAG_S)
    with emulator.serve() as server:
        yield emulator, server.url


def _request(body: dict[str, Any], token: str | None) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return WebhookRequest(headers=headers, body=json.dumps(body).encode())


class GreenApiDriver(ChannelDriver):
    channel = GreenApiChannel

    def __init__(self, emulator: GreenApiEmulator, api_url: str) -> None:
        self.emulator, self.api_url = emulator, api_url

    def settings(self, tenant: int) -> dict[str, Any]:
        return {"instance_id": INSTANCES[tenant], "api_token": API_TOKENS[tenant],
                "webhook_token": WEBHOOK_TOKENS[tenant], "api_url": self.api_url,
                "backoff_initial_ms": 1, "outgoing_journal_lag_s": JOURNAL_LAG_S}

    def _notification(self, fixture: str, tenant: int, message_id: str) -> dict[str, Any]:
        body = load_fixture(fixture)
        body["instanceData"]["idInstance"] = INSTANCES[tenant]
        body["idMessage"] = message_id
        return body

    def inbound(self, tenant: int, message_id: str, text: str) -> WebhookRequest:
        body = self._notification("incoming_text.json", tenant, message_id)
        body["messageData"]["textMessageData"]["textMessage"] = text
        return _request(body, WEBHOOK_TOKENS[tenant])

    def bad_auth(self, tenant: int, message_id: str) -> list[WebhookRequest]:
        body = self._notification("incoming_text.json", tenant, message_id)
        return [_request(body, None), _request(body, WEBHOOK_TOKENS[tenant] + "x"),
                _request(body, WEBHOOK_TOKENS[1 - tenant]), _request(body, "")]

    def echo(self, tenant: int, message_id: str) -> WebhookRequest:
        body = self._notification("outgoing_api_message_received.json", tenant, message_id)
        return _request(body, WEBHOOK_TOKENS[tenant])

    def chat_id(self, tenant: int) -> str:
        return CHAT

    def sent(self, tenant: int) -> list[str]:
        return [m["message"] for m in self.emulator.instances[INSTANCES[tenant]].sent]

    def fail_sends(self, tenant: int, outcome: str) -> bool:
        self.emulator.clear_faults()
        # 500 on every attempt is retryable; a refused API token is permanent.
        self.emulator.fail("sendMessage", 500 if outcome == "retryable" else 401, times=10)
        return True

    def reconcile_lag_s(self) -> float:
        return JOURNAL_LAG_S


class TestGreenApiChannel(ChannelContract):
    @pytest.fixture
    def channel_driver(self, emulator: GreenApiEmulator, api_url: str) -> ChannelDriver:
        return GreenApiDriver(emulator, api_url)
