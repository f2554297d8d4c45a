"""Helpers for channel plugins that parse webhook bodies, and the edge's text rules.

Every body is decoded once (:func:`json_body` caches the result on the request) with
bounds that hold before anything else reads it: nesting depth, integer length, finite
numbers only. Text that cannot be stored is repaired here rather than refused: a lone
UTF-16 surrogate (``"\\ud800"`` in JSON, or a half emoji cut by a phone) becomes
U+FFFD, so a message keeps its place in the conversation and never reaches SQLite, the
log or the model in a shape they cannot encode.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from typing import Any

import attrs

from .connectors import WebhookRequest
from .errors import WebhookError
from .types import InboundMessage, MessageKind

# Deeper than any provider's document (Green-API's are 4 levels), shallow enough that
# nothing downstream recurses into trouble.
MAX_JSON_DEPTH = 800
# Ids and timestamps have about 20 digits; Python itself refuses more than 4,300.
MAX_INT_DIGITS = 1000
# What a body that the channel authenticated but cannot parse is answered with: the
# provider must not redeliver it for a day; the core keeps it as a dead letter.
UNPROCESSABLE_KIND = MessageKind.UNPROCESSABLE
# One answer for an unknown instance and for a wrong credential: ids are not enumerable.
UNAUTHORISED = "unknown instance or invalid webhook token"

_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class BodyRejected(ValueError):
    """A JSON bound was exceeded; the text names which."""


class UnprocessableBody(WebhookError):
    """Raised by a channel *after* authenticating a request whose body it cannot use.

    The core answers 200 (so the provider does not redeliver it) and keeps the raw body
    with ``reason`` as a dead letter, visible in ``maxcore inbox list --state dead``.
    """

    def __init__(self, reason: str, chat_id: str | None = None, message_id: str | None = None) -> None:
        super().__init__(200, reason)
        self.chat_id = chat_id
        self.message_id = message_id


def clean_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (the same object if none)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE_RE.sub("\ufffd", text)


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise BodyRejected(f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(digits)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyRejected(f"the number {text[:20]}… does not fit in a float")
    return value


def _no_constant(name: str) -> Any:
    raise BodyRejected(f"{name} is not a JSON value")


def clean_tree(value: Any, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Replace lone surrogates in every string (keys too) of a decoded JSON document,
    in place where it can, and refuse it when it nests deeper than ``max_depth``.

    Iterative: a document as deep as the limit never touches the recursion limit.
    """
    if isinstance(value, str):
        return clean_text(value)
    if not isinstance(value, dict | list):
        return value
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise BodyRejected(f"nested deeper than {max_depth} levels")
        if isinstance(node, dict):
            if not all(key.isascii() for key in node):
                for key in [k for k in node if clean_text(k) is not k]:
                    node[clean_text(key)] = node.pop(key)
            items = node.items()
        else:
            items = enumerate(node)  # type: ignore[assignment]
        for key, item in items:
            if isinstance(item, str):
                if not item.isascii():
                    node[key] = clean_text(item)
            elif isinstance(item, dict | list):
                stack.append((item, depth + 1))
    return value


# One decoder for every body (json.loads with hooks builds a new one per call).
_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float,
                            parse_constant=_no_constant)


def decode_json(body: bytes | str) -> Any:
    """Decode a JSON document within the bounds above, surrogates replaced.

    Raises :class:`BodyRejected` for a bound, ``json.JSONDecodeError`` or
    ``UnicodeDecodeError`` for a document that is not JSON at all.
    """
    try:
        # Bytes decoded as json.loads does: the encoding from the first bytes, lone
        # surrogates let through (replaced below).
        text = body if isinstance(body, str) else (
            bytes(body).decode(json.detect_encoding(body), "surrogatepass"))
        data = _DECODER.decode(text)
    except RecursionError:
        # The decoder recurses per level: past the interpreter's limit it says so here.
        raise BodyRejected(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH and not _holds_surrogate(text):
        return data  # no string can hold a surrogate, no nesting can pass the bound
    return clean_tree(data)


# A JSON escape that decodes to a surrogate (a pair or a lone one: the walk tells).
_ESCAPED_SURROGATE_RE = re.compile(r"\\u[dD][89a-fA-F]")


def _holds_surrogate(text: str) -> bool:
    """Whether a string decoded from ``text`` may hold a lone surrogate: ``text`` has one
    itself (bytes let through by ``surrogatepass``) or escapes one. Both checks run in C,
    where walking the decoded document string by string did not."""
    if _ESCAPED_SURROGATE_RE.search(text):
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def json_body(request: WebhookRequest) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it.

    Decoded once per request (later calls return the same object: do not change it).
    """
    cache = request.decoded
    if cache:
        outcome = cache[0]
        if isinstance(outcome, WebhookError):
            raise outcome
        return outcome  # type: ignore[no-any-return]
    try:
        data = _decode_object(request.body)
    except WebhookError as exc:
        cache.append(exc)
        raise
    cache.append(data)
    return data


def _decode_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise WebhookError(400, "empty body: expected a JSON object")
    try:
        data = decode_json(body)
    except BodyRejected as exc:
        raise WebhookError(400, f"body refused: {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise WebhookError(400, f"body is not valid JSON ({reason})") from None
    if not isinstance(data, dict):
        raise WebhookError(400, f"body must be a JSON object, got {type(data).__name__}")
    return data


def require(data: dict[str, Any], path: str, kind: type | tuple[type, ...] = str) -> Any:
    """Read a dotted ``path`` from ``data`` or raise a 400 naming the field."""
    current: Any = data
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        if not isinstance(current, dict) or part not in current:
            raise WebhookError(400, f"missing field {'.'.join(walked)}")
        current = current[part]
    if not isinstance(current, kind) or (isinstance(current, bool) and bool not in _kinds(kind)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise WebhookError(400, f"field {path} must be of type {names}")
    return current


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def raw_text(body: bytes, limit: int = 1 << 20) -> str:
    """The body as storable text (invalid UTF-8 and surrogates replaced), for dead letters."""
    return clean_text(body[:limit].decode("utf-8", "replace"))


# Metadata a channel attaches is JSON-encoded into the inbox: it stays shallow.
MAX_METADATA_DEPTH = 32


def clean_message(message: InboundMessage) -> InboundMessage:
    """``message`` with lone surrogates replaced in every text field and a finite
    ``received_at``; raises :class:`BodyRejected` when its metadata nests too deep."""
    changes: dict[str, Any] = {}
    for name in ("chat_id", "message_id", "text", "sender_name", "sender_phone", "kind", "quoted_text"):
        value = getattr(message, name)
        if isinstance(value, str) and clean_text(value) is not value:
            changes[name] = clean_text(value)
    media = message.media
    if media is not None:
        fields = {k: clean_text(v) for k, v in attrs.asdict(media).items() if isinstance(v, str)}
        if any(fields[k] is not getattr(media, k) for k in fields):
            changes["media"] = attrs.evolve(media, **fields)
    if not isinstance(message.received_at, int | float) or not math.isfinite(message.received_at):
        changes["received_at"] = time.time()
    clean_tree(message.metadata, MAX_METADATA_DEPTH)
    return attrs.evolve(message, **changes) if changes else message


def dead_letter(
    tenant: str, channel: str, raw: str, reason: str,
    chat_id: str | None = None, provider_id: str | None = None,
) -> InboundMessage:
    """The inbox record of a body that was authenticated but cannot be processed.

    Its id is derived from the body (a redelivery of the same body is a duplicate) and
    never the provider's message id, so a correct copy of that message still gets in.
    """
    digest = hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()[:24]
    return InboundMessage(
        tenant=tenant, channel=channel, chat_id=clean_text(chat_id or "-"),
        message_id=f"unprocessable-{digest}", kind=UNPROCESSABLE_KIND,
        metadata={"reason": clean_text(reason), "raw_body": clean_text(raw),
                  "provider_message_id": clean_text(provider_id) if provider_id else None},
    )
