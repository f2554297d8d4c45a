"""Green-API notification bodies → what the bot does with them.

One parser for both transports: a webhook body and the ``body`` of a
``receiveNotification`` answer are the same document. The text rendering per
``typeMessage`` is maxcore's contract (its table: tests/fixtures/greenapi/INDEX.md).
"""

from __future__ import annotations

from typing import Any

import attrs

from maxcore.errors import WebhookError
from maxcore.types import InboundMessage, Media, MessageKind
from maxcore.webhooks import require

CHANNEL = "greenapi"

PROCESS = "process"
IGNORE = "ignore"
WARN = "warn"
RESEND_PROMPT = "resend_prompt"

# Markers Green-API puts in place of content it could not deliver (common-errors).
UNREADABLE_MARKERS = ("{{SWE001}}", "{{SWE003}}")
FILE_TOO_BIG_MARKER = "{{SWE002}}"

FILE_TYPES = ("imageMessage", "videoMessage", "documentMessage", "audioMessage", "stickerMessage")
EXTENDED_TYPES = ("extendedTextMessage", "quotedMessage")
# typeMessage → the core's kind (the typeMessage itself stays in metadata["type_message"]).
# Green-API's audioMessage does not tell a voice note from an audio file: audio.
KINDS: dict[str, MessageKind] = {
    "textMessage": MessageKind.TEXT,
    "extendedTextMessage": MessageKind.TEXT,
    "quotedMessage": MessageKind.TEXT,
    "imageMessage": MessageKind.IMAGE,
    "videoMessage": MessageKind.VIDEO,
    "documentMessage": MessageKind.DOCUMENT,
    "audioMessage": MessageKind.AUDIO,
    "stickerMessage": MessageKind.STICKER,
    "locationMessage": MessageKind.LOCATION,
    "contactMessage": MessageKind.CONTACT,
    "reactionMessage": MessageKind.REACTION,
    "editedMessage": MessageKind.EDITED,
    "deletedMessage": MessageKind.DELETED,
}
# Webhooks that are the bot's own traffic or delivery receipts: never to the model.
ECHO_TYPES = ("outgoingMessageReceived", "outgoingAPIMessageReceived", "outgoingMessageStatus")
INFO_TYPES = ("incomingCall", "outgoingCall", "statusInstanceChanged", "deviceInfo", "incomingBlock")


@attrs.frozen
class Parsed:
    """The decision for one notification, and the message when there is one."""

    action: str
    type_webhook: str
    level: str
    summary: str
    message: InboundMessage | None = None
    state: str | None = None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _shown(value: Any) -> Any:
    """A value as a log summary may show it: scalars (strings cut), else the type name."""
    if isinstance(value, str):
        return value if len(value) <= 80 else value[:79] + "…"
    if value is None or isinstance(value, bool | int | float):
        return value if not isinstance(value, int) or abs(value) < 10**20 else "<huge int>"
    return f"<{type(value).__name__}>"


def _number(data: dict[str, Any], key: str, path: str) -> int | float | None:
    """An optional number field; anything else breaks the contract (400, then dead letter)."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or abs(value) > 1e15:
        raise WebhookError(400, f"field {path} must be a number, got {_shown(value)!r}")
    return value


# Seconds since 1970: anything past year 5138 is not a Green-API timestamp.
MAX_TIMESTAMP = 10**11


def phone_of(jid: str | None) -> str | None:
    """``33612345678@c.us`` → ``+33612345678``; lid and group ids carry no phone."""
    if not jid or not jid.endswith("@c.us"):
        return None
    digits = jid.split("@", 1)[0]
    return "+" + digits if digits.isdigit() else None


def parse_notification(data: dict[str, Any], tenant: str, ignore_groups: bool = True) -> Parsed:
    """Classify one notification; raise ``WebhookError(400)`` when a required field is missing."""
    kind = require(data, "typeWebhook")
    if kind == "incomingMessageReceived":
        return _incoming(data, tenant, ignore_groups)
    if kind in ECHO_TYPES:
        chat = _str(_dict(data.get("senderData")).get("chatId")) or _str(data.get("chatId"))
        status = f" status {_shown(data.get('status'))}" if kind == "outgoingMessageStatus" else ""
        return Parsed(IGNORE, kind, "DEBUG",
                      f"{kind}{status} for chat {chat} ignored (the bot's own traffic)")
    if kind == "stateInstanceChanged":
        state = _str(data.get("stateInstance")) or "unknown"
        return Parsed(WARN, kind, "WARNING", f"instance state changed to {state}", state=state)
    if kind == "quotaExceeded":
        quota = _dict(data.get("quotaData"))
        return Parsed(WARN, kind, "WARNING",
                      f"quota exceeded: {_shown(quota.get('status'))} ({_shown(quota.get('used'))}/"
                      f"{_shown(quota.get('total'))} {_shown(quota.get('method'))}): "
                      f"{_shown(quota.get('description')) or ''}".rstrip(": "))
    if kind in INFO_TYPES:
        return Parsed(IGNORE, kind, "INFO", f"{kind} from {_shown(data.get('from'))} status "
                                            f"{_shown(data.get('status'))} (not answered)")
    return Parsed(IGNORE, kind, "INFO", f"unknown notification type {_shown(kind)!r} ignored")


def _incoming(data: dict[str, Any], tenant: str, ignore_groups: bool) -> Parsed:
    kind = "incomingMessageReceived"
    chat_id = require(data, "senderData.chatId")
    message_id = require(data, "idMessage")
    type_message = require(data, "messageData.typeMessage")
    sender_data = _dict(data["senderData"])
    sender = _str(sender_data.get("sender")) or chat_id
    if ignore_groups and chat_id.endswith("@g.us"):
        return Parsed(IGNORE, kind, "INFO", f"group message in {chat_id} ignored (ignore_groups)")
    body = _dict(data["messageData"])
    rendered = _render(type_message, body)
    if rendered is None:
        return Parsed(IGNORE, kind, "INFO", f"message type {type_message!r} in {chat_id} not handled")
    text, media, context = rendered
    quoted = _dict(body.get("quotedMessage"))
    if quoted and type_message != "reactionMessage":
        context["quoted_message_id"] = _str(quoted.get("stanzaId"))
        context["quoted_participant"] = _str(quoted.get("participant"))
        quoted_text = _quoted_text(quoted)
        if quoted_text:
            context["quoted_text"] = quoted_text
    if chat_id.endswith("@lid"):
        context["phone_known"] = False
    action, level = PROCESS, "INFO"
    marker = next((m for m in UNREADABLE_MARKERS if text.strip() == m), None)
    if marker is None and media is not None and media.url.startswith(FILE_TOO_BIG_MARKER):
        marker = FILE_TOO_BIG_MARKER
    if marker is not None:
        action, level, text = RESEND_PROMPT, "WARNING", ""
        context["marker"] = marker.strip("{}")
        context["llm"] = False
    timestamp = _number(data, "timestamp", "timestamp")
    if timestamp is not None and not 0 <= timestamp < MAX_TIMESTAMP:
        raise WebhookError(400, f"field timestamp is not a time in seconds: {_shown(timestamp)!r}")
    context.update({
        "type_message": type_message, "sender": sender, "greenapi_action": action,
        "dedupe_key": f"{chat_id}_{message_id}",
    })
    message = InboundMessage(
        tenant=tenant, channel=CHANNEL, chat_id=chat_id, message_id=message_id, text=text,
        sender_name=_str(sender_data.get("senderName")) or _str(sender_data.get("chatName")) or None,
        sender_phone=phone_of(sender), kind=KINDS.get(type_message, MessageKind.UNKNOWN), media=media,
        quoted_text=context.get("quoted_text"),
        **({"received_at": float(timestamp)} if timestamp is not None else {}),
        metadata=context,
    )
    summary = f"{type_message} {message_id} from chat {chat_id}"
    return Parsed(action, kind, level, summary, message=message)


def _render(type_message: str, body: dict[str, Any]) -> tuple[str, Media | None, dict[str, Any]] | None:
    """(text, media, context) for the types maxcore handles; None for the others."""
    if type_message == "textMessage":
        return _str(_dict(body.get("textMessageData")).get("textMessage")) or "", None, {}
    if type_message in EXTENDED_TYPES:
        return _str(_dict(body.get("extendedTextMessageData")).get("text")) or "", None, {}
    if type_message == "reactionMessage":
        target = _str(_dict(body.get("quotedMessage")).get("stanzaId"))
        emoji = _str(_dict(body.get("extendedTextMessageData")).get("text")) or ""
        return emoji, None, {"reaction_to": target}
    if type_message in FILE_TYPES:
        file = _dict(body.get("fileMessageData"))
        url = _str(file.get("downloadUrl")) or ""
        media = Media(url=url, mime_type=_str(file.get("mimeType")), file_name=_str(file.get("fileName")))
        context = {"media_url": url, "mime_type": media.mime_type, "file_name": media.file_name}
        return _str(file.get("caption")) or "", media, context
    if type_message == "locationMessage":
        place = _dict(body.get("locationMessageData"))
        path = "messageData.locationMessageData"
        lat = _number(place, "latitude", f"{path}.latitude")
        lon = _number(place, "longitude", f"{path}.longitude")
        names = ", ".join(p for p in (_str(place.get("nameLocation")), _str(place.get("address"))) if p)
        text = "Location: " + (f"{names} " if names else "") + f"({lat!r}, {lon!r})"
        coordinates = {"latitude": lat, "longitude": lon}
        return text, None, {**coordinates, "location": coordinates}
    if type_message == "contactMessage":
        contact = _dict(body.get("contactMessageData"))
        vcard = contact.get("vcard")
        if vcard is not None and not isinstance(vcard, str):
            raise WebhookError(400, "field messageData.contactMessageData.vcard must be a string, "
                                    f"got {_shown(vcard)!r}")
        return f"Contact: {_str(contact.get('displayName')) or ''}", None, {"vcard": vcard}
    if type_message == "editedMessage":
        edited = _dict(body.get("editedMessageData"))
        return (_str(edited.get("textMessage")) or "", None,
                {"edits_message_id": _str(edited.get("stanzaId"))})
    if type_message == "deletedMessage":
        deleted = _str(_dict(body.get("deletedMessageData")).get("stanzaId"))
        # Recorded (inbox + audit) but never shown to the model, never answered.
        return "", None, {"deleted_message_id": deleted, "llm": False}
    return None


def _quoted_text(quoted: dict[str, Any]) -> str | None:
    for key in ("textMessage", "text", "caption", "conversation"):
        value = _str(quoted.get(key))
        if value:
            return value
    nested = _dict(quoted.get("extendedTextMessage")) or _dict(quoted.get("extendedTextMessageData"))
    return _str(nested.get("text"))
