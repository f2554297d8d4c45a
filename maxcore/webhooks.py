"""Helpers for channel plugins that parse webhook bodies."""

from __future__ import annotations

import json
from typing import Any

from .connectors import WebhookRequest
from .errors import WebhookError


def json_body(request: WebhookRequest) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    if not request.body.strip():
        raise WebhookError(400, "empty body: expected a JSON object")
    try:
        data = json.loads(request.body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise WebhookError(400, f"body is not valid JSON ({reason})") from exc
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
    if not isinstance(current, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise WebhookError(400, f"field {path} must be of type {names}")
    return current
