"""A Telegram-like channel (routed on the path, a secret header, no account id in the
body) and a Meta-like one (routed on a body value, signed bodies, a GET handshake),
written as third parties would, pass ``ChannelContract``; so do the built-in webchat."""

from __future__ import annotations

import base64
import json
import re
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from maxcore import (
    ConnectorContext,
    OutboundMessage,
    PermanentError,
    RetryableError,
    SendResult,
    WebhookRequest,
    hookimpl,
)
from maxcore.builtin.webchat import WebchatChannel
from maxcore.logs import REDACTOR
from maxcore.plugin_checks import connector_problems
from maxcore.plugins import PluginSet, load_plugins
from maxcore.routing import Routing, with_route_key
from maxcore.testing import ChannelContract, ChannelDriver
from maxcore.testing.harness import running, write_config
from maxcore.testing.server import serving

sys.path.insert(0, str(Path(__file__).parent))
from channel_examples import (
    SECRET_HEADER,
    MetaLikeChannel,
    ProviderEmulator,
    TelegramConfig,
    TelegramLikeChannel,
    signature,
)

pytestmark = pytest.mark.slow  # each contract test starts a whole maxcore


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[ProviderEmulator, str]]:
    emulator = ProviderEmulator()
    with serving(emulator.app) as server:
        yield emulator, server.url


# -- Telegram-like -----------------------------------------------------------------------------
BOTS = ("7001:AAH-tenantA-bot-token-xxxxxxxxxxxx", "7002:AAH-tenantB-bot-token-yyyyyyyyyyyy")
SECRETS = ("secret-header-of-tenant-a", "secret-header-of-tenant-b")
ROUTES = ("bot-a", "bot-b")


class TelegramDriver(ChannelDriver):
    channel = TelegramLikeChannel

    def __init__(self, emulator: ProviderEmulator, url: str) -> None:
        self.emulator, self.url = emulator, url
        emulator.faults.clear()
        for bot in BOTS:
            emulator.sent[bot] = []

    def settings(self, tenant: int) -> dict[str, Any]:
        return {"route": ROUTES[tenant], "bot_token": BOTS[tenant], "secret_token": SECRETS[tenant],
                "api_url": self.url}

    def _update(self, tenant: int, message_id: str, text: str, sender: int = 424242) -> bytes:
        number = zlib.crc32(message_id.encode())  # Telegram numbers its messages
        return json.dumps({"update_id": 9000 + number, "message": {
            "message_id": number, "date": 1733000000, "text": text,
            "from": {"id": sender, "is_bot": sender != 424242, "first_name": "Zoé"},
            "chat": {"id": 424242, "type": "private"}}}).encode()

    def inbound(self, tenant: int, message_id: str, text: str) -> WebhookRequest:
        return WebhookRequest(headers={SECRET_HEADER.lower(): SECRETS[tenant],
                                       "content-type": "application/json"},
                              body=self._update(tenant, message_id, text), route=ROUTES[tenant])

    def bad_auth(self, tenant: int, message_id: str) -> list[WebhookRequest]:
        valid = self.inbound(tenant, message_id, "x")
        return [attrs.evolve(valid, headers={"content-type": "application/json"}),
                attrs.evolve(valid, headers={SECRET_HEADER.lower(): SECRETS[tenant] + "x"}),
                attrs.evolve(valid, headers={SECRET_HEADER.lower(): SECRETS[1 - tenant]})]

    def echo(self, tenant: int, message_id: str) -> WebhookRequest:
        bot_id = int(BOTS[tenant].split(":")[0])
        return attrs.evolve(self.inbound(tenant, message_id, "x"),
                            body=self._update(tenant, message_id, "x", sender=bot_id))

    def chat_id(self, tenant: int) -> str:
        return "424242"

    def sent(self, tenant: int) -> list[str]:
        return self.emulator.sent[BOTS[tenant]]

    def fail_sends(self, tenant: int, outcome: str) -> bool:
        self.emulator.faults[BOTS[tenant]] = outcome
        return True


class TestTelegramLikeChannel(ChannelContract):
    @pytest.fixture
    def channel_driver(self, provider: tuple[ProviderEmulator, str]) -> ChannelDriver:
        return TelegramDriver(*provider)


# -- Meta-like -----------------------------------------------------------------------------------
PHONES = ("106540352242922", "106540352242923")
APP_SECRETS = ("app-secret-of-tenant-a", "app-secret-of-tenant-b")
VERIFY_TOKENS = ("verify-token-of-tenant-a", "verify-token-of-tenant-b")
ACCESS_TOKENS = ("EAAG-access-token-a", "EAAG-access-token-b")


def meta_envelope(phone: str, messages: list[dict[str, Any]] | None = None,
                  statuses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone}}
    if messages is not None:
        value["contacts"] = [{"profile": {"name": "Zoé"}, "wa_id": "33612345678"}]
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "WABA-1", "changes": [{"field": "messages", "value": value}]}]}


class MetaDriver(ChannelDriver):
    channel = MetaLikeChannel

    def __init__(self, emulator: ProviderEmulator, url: str) -> None:
        self.emulator, self.url = emulator, url
        emulator.faults.clear()
        for phone, token in zip(PHONES, ACCESS_TOKENS, strict=True):
            emulator.sent[phone] = []
            emulator.tokens[phone] = token

    def settings(self, tenant: int) -> dict[str, Any]:
        return {"phone_number_id": PHONES[tenant], "access_token": ACCESS_TOKENS[tenant],
                "app_secret": APP_SECRETS[tenant], "verify_token": VERIFY_TOKENS[tenant],
                "api_url": self.url}

    def _signed(self, tenant: int, data: dict[str, Any], secret: str | None = None) -> WebhookRequest:
        body = json.dumps(data).encode()
        return WebhookRequest(headers={"content-type": "application/json",
                                       "x-hub-signature-256": signature(secret or APP_SECRETS[tenant], body)},
                              body=body)

    def inbound(self, tenant: int, message_id: str, text: str) -> WebhookRequest:
        message = {"from": "33612345678", "id": f"wamid.{message_id}", "timestamp": "1733000000",
                   "type": "text", "text": {"body": text}}
        return self._signed(tenant, meta_envelope(PHONES[tenant], messages=[message]))

    def bad_auth(self, tenant: int, message_id: str) -> list[WebhookRequest]:
        valid = self.inbound(tenant, message_id, "x")
        return [attrs.evolve(valid, headers={"content-type": "application/json"}),
                self._signed(tenant, json.loads(valid.body), secret=APP_SECRETS[1 - tenant]),
                attrs.evolve(valid, body=valid.body.replace(b'"x"', b'"y"'))]

    def echo(self, tenant: int, message_id: str) -> WebhookRequest:
        status = {"id": f"wamid.{message_id}", "status": "delivered", "timestamp": "1733000001",
                  "recipient_id": "33612345678"}
        return self._signed(tenant, meta_envelope(PHONES[tenant], statuses=[status]))

    def chat_id(self, tenant: int) -> str:
        return "33612345678"

    def sent(self, tenant: int) -> list[str]:
        return self.emulator.sent[PHONES[tenant]]

    def fail_sends(self, tenant: int, outcome: str) -> bool:
        self.emulator.faults[PHONES[tenant]] = outcome
        return True

    def handshake(self, tenant: int) -> tuple[WebhookRequest, str]:
        challenge = f"11582014{tenant}4"
        return WebhookRequest(headers={}, body=b"", method="GET", query={
            "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKENS[tenant],
            "hub.challenge": challenge}), challenge

    def bad_handshake(self, tenant: int) -> WebhookRequest:
        request, _ = self.handshake(tenant)
        return attrs.evolve(request, query={**request.query, "hub.verify_token": "guessed"})


class TestMetaLikeChannel(ChannelContract):
    @pytest.fixture
    def channel_driver(self, provider: tuple[ProviderEmulator, str]) -> ChannelDriver:
        return MetaDriver(*provider)


# -- the built-in webchat ------------------------------------------------------------------------
def _claims_token(claims: dict[str, Any], signature: str = "A" * 43) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{payload}.{signature}"


class WebchatDriver(ChannelDriver):
    """The webchat's sessions are handed out by the server (``new_session``): the driver
    takes one per tenant once maxcore runs. Its replies go to the page (no provider, so
    no send failure and no length limit) and it never echoes: those tests skip."""

    channel = WebchatChannel

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.channels: list[Any] = []

    def settings(self, tenant: int) -> dict[str, Any]:
        return {}

    def started(self, channels: Sequence[Any]) -> None:
        self.channels = list(channels)
        self.tokens = [channel.new_session("127.0.0.1")["token"] for channel in channels]

    def inbound(self, tenant: int, message_id: str, text: str) -> WebhookRequest:
        return WebhookRequest(headers={"authorization": f"Bearer {self.tokens[tenant]}",
                                       "content-type": "application/json"},
                              body=json.dumps({"text": text, "id": message_id}).encode())

    def bad_auth(self, tenant: int, message_id: str) -> list[WebhookRequest]:
        valid = self.inbound(tenant, message_id, "x")
        payload, _, mac = self.tokens[tenant].partition(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        forged = _claims_token({**claims, "c": "web-someone-else"}, mac)  # the claims changed
        flipped = f"{payload}.{('B' if mac[0] == 'A' else 'A') + mac[1:]}"
        return [attrs.evolve(valid, headers={"content-type": "application/json"}),
                *(attrs.evolve(valid, headers={"authorization": f"Bearer {token}"})
                  for token in (forged, flipped, "not-a-token"))]

    def unroutable(self) -> WebhookRequest:
        token = _claims_token({"t": "no-such-tenant", "c": "web-1", "exp": 4102444800})
        return WebhookRequest(headers={"authorization": f"Bearer {token}"}, body=b'{"text": "x"}')

    def chat_id(self, tenant: int) -> str:
        return "web-contract"

    def sent(self, tenant: int) -> list[str]:
        return []


class TestWebchatChannel(ChannelContract):
    @pytest.fixture
    def channel_driver(self) -> ChannelDriver:
        return WebchatDriver()


# -- what the contract does not cover ----------------------------------------------------------
def _two_tenants(tmp_path: Path, driver: ChannelDriver) -> Path:
    tenants = {}
    for index, tenant in enumerate(("tenant-a", "tenant-b")):
        channel = json.dumps({"type": driver.channel.name, **driver.settings(index)})
        tenants[tenant] = (f"tenant: {tenant}\nchannel: {channel}\ncrm: {{type: sqlite}}\n"
                           "memory: {type: sqlite}\nllm: {type: offline}\n")
    return write_config(tmp_path / "config", tenants, data_dir=tmp_path / "data")


class _Channels:
    @hookimpl
    def register_channels(self) -> list[type]:
        return [TelegramLikeChannel, MetaLikeChannel]


def _plugins() -> PluginSet:
    return load_plugins(extra=[("examples", _Channels())])


async def test_meta_handshake_rules(tmp_path: Path, provider: tuple[ProviderEmulator, str]) -> None:
    driver = MetaDriver(*provider)
    async with running(_two_tenants(tmp_path, driver), _plugins()) as served:
        async def get(path: str, **query: str) -> Any:
            return await served.client.get(path, params=query)

        good = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKENS[1], "hub.challenge": "42"}
        answer = await get("/webhooks/meta_like", **good)
        assert answer.status_code == 200 and answer.text == "42"
        assert answer.headers["content-type"].startswith("text/plain")
        assert (await get("/webhooks/meta_like", **{**good, "hub.mode": "unsubscribe"})).status_code == 403
        assert (await get("/webhooks/meta_like", **{**good, "hub.verify_token": ""})).status_code == 403
        # The body names the number: a path segment is a wrong URL, not a route.
        assert (await get("/webhooks/meta_like/106540352242922", **good)).status_code == 404
        assert (await get("/webhooks/telegram_like/bot-a")).status_code == 404  # no tenant uses it
        head = await served.client.head("/webhooks/meta_like", params=good)
        assert head.status_code == 200 and head.content == b""


async def test_path_routing_rules(tmp_path: Path, provider: tuple[ProviderEmulator, str]) -> None:
    driver = TelegramDriver(*provider)
    async with running(_two_tenants(tmp_path, driver), _plugins()) as served:
        valid = driver.inbound(0, "rules-1", "Bonjour")
        bare = await served.client.post("/webhooks/telegram_like", content=valid.body,
                                        headers=dict(valid.headers))
        assert bare.status_code == 404 and "/webhooks/telegram_like/{route}" in bare.json()["error"]
        long_route = await served.client.post("/webhooks/telegram_like/" + "r" * 300,
                                              content=valid.body, headers=dict(valid.headers))
        assert long_route.status_code == 401
        # A GET on a channel without a handshake: 405, before any tenant is looked up.
        assert (await served.client.get("/webhooks/telegram_like/bot-a")).status_code == 405
        assert (await served.client.get("/webhooks/telegram_like/nobody")).status_code == 405


def test_with_route_key_aims_a_request_at_another_key() -> None:
    request = WebhookRequest(headers={"x-account": "a"}, body=b'{"entry": [{"id": "a"}]}', route="a")
    assert with_route_key(Routing.path(), request, "b").route == "b"  # type: ignore[union-attr]
    assert with_route_key(Routing.header("X-Account"), request, "b").header("x-account") == "b"  # type: ignore[union-attr]
    aimed = with_route_key(Routing.body("entry.0.id"), request, "b")
    assert aimed is not None and json.loads(aimed.body) == {"entry": [{"id": "b"}]}
    assert with_route_key(Routing.custom("token"), request, "b") is None


def test_a_channel_must_declare_its_routing() -> None:
    class Undeclared(TelegramLikeChannel):
        name = "undeclared"
        routing = None  # type: ignore[assignment]
        redact_patterns = ("not compiled",)  # type: ignore[assignment]

    problems = " ".join(connector_problems("channel", Undeclared))
    assert "declares no routing" in problems and "redact_patterns" in problems


def test_a_channels_redact_pattern_hides_its_token_in_every_log_line() -> None:
    _plugins()
    line = REDACTOR(f"POST https://api.telegram.org/bot{BOTS[0]}/sendMessage failed")
    assert BOTS[0] not in line and "/bot***/sendMessage" in line
    assert any(p.pattern == TelegramLikeChannel.redact_patterns[0].pattern for p in REDACTOR.patterns)
    assert re.compile("x") not in REDACTOR.patterns


# -- the contract catches what it claims to -------------------------------------------------------
class _Trusting(TelegramLikeChannel):
    """Skips the secret header: any request on its route is believed."""

    name = "trusting_like"

    async def parse_webhook(self, request: WebhookRequest) -> list[Any]:
        saved = self.config
        self.config = attrs.evolve(saved, secret_token=request.header(SECRET_HEADER) or "-")
        try:
            return await super().parse_webhook(request)
        finally:
            self.config = saved


class _Echoing(TelegramLikeChannel):
    """Takes the bot's own messages for the user's."""

    name = "echoing_like"

    async def parse_webhook(self, request: WebhookRequest) -> list[Any]:
        self.config = attrs.evolve(self.config, bot_token="1:" + self.config.bot_token.split(":", 1)[1])
        return await super().parse_webhook(request)


class _Unsplit(TelegramLikeChannel):
    """Sends a long reply in one piece (the provider refuses it)."""

    name = "unsplit_like"

    async def send(self, message: OutboundMessage) -> SendResult:
        assert self.http is not None
        url = f"{self.config.api_url}/bot{self.config.bot_token}/sendMessage"
        body = (await self.http.post(url, json={"chat_id": message.chat_id, "text": message.text})).json()
        if not body.get("ok"):
            raise PermanentError(body.get("description", ""))
        return SendResult(message_id=str(body["result"]["message_id"]))


RECORD_LAG_S = 0.05


class _Reconciling(TelegramLikeChannel):
    """Keeps a record of what it sent, readable ``RECORD_LAG_S`` after a send (as a
    provider's journal of sent messages that lags)."""

    name = "reconciling_like"
    can_reconcile = True

    def __init__(self, config: TelegramConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self.record: list[tuple[str, str, float, SendResult]] = []

    async def send(self, message: OutboundMessage) -> SendResult:
        result = await super().send(message)
        self.record.append((message.chat_id, message.text, time.time(), result))
        return result

    async def find_sent(self, chat_id: str, text: str, since: float) -> SendResult | None:
        elapsed = time.time() - since
        if elapsed < RECORD_LAG_S:
            raise RetryableError("the record may lag", retry_after=RECORD_LAG_S - elapsed)
        return next((result for chat, sent, at, result in self.record
                     if (chat, sent) == (chat_id, text) and at >= since), None)


class _ClaimsToReconcile(TelegramLikeChannel):
    """Declares ``can_reconcile`` and keeps ChannelBase's ``find_sent`` (never finds)."""

    name = "claims_reconcile_like"
    can_reconcile = True


class _MatchesAnyText(_Reconciling):
    """Takes the chat's last send for the one asked about."""

    name = "matches_any_text_like"

    async def find_sent(self, chat_id: str, text: str, since: float) -> SendResult | None:
        return next((result for chat, _text, _at, result in reversed(self.record) if chat == chat_id), None)


class _TrustsTheLaggingRecord(_Reconciling):
    """Answers "not sent" before its record can tell: the reply would go out twice."""

    name = "trusts_lagging_like"

    async def find_sent(self, chat_id: str, text: str, since: float) -> SendResult | None:
        if time.time() - since < RECORD_LAG_S:
            return None
        return await super().find_sent(chat_id, text, since)


class ReconcilingDriver(TelegramDriver):
    channel = _Reconciling

    def reconcile_lag_s(self) -> float:
        return RECORD_LAG_S


@pytest.mark.parametrize("test", ["test_declarations", "test_sent_messages_are_reconciled"])
def test_a_reconciling_channel_passes(test: str, tmp_path: Path,
                                      provider: tuple[ProviderEmulator, str]) -> None:
    getattr(ChannelContract, test)(ChannelContract(), ReconcilingDriver(*provider), tmp_path)


def test_reconciliation_is_skipped_without_the_drivers_lag(
        tmp_path: Path, provider: tuple[ProviderEmulator, str]) -> None:
    driver = TelegramDriver(*provider)
    driver.channel = _Reconciling  # type: ignore[misc]
    with pytest.raises(pytest.skip.Exception, match="reconcile_lag_s"):
        ChannelContract().test_sent_messages_are_reconciled(driver, tmp_path)  # type: ignore[call-arg]


@pytest.mark.parametrize(("channel", "test", "driver_class"), [
    (_Trusting, "test_bad_auth_is_401_and_nothing_is_stored", TelegramDriver),
    (_Trusting, "test_one_tenants_credentials_do_not_reach_another", TelegramDriver),
    (_Echoing, "test_own_echoes_are_ignored", TelegramDriver),
    (_Unsplit, "test_send_splits_at_the_provider_limit", TelegramDriver),
    (_ClaimsToReconcile, "test_declarations", TelegramDriver),
    (_MatchesAnyText, "test_sent_messages_are_reconciled", ReconcilingDriver),
    (_TrustsTheLaggingRecord, "test_sent_messages_are_reconciled", ReconcilingDriver),
])
def test_the_contract_fails_a_broken_channel(channel: type, test: str, driver_class: type[TelegramDriver],
                                             tmp_path: Path, provider: tuple[ProviderEmulator, str]) -> None:
    driver = driver_class(*provider)
    driver.channel = channel  # type: ignore[misc]
    # A skip is no failure: pytest.raises(Exception) does not catch it.
    with pytest.raises(Exception):  # noqa: B017 - an assertion or the provider's refusal
        getattr(ChannelContract, test)(ChannelContract(), driver, tmp_path)
