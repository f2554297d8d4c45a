"""The four connector kinds, as protocols, and small base classes.

A connector class is what a plugin registers. maxcore builds one instance per tenant
from that tenant's YAML block: ``cls(config, context)`` where ``config`` is an instance
of ``cls.Config`` (a frozen attrs class) and ``context`` a :class:`ConnectorContext`.
The instance is bound to that tenant for its whole life: nothing it exposes takes a
tenant argument, so a tool or a model can never reach another tenant through it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import attrs

from .errors import WebhookError
from .http_pool import HTTP_CLIENTS, HttpClients
from .types import (
    AuditEntry,
    ChatTurn,
    Health,
    InboundMessage,
    Lead,
    LLMReply,
    LLMRequest,
    OutboundMessage,
    Record,
    SendResult,
    UpsertResult,
)
from .vocabulary import LeadSchema

if TYPE_CHECKING:
    from .routing import Routing

KINDS = ("channel", "crm", "memory", "llm")


@attrs.frozen
class ConnectorContext:
    """What a connector learns about where it runs.

    ``data_dir`` is where embedded connectors keep files; ``secrets`` receives values
    that must be redacted from logs (a connector adds tokens it derives at runtime);
    ``session_secret`` is ``server.session_secret``, the key that signs sessions a
    channel hands out (None: the channel keeps its own key in ``data_dir``).
    ``http`` is the process's registry of shared HTTP clients (one TLS context, one
    pool per upstream origin: :mod:`maxcore.http_pool`).
    """

    tenant: str
    data_dir: Path
    add_secret: Callable[[str], None] = attrs.field(default=lambda _value: None)
    public_url: str | None = None
    session_secret: str | None = attrs.field(default=None, repr=False)
    http: HttpClients = attrs.field(factory=lambda: HTTP_CLIENTS, repr=False, eq=False)


@attrs.frozen
class WebhookRequest:
    """An inbound webhook as the channel sees it: headers (lower-case keys) and body.

    ``route`` is the ``{route}`` segment of ``/webhooks/{channel}/{route}`` (None on
    ``/webhooks/{channel}``); ``method`` is ``POST`` for deliveries, ``GET`` for a
    provider's verification handshake.
    """

    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = attrs.field(factory=dict)
    route: str | None = None
    method: str = "POST"
    # The decoded body (or the error decoding it gave), filled by the first
    # ``maxcore.webhooks.json_body`` call: the body is parsed once per request.
    decoded: list[Any] = attrs.field(factory=list, init=False, eq=False, repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@attrs.frozen
class WebhookReply:
    """What a channel answers to a ``GET`` handshake (Meta's verification: 200 with the
    challenge as plain text). A refusal is a ``WebhookError`` (401 or 403)."""

    body: str = ""
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = attrs.field(factory=dict)


def _frozen_fields(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen
class LeadQuery:
    """A search among the tenant's leads. Every criterion is optional and ANDed.

    ``fields`` holds exact values of fields the CRM declares (``{"status": "New"}``).
    """

    text: str | None = None
    phone: str | None = None
    email: str | None = None
    fields: dict[str, Any] = attrs.field(factory=dict, converter=_frozen_fields)
    limit: int = 20


# A function the channel calls to hand an inbound message to the inbox. It returns
# True when the message was accepted (new), False when it was a duplicate; it returns
# only once the message is durably recorded.
Submit = Callable[[InboundMessage], Awaitable[bool]]


@runtime_checkable
class Connector(Protocol):
    name: ClassVar[str]
    Config: ClassVar[type]

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def health(self) -> Health: ...


@runtime_checkable
class Channel(Connector, Protocol):
    """Receives messages from users and sends replies to them.

    **Routing.** Webhooks arrive at ``/webhooks/{name}`` or ``/webhooks/{name}/{route}``.
    Before anything is authenticated the core asks the class which tenant a request
    claims (:meth:`webhook_route_key`) and looks for the tenant whose channel instance
    has that :attr:`route_key`; an unknown key is answered 401, exactly like a wrong
    credential, so which instances exist cannot be probed. ``routing`` declares where
    the key is read (:class:`maxcore.routing.Routing`): a value in the JSON body
    (Green-API ``instanceData.idInstance``, Meta ``phone_number_id``), a header, or the
    path segment (a provider whose payload does not name the account, as Telegram's).
    :class:`ChannelBase` implements :meth:`webhook_route_key` from that declaration.

    **Handshakes.** A ``GET`` on the same URLs reaches :meth:`handshake` of the routed
    tenant's channel (a channel routed by a body value, which a GET has not, is asked
    tenant by tenant until one accepts: the verify token decides).

    **Declarations read by the core and by** :class:`maxcore.testing.ChannelContract`:
    ``max_text_chars`` (the provider's limit per message; :meth:`send` splits longer
    texts) and, on every connector class, ``redact_patterns``.

    **Reconciliation.** Optional, for providers that keep a record of sent messages:
    ``can_reconcile = True`` and ``async def find_sent(chat_id, text, since, *,
    exclude=frozenset()) -> SendResult | None``. The core calls it when a send was
    interrupted (started, no result recorded): a result means "it went out, do not send
    again", None "it did not", and a RetryableError (with ``retry_after``) "cannot tell
    yet" (the provider's record lags). ``exclude`` holds the provider ids of sends the
    journal already gave to other steps (the same text sent to the same chat a moment
    before, by an earlier message): never one of those. Channels without it
    (:class:`ChannelBase` says ``can_reconcile = False``) get at-least-once sends.
    """

    routing: ClassVar[Routing]
    max_text_chars: ClassVar[int | None]

    @classmethod
    def webhook_route_key(cls, request: WebhookRequest) -> str:
        """Read, from an unauthenticated request, which tenant instance it claims.

        Raise ``WebhookError(400, ...)`` naming the missing field when it cannot tell
        (404 when the URL has, or lacks, a route segment this channel does not expect).
        The body is decoded once (:func:`maxcore.webhooks.json_body` caches it on the
        request), so reading a body value here costs :meth:`parse_webhook` nothing.
        """
        ...

    @property
    def route_key(self) -> str:
        """The key :meth:`webhook_route_key` returns for this tenant's requests
        (from the tenant's configuration: an instance id, a route name)."""
        ...

    async def handshake(self, request: WebhookRequest) -> WebhookReply:
        """Answer a ``GET`` verification (Meta: ``hub.challenge`` when
        ``hub.verify_token`` matches, else ``WebhookError(403)``).

        Channels without one raise ``WebhookError(405)`` (:class:`ChannelBase` does).
        """
        ...

    async def parse_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        """Authenticate (401 via ``WebhookError``) and parse into messages to process.

        Each message has the provider's stable id as ``message_id`` (a redelivery is a
        duplicate) and a :class:`maxcore.types.MessageKind`. Events that must not reach
        the model (echoes of the bot's own messages, statuses) give an empty list.
        """
        ...

    async def send(self, message: OutboundMessage) -> SendResult:
        """Deliver a reply, split at ``max_text_chars``.

        Raise ``RetryableError`` for what may pass later (rate limits, 5xx, timeouts)
        and ``PermanentError`` for what never will (bad credentials, unknown chat). An
        error raised for a message the provider certainly did not take (a 429, an
        instance still booting) may carry ``not_sent = True``, so an interrupted-send
        check is not needed before the retry.
        """
        ...

    async def run_receiver(self, submit: Submit) -> None:
        """Pull messages from the provider (polling mode) until cancelled.

        Channels that only receive webhooks return at once.
        """
        ...


@runtime_checkable
class CRM(Connector, Protocol):
    """Stores leads and other records, all marked with the bound tenant.

    The CRM owns its vocabulary: :meth:`lead_schema` declares its lead fields and their
    allowed values (read at ``open()`` and cached), and the core builds the model's
    ``upsert_lead`` schema from it. ``unique_emails`` says the backend refuses two
    records with one e-mail in the same account (HubSpot): then two tenants sharing an
    account cannot both hold the same person, and the contract tests use distinct ones.
    """

    entities: tuple[str, ...]
    unique_emails: ClassVar[bool]

    def declared_lead_schema(self) -> LeadSchema | None:
        """The declaration when it is known without asking the backend (a shipped
        vocabulary), so ``maxcore check`` can validate against it; else None."""
        ...

    async def lead_schema(self) -> LeadSchema:
        """The lead fields this CRM declares (cached after ``open()``)."""
        ...

    async def upsert_lead(self, lead: Lead, defaults: Mapping[str, Any] | None = None) -> UpsertResult:
        """Find the tenant's lead by phone, then e-mail; update it, or create it.

        ``defaults`` fill empty fields of a lead being *created* only
        (:func:`maxcore.leads.with_defaults`).
        """
        ...

    async def update_lead(self, lead_id: str, lead: Lead) -> Lead | None:
        """Write the non-empty values of ``lead`` to the tenant's lead ``lead_id``.

        None when there is no such lead for this tenant (another tenant's id included).
        """
        ...

    async def search_leads(self, query: LeadQuery) -> list[Lead]: ...
    async def get_lead(self, lead_id: str) -> Lead | None: ...
    async def list_leads(self, limit: int = 50, offset: int = 0) -> list[Lead]: ...
    async def create_record(self, entity: str, fields: Mapping[str, Any]) -> Record: ...


@runtime_checkable
class Memory(Connector, Protocol):
    """Conversation memory of the bound tenant: history, facts, sessions, and the audit
    table the core's outbox ships to.

    The per-message journal (what a replay must not repeat) is the core's, not the
    memory store's. A store may also offer ``async def purge_history(before: float) ->
    int`` (conversation turns older than the epoch ``before``); the core's retention
    calls it when present.
    """

    async def history(self, chat_id: str, limit: int) -> list[ChatTurn]: ...
    async def append_history(self, chat_id: str, turns: Sequence[ChatTurn]) -> None: ...
    async def facts(self, chat_id: str) -> dict[str, Any]: ...
    async def remember(self, chat_id: str, key: str, value: Any) -> None: ...
    async def audit_batch(self, entries: Sequence[AuditEntry]) -> None:
        """Insert audit rows, idempotently on ``entry.id``: a batch sent twice (the
        outbox retries after a lost answer) leaves each row once."""
        ...

    async def audit_log(
        self, *, since: float | None = None, action: str | None = None, limit: int = 1000
    ) -> list[AuditEntry]: ...
    async def forget(self, chat_id: str) -> int:
        """Erase one contact's memory and history; return the rows removed."""
        ...

    async def export(self) -> list[dict[str, Any]]:
        """Every row the tenant owns, as JSON-able dicts with a ``table`` key."""
        ...


@runtime_checkable
class LLM(Connector, Protocol):
    """A chat model with tool calling."""

    async def complete(self, request: LLMRequest) -> LLMReply: ...


@attrs.frozen
class _NoSettings:
    """The Config of a connector that takes no settings."""


class ConnectorBase:
    """Defaults for the lifecycle methods; subclass and override what you need.

    ``redact_patterns`` (any connector kind): regular expressions for secrets shaped by
    this connector's upstream (a token in a URL path), collected when the plugin loads
    and applied to every log line and error text. The match's group named ``secret``
    becomes ``***`` (the whole match when there is no such group). Keep them linear:
    no nested quantifiers; they run on every line.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[Any]] = _NoSettings
    redact_patterns: ClassVar[tuple[re.Pattern[str], ...]] = ()

    def __init__(self, config: Any, context: ConnectorContext) -> None:
        self.config = config
        self.context = context

    @property
    def tenant(self) -> str:
        return self.context.tenant

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def health(self) -> Health:
        return Health.ok()


class CRMBase(ConnectorBase):
    """Defaults for CRM connectors: a cached declaration read by :meth:`read_lead_schema`.

    Override :meth:`read_lead_schema` (async: it may ask the backend) and call
    ``await super().open()`` from ``open()``; :meth:`lead_schema` then answers from the
    cache. A shipped, static vocabulary also overrides :meth:`declared_lead_schema`.
    """

    entities: tuple[str, ...] = ()
    unique_emails: ClassVar[bool] = False
    _lead_schema: LeadSchema | None = None

    def declared_lead_schema(self) -> LeadSchema | None:
        return None

    async def read_lead_schema(self) -> LeadSchema:
        return self.declared_lead_schema() or LeadSchema()

    async def open(self) -> None:
        self._lead_schema = await self.read_lead_schema()

    async def lead_schema(self) -> LeadSchema:
        if self._lead_schema is None:
            self._lead_schema = await self.read_lead_schema()
        return self._lead_schema


class ChannelBase(ConnectorBase):
    """Base for channels: webhook-only by default (no receiver loop, no handshake), and
    no record of sent messages to reconcile an interrupted send with.

    Declare ``routing`` (:class:`maxcore.routing.Routing`) and implement ``route_key``;
    :meth:`webhook_route_key` reads the declared place.
    """

    max_text_chars: ClassVar[int | None] = None
    can_reconcile: ClassVar[bool] = False

    @classmethod
    def webhook_route_key(cls, request: WebhookRequest) -> str:
        from .routing import Routing  # routing reads bodies through .webhooks, which imports this

        routing = getattr(cls, "routing", None)
        if not isinstance(routing, Routing):
            raise TypeError(f"channel {cls.name!r} declares no routing (a maxcore.routing.Routing)")
        return routing.key(request, cls.name)

    async def handshake(self, request: WebhookRequest) -> WebhookReply:
        raise WebhookError(405, f"the {self.name} channel answers no GET requests",
                           {"Allow": "POST"})

    async def run_receiver(self, submit: Submit) -> None:
        return None

    async def find_sent(self, chat_id: str, text: str, since: float, *,
                        exclude: frozenset[str] = frozenset()) -> SendResult | None:
        return None
