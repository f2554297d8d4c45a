"""Value types that cross the boundary between the core and the plugins.

All are frozen attrs classes: a plugin can keep a reference without fearing that the
pipeline changes it under its feet, and ``attrs.evolve`` makes modified copies.
"""

from __future__ import annotations

import enum
import hashlib
import time
import uuid
from collections.abc import Mapping
from typing import Any

import attrs


def _now() -> float:
    return time.time()


def _new_id() -> str:
    return uuid.uuid4().hex


def _freeze_map(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen
class Media:
    """A file attached to an inbound message (image, video, document, audio)."""

    url: str
    mime_type: str | None = None
    file_name: str | None = None


class MessageKind(enum.StrEnum):
    """What an inbound message is, in the core's words; each channel maps its
    provider's types onto these (and may keep the provider's own type in metadata).

    The model sees the kind of a message without text (``[sticker]``) and of a file
    (``[image: plan.pdf]``); the pipeline and hooks read it instead of a provider's names.
    """

    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    VOICE = "voice"  # a voice note recorded in the app (audio that wants transcribing)
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACT = "contact"  # one or more shared contact cards
    REACTION = "reaction"  # an emoji on an earlier message (``metadata["reaction_to"]``)
    CHOICE = "choice"  # a button or list item the user picked (interactive replies, polls)
    EDITED = "edited"  # a new text for an earlier message
    DELETED = "deleted"  # the sender deleted an earlier message
    CALL = "call"  # a voice or video call was offered
    SYSTEM = "system"  # the provider's notice about the chat (number changed, joined...)
    UNKNOWN = "unknown"  # a type the channel does not know: recorded, the model sees the kind
    UNPROCESSABLE = "unprocessable"  # a dead letter: a body the channel could not parse

    @classmethod
    def of(cls, value: str) -> MessageKind:
        """``value`` as a kind; a ValueError naming the valid kinds for anything else."""
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(kind.value for kind in cls)
            raise ValueError(
                f"{value!r} is not a message kind (one of {valid}); map the provider's type "
                "onto one and keep the provider's own name in metadata") from None


def message_kind(value: str) -> MessageKind:
    """The converter of ``InboundMessage.kind`` (:meth:`MessageKind.of`)."""
    return MessageKind.of(value)


# Kinds whose message carries a file (``InboundMessage.media``).
MEDIA_KINDS = frozenset({MessageKind.IMAGE, MessageKind.VIDEO, MessageKind.AUDIO,
                         MessageKind.VOICE, MessageKind.DOCUMENT, MessageKind.STICKER})


# ``InboundMessage.metadata`` key a channel sets when it knows the reply itself (for
# instance "your message did not reach us, please send it again"): the pipeline sends
# that text through its usual journalled reply path and does not call the model.
FIXED_REPLY = "fixed_reply"


@attrs.frozen
class InboundMessage:
    """One message a user sent on a channel, already parsed by that channel.

    ``tenant`` is set by the channel from the authenticated entry point, never from
    the message content. ``message_id`` is the provider's id, unique within
    ``chat_id``: together with the channel and the tenant it is the dedupe key.
    ``kind`` is one of the core's :class:`MessageKind` values (a provider's own type
    name is refused: the channel maps it).
    """

    tenant: str
    channel: str
    chat_id: str
    message_id: str = attrs.field(factory=_new_id)
    text: str = ""
    sender_name: str | None = None
    sender_phone: str | None = None
    kind: MessageKind = attrs.field(default=MessageKind.TEXT, converter=message_kind)
    media: Media | None = None
    quoted_text: str | None = None
    received_at: float = attrs.field(factory=_now)
    metadata: dict[str, Any] = attrs.field(factory=dict, converter=_freeze_map)

    @property
    def conversation_key(self) -> str:
        """Messages with the same key are processed one at a time, in order."""
        return f"{self.tenant}:{self.channel}:{self.chat_id}"

    @property
    def dedupe_key(self) -> str:
        """The same provider message delivered twice has the same key."""
        return f"{self.channel}:{self.tenant}:{self.chat_id}:{self.message_id}"


@attrs.frozen
class OutboundMessage:
    """A reply the pipeline sends on the tenant's channel."""

    chat_id: str
    text: str
    reply_to: str | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict, converter=_freeze_map)


@attrs.frozen
class SendResult:
    """What the channel answered for a sent message (its provider id, if any).

    ``status`` is ``sent`` when the provider took the message for delivery, ``queued``
    when it accepted it but holds it (e.g. a Green-API instance waiting for its QR code).
    """

    message_id: str | None = None
    status: str = "sent"


@attrs.frozen
class Lead:
    """A lead as the core sees it, whatever the CRM.

    Identity is the core's: names, ``phone`` in E.164 (``+33612345678``) once
    normalised, a lower-case ``email``, ``company``. Everything else is in ``fields``,
    keyed by the CRM's own names and holding its exact values (see
    :class:`maxcore.vocabulary.LeadSchema`). ``id`` is the CRM's id.
    """

    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    email: str | None = None
    company: str | None = None
    fields: dict[str, Any] = attrs.field(factory=dict, converter=_freeze_map)
    id: str | None = None

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or ""

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able form without empty values, fields flattened (what the model sees)."""
        identity = {k: getattr(self, k) for k in ("id", "first_name", "last_name", "phone", "email",
                                                   "company")}
        data = {**identity, **self.fields}
        return {k: v for k, v in data.items() if v not in (None, "")}


@attrs.frozen
class UpsertResult:
    """Outcome of ``upsert_lead``: the stored lead and whether it was new."""

    lead: Lead
    created: bool


@attrs.frozen
class Record:
    """A record of another entity of the CRM (a task, a note, a custom entity...)."""

    entity: str
    id: str
    fields: dict[str, Any] = attrs.field(factory=dict, converter=_freeze_map)


@attrs.frozen
class ToolCall:
    """A tool call the model asked for. ``arguments`` is the raw JSON text."""

    id: str
    name: str
    arguments: str


class Role(enum.StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


@attrs.frozen
class ChatTurn:
    """One entry of the conversation sent to the model.

    An assistant turn may carry ``tool_calls``; a tool turn answers one call through
    ``tool_call_id``.
    """

    role: Role = attrs.field(converter=Role)
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@attrs.frozen
class Usage:
    """Tokens a model call consumed (zero for models that do not report it)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@attrs.frozen
class ToolSpec:
    """What the model is told about a tool: name, description, JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any]


@attrs.frozen
class LLMRequest:
    """Everything an LLM connector needs for one completion."""

    system: str
    messages: tuple[ChatTurn, ...]
    tools: tuple[ToolSpec, ...] = ()
    language: str = "fr"


@attrs.frozen
class LLMReply:
    """The model's answer: text, tool calls, or both."""

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    model: str | None = None


class HealthStatus(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


@attrs.frozen
class Health:
    """A connector's self-assessment, with the reason when not ok."""

    status: HealthStatus = attrs.field(converter=HealthStatus)
    reason: str = ""

    @classmethod
    def ok(cls, reason: str = "") -> Health:
        return cls(HealthStatus.OK, reason)

    @classmethod
    def degraded(cls, reason: str) -> Health:
        return cls(HealthStatus.DEGRADED, reason)

    @classmethod
    def down(cls, reason: str) -> Health:
        return cls(HealthStatus.DOWN, reason)


def hash_chat_id(chat_id: str) -> str:
    """What the audit log keeps instead of a chat id once a contact is pseudonymised."""
    return "sha256:" + hashlib.sha256(chat_id.encode()).hexdigest()[:32]


@attrs.frozen
class AuditEntry:
    """One row of the audit log (``max_logs``). ``id`` makes a re-sent row a no-op."""

    action: str
    details: dict[str, Any] = attrs.field(factory=dict, converter=_freeze_map)
    message_id: str | None = None
    created_at: float = attrs.field(factory=_now)
    id: str = attrs.field(factory=lambda: str(uuid.uuid4()))


@attrs.frozen
class Veto:
    """Returned by an event hook to stop what is about to happen, with a reason."""

    reason: str
