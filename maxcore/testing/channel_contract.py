"""The contract every channel connector passes, driven through the real HTTP app.

A channel proves itself with a :class:`ChannelDriver` (how its provider talks: a valid
delivery, deliveries with bad credentials, an echo of the bot's own message, a failing
send) and one test class::

    from maxcore.testing import ChannelContract, ChannelDriver

    class TelegramDriver(ChannelDriver):
        channel = TelegramChannel
        ...

    class TestTelegram(ChannelContract):
        @pytest.fixture
        def channel_driver(self):
            return TelegramDriver()

Each test starts a whole maxcore with two tenants on the channel (the driver's
``settings(0)`` and ``settings(1)``) and posts to ``/webhooks/{name}[/{route}]``. What
reached the pipeline is recorded by a ``message_received`` hook that vetoes every
message, so no model runs and nothing is answered. The contract reads the channel's
own declarations: ``routing`` (to aim one tenant's request at another tenant, or at
none), ``max_text_chars`` (to check the split of long replies), ``can_reconcile`` (to
look sent and unsent messages up with ``find_sent``). Tests that need what a
provider does not have (echoes, send failures, a handshake) are skipped when the
driver says so. Like :class:`maxcore.testing.CRMContract`, the tests run their own
event loop: no pytest plugin is needed, and importing this module does not import
pytest.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs

from ..connectors import ChannelBase, WebhookRequest
from ..errors import PermanentError, RetryableError
from ..hookspecs import hookimpl
from ..plugins import PluginSet, load_plugins
from ..routing import Routing, with_route_key
from ..sending import takes_exclude
from ..types import InboundMessage, MessageKind, OutboundMessage, SendResult, Veto
from .harness import Running, running, write_config

TENANTS = ("tenant-a", "tenant-b")
UNKNOWN_ROUTE_KEY = "no-such-route-4242"
VETO_REASON = "recorded by the channel contract"
# Beyond the driver's declared lag: how long find_sent may keep answering "not yet".
RECONCILE_MARGIN_S = 5.0


class ChannelDriver:
    """The provider's side of :class:`ChannelContract`; subclass it for your channel.

    Tenants are numbered 0 and 1. Requests are :class:`maxcore.connectors.WebhookRequest`
    values: ``route`` is the path segment (``/webhooks/{name}/{route}``), ``method`` POST
    or GET, ``headers`` as the provider sends them. The two tenants must have distinct
    credentials (a request signed for one is refused by the other).
    """

    channel: ClassVar[type[Any]]

    def settings(self, tenant: int) -> dict[str, Any]:
        """The tenant's ``channel:`` YAML block, without ``type``."""
        raise NotImplementedError

    def started(self, channels: Sequence[Any]) -> None:
        """Called with the two tenants' open channel instances once maxcore runs (a
        channel whose server hands out the credentials, as webchat sessions, gets them)."""

    def inbound(self, tenant: int, message_id: str, text: str) -> WebhookRequest:
        """A valid delivery of a text message with the provider id ``message_id`` (the
        same arguments twice give the same delivery: a redelivery)."""
        raise NotImplementedError

    def bad_auth(self, tenant: int, message_id: str) -> list[WebhookRequest]:
        """Deliveries with a missing or wrong credential (each must be a 401)."""
        raise NotImplementedError

    def echo(self, tenant: int, message_id: str) -> WebhookRequest | None:
        """A delivery of the bot's own message, or None when the provider sends none."""
        return None

    def unroutable(self) -> WebhookRequest | None:
        """For ``Routing.custom`` channels: a request claiming no configured tenant."""
        return None

    def chat_id(self, tenant: int) -> str:
        """A chat the tenant can send to."""
        raise NotImplementedError

    def sent(self, tenant: int) -> list[str]:
        """The texts the provider received from the tenant so far."""
        raise NotImplementedError

    def fail_sends(self, tenant: int, outcome: str) -> bool:
        """Make the provider fail the tenant's sends from now on: ``"retryable"`` (a rate
        limit, a 5xx) or ``"permanent"`` (a bad credential). False when it cannot."""
        return False

    def handshake(self, tenant: int) -> tuple[WebhookRequest, str] | None:
        """A valid GET verification and the body expected back; None: no handshake."""
        return None

    def bad_handshake(self, tenant: int) -> WebhookRequest | None:
        """A GET verification with a wrong verify token (answered 401 or 403)."""
        return None

    def reconcile_lag_s(self) -> float | None:
        """For a channel with ``can_reconcile = True``: how long after a send ``find_sent``
        may still answer "cannot tell yet" (a RetryableError; the provider's record of sent
        messages lags). None: the driver cannot exercise ``find_sent`` (the test skips)."""
        return None


@attrs.define
class ChannelRun:
    """One running maxcore with the two tenants, as a contract test sees it."""

    driver: ChannelDriver
    running: Running
    received: list[InboundMessage]

    @property
    def name(self) -> str:
        return str(self.driver.channel.name)

    @property
    def routing(self) -> Routing:
        return self.driver.channel.routing  # type: ignore[no-any-return]

    def channel(self, tenant: int) -> Any:
        return self.running.runtime.tenants.by_id[TENANTS[tenant]].channel

    async def call(self, request: WebhookRequest) -> Any:
        path = f"/webhooks/{self.name}" + (f"/{request.route}" if request.route is not None else "")
        return await self.running.client.request(
            request.method, path, headers=dict(request.headers), content=request.body or None,
            params=dict(request.query))

    async def settled(self) -> list[InboundMessage]:
        await self.running.settle()
        return list(self.received)


class _Recorder:
    """Records and vetoes every message that reaches the pipeline."""

    def __init__(self, channel: type | None) -> None:
        self.channel = channel
        self.received: list[InboundMessage] = []

    @hookimpl
    def register_channels(self) -> list[type]:
        return [self.channel] if self.channel is not None else []

    @hookimpl
    def message_received(self, message: InboundMessage) -> Veto:
        self.received.append(message)
        return Veto(VETO_REASON)


@functools.cache
def _installed(channel: Any) -> bool:
    """Whether an installed plugin already registers ``channel`` (else the contract does)."""
    return load_plugins().connector_class("channel", channel.name) is channel


def _plugins(channel: type) -> tuple[PluginSet, _Recorder]:
    recorder = _Recorder(None if _installed(channel) else channel)
    return load_plugins(extra=[("channel_contract", recorder)]), recorder


def _tenant_yaml(driver: ChannelDriver, index: int) -> str:
    channel = {"type": driver.channel.name, **driver.settings(index)}
    # JSON is YAML: the settings' strings need no quoting rules of their own.
    return (f"tenant: {TENANTS[index]}\nchannel: {json.dumps(channel)}\n"
            "crm: {type: sqlite}\nmemory: {type: sqlite}\nllm: {type: offline}\n")


Body = Callable[[Any, ChannelRun], Awaitable[None]]


def _channel_case(body: Body) -> Callable[[Any, ChannelDriver, Path], None]:
    """A sync test running ``body(self, run)`` on a maxcore serving both tenants."""

    def test(self: Any, channel_driver: ChannelDriver, tmp_path: Path) -> None:
        async def go() -> None:
            tenants = {TENANTS[i]: _tenant_yaml(channel_driver, i) for i in (0, 1)}
            config = write_config(tmp_path / "contract-config", tenants, data_dir=tmp_path / "data")
            plugins, recorder = _plugins(channel_driver.channel)
            async with running(config, plugins) as served:
                run = ChannelRun(channel_driver, served, recorder.received)
                for tenant in TENANTS:  # tenants open on first use: the driver gets open channels
                    await served.runtime.tenant(tenant).ready("channel")
                channel_driver.started([run.channel(0), run.channel(1)])
                await body(self, run)

        asyncio.run(go())

    test.__name__, test.__doc__ = body.__name__, body.__doc__
    return test


def _skip(reason: str) -> None:
    import pytest  # only when a test runs: importing this module needs no pytest

    pytest.skip(reason)


def _words(count: int) -> str:
    return " ".join(f"mot{i}" for i in range(count))


def _implements_find_sent(cls: type) -> bool:
    method = getattr(cls, "find_sent", None)
    return (method is not None and method is not ChannelBase.find_sent
            and inspect.iscoroutinefunction(method))


async def _look_up(channel: Any, chat_id: str, text: str, since: float,
                   deadline: float, exclude: frozenset[str] | None = None) -> SendResult | None:
    """``find_sent``'s answer once it can tell: a RetryableError ("the record lags") is
    asked again after its ``retry_after``, until ``deadline``."""
    extra = {} if exclude is None else {"exclude": exclude}
    while True:
        try:
            found: SendResult | None = await channel.find_sent(chat_id, text, since, **extra)
            return found
        except RetryableError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"find_sent still cannot tell after the declared lag: {exc}") from exc
            await asyncio.sleep(min(max(exc.retry_after or 0.05, 0.01), left))


class ChannelContract:
    """What every channel guarantees. Subclass and provide a ``channel_driver`` fixture."""

    @_channel_case
    async def test_declarations(self, run: ChannelRun) -> None:
        cls = run.driver.channel
        assert isinstance(cls.routing, Routing), "routing = maxcore.routing.Routing.…"
        limit = getattr(cls, "max_text_chars", None)
        assert limit is None or (isinstance(limit, int) and limit > 0)
        keys = {run.channel(i).route_key for i in (0, 1)}
        assert len(keys) == 2, "each tenant's channel has its own route key"
        reconciles = getattr(cls, "can_reconcile", False)
        assert isinstance(reconciles, bool), "can_reconcile = True or False"
        assert not reconciles or _implements_find_sent(cls), (
            "can_reconcile = True: implement async def find_sent(chat_id, text, since, *, exclude)")

    @_channel_case
    async def test_sent_messages_are_reconciled(self, run: ChannelRun) -> None:
        """``find_sent`` finds what was sent (the id ``send`` gave), never what was not,
        and never another tenant's message; "cannot tell yet" only within the lag."""
        if not getattr(run.driver.channel, "can_reconcile", False):
            _skip("the channel does not reconcile sends (can_reconcile = False)")
            return
        lag = run.driver.reconcile_lag_s()
        if lag is None:
            _skip("the driver gives no reconcile_lag_s: it cannot exercise find_sent")
            return
        chat = run.driver.chat_id(0)
        since = time.time()
        text = f"Réponse à réconcilier {since:.6f}"
        result = await run.channel(0).send(OutboundMessage(chat_id=chat, text=text))
        deadline = time.monotonic() + lag + RECONCILE_MARGIN_S
        found = await _look_up(run.channel(0), chat, text, since, deadline)
        assert isinstance(found, SendResult), "a message sent is found (else it is sent twice)"
        if result.message_id is not None:
            assert found.message_id == result.message_id, (found, result)
        never = await _look_up(run.channel(0), chat, f"Jamais envoyé {since:.6f}", since, deadline)
        assert never is None, f"a message never sent is found: {never}"
        other = await _look_up(run.channel(1), run.driver.chat_id(1), text, since, deadline)
        assert other is None, f"tenant B finds tenant A's message: {other}"
        if result.message_id is not None and takes_exclude(run.channel(0)):
            # The same text again, interrupted before it went out: the earlier send (which
            # another step of the journal owns) is not this one.
            taken = await _look_up(run.channel(0), chat, text, since, deadline,
                                   frozenset({result.message_id}))
            assert taken is None, f"find_sent answers a send listed in exclude: {taken}"

    @_channel_case
    async def test_a_delivery_lands_on_its_tenant_once(self, run: ChannelRun) -> None:
        """Routing and dedupe: a redelivery is a duplicate, another message is not."""
        for tenant in (0, 1):
            for message_id, counts in (("contract-m1", (1, 0)), ("contract-m1", (0, 1)),
                                       ("contract-m2", (1, 0))):
                text = f"Bonjour {tenant} {message_id}"
                answer = await run.call(run.driver.inbound(tenant, message_id, text))
                assert answer.status_code == 200, answer.text
                got = answer.json()
                assert (got["accepted"], got["duplicates"]) == counts, (message_id, answer.text)
        received = await run.settled()
        assert sorted((m.tenant, m.text) for m in received) == [
            (TENANTS[t], f"Bonjour {t} {m}") for t in (0, 1) for m in ("contract-m1", "contract-m2")]
        for message in received:
            assert message.channel == run.name
            assert isinstance(message.kind, MessageKind) and message.kind is MessageKind.TEXT
        ids = {(m.tenant, m.message_id) for m in received}
        assert len(ids) == 4, "each message has its own stable id"

    @_channel_case
    async def test_bad_auth_is_401_and_nothing_is_stored(self, run: ChannelRun) -> None:
        requests = run.driver.bad_auth(0, "contract-bad")
        assert requests, "the driver gives at least one request with a bad credential"
        for request in requests:
            answer = await run.call(request)
            assert answer.status_code == 401, (request, answer.text)
        assert await run.settled() == []

    @_channel_case
    async def test_an_unknown_route_is_401(self, run: ChannelRun) -> None:
        """Like a wrong credential: which tenants exist cannot be probed."""
        request = with_route_key(run.routing, run.driver.inbound(0, "contract-u", "x"), UNKNOWN_ROUTE_KEY)
        if request is None:
            request = run.driver.unroutable()
        if request is None:
            _skip("custom routing and the driver gives no unroutable request")
            return
        answer = await run.call(request)
        assert answer.status_code == 401, answer.text
        assert await run.settled() == []

    @_channel_case
    async def test_one_tenants_credentials_do_not_reach_another(self, run: ChannelRun) -> None:
        """Tenant A's valid delivery aimed at tenant B's route is refused by B."""
        aimed = with_route_key(run.routing, run.driver.inbound(0, "contract-x", "x"),
                               run.channel(1).route_key)
        if aimed is None:
            _skip("custom routing: the contract cannot aim a request at another tenant")
            return
        answer = await run.call(aimed)
        assert answer.status_code == 401, answer.text
        assert await run.settled() == []

    @_channel_case
    async def test_own_echoes_are_ignored(self, run: ChannelRun) -> None:
        echo = run.driver.echo(0, "contract-echo")
        if echo is None:
            _skip("the provider sends no echo of the bot's own messages")
            return
        answer = await run.call(echo)
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 0
        assert await run.settled() == []

    @_channel_case
    async def test_send_splits_at_the_provider_limit(self, run: ChannelRun) -> None:
        limit = run.driver.channel.max_text_chars
        if limit is None:
            _skip("the channel declares no max_text_chars")
            return
        text = _words(limit)[: int(limit * 2.5)].rstrip()  # words of 4+ characters
        await run.channel(0).send(OutboundMessage(chat_id=run.driver.chat_id(0), text=text))
        parts = list(run.driver.sent(0))
        assert len(parts) >= 3 and all(len(part) <= limit for part in parts), [len(p) for p in parts]
        assert " ".join(parts).split() == text.split(), "the parts hold the whole text, in order"
        assert run.driver.sent(1) == []
        short = "Un message court."
        await run.channel(0).send(OutboundMessage(chat_id=run.driver.chat_id(0), text=short))
        assert run.driver.sent(0)[len(parts):] == [short]

    @_channel_case
    async def test_send_errors_are_retryable_or_permanent(self, run: ChannelRun) -> None:
        checked = 0
        for outcome, error in (("retryable", RetryableError), ("permanent", PermanentError)):
            if not run.driver.fail_sends(0, outcome):
                continue
            checked += 1
            try:
                await run.channel(0).send(OutboundMessage(chat_id=run.driver.chat_id(0), text="x"))
            except error as exc:
                other = PermanentError if error is RetryableError else RetryableError
                assert not isinstance(exc, other), f"{outcome}: {type(exc).__name__}"
            else:
                raise AssertionError(f"a {outcome} provider failure must raise {error.__name__}")
        if not checked:
            _skip("the driver cannot make the provider fail")

    @_channel_case
    async def test_handshake(self, run: ChannelRun) -> None:
        """A GET verification is answered by the channel, or refused 405 without one."""
        given = run.driver.handshake(0)
        if given is None:
            probe = attrs.evolve(run.driver.inbound(0, "contract-h", "x"), method="GET", body=b"")
            answer = await run.call(probe)
            assert answer.status_code == 405, answer.text
            return
        request, expected = given
        answer = await run.call(request)
        assert answer.status_code == 200 and answer.text == expected, answer.text
        bad = run.driver.bad_handshake(0)
        if bad is not None:
            refused = await run.call(bad)
            assert refused.status_code in (401, 403), refused.text
        # The other tenant's verification reaches the other tenant (its own verify token).
        other = run.driver.handshake(1)
        if other is not None:
            answer_b = await run.call(other[0])
            assert answer_b.status_code == 200 and answer_b.text == other[1], answer_b.text
        assert await run.settled() == []
