"""How a channel names the tenant of an unauthenticated webhook request.

A channel class declares ``routing``; the core reads the key there, finds the tenant
whose channel instance has that ``route_key``, and only then lets that instance
authenticate the request. Three places are supported, one per provider family:

- ``Routing.body("instanceData.idInstance")``: a value in the JSON body (Green-API;
  Meta's ``entry.0.changes.0.value.metadata.phone_number_id``). List items are
  addressed by their index. The body is decoded once per request.
- ``Routing.header("X-Account-Id")``: a request header.
- ``Routing.path()``: the ``{route}`` segment of ``/webhooks/{channel}/{route}``, for
  providers whose payload does not name the account (Telegram).

``Routing.custom("...")`` says the channel overrides ``webhook_route_key`` itself (the
text tells a reader where the key comes from).
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from .connectors import WebhookRequest
from .errors import WebhookError
from .webhooks import json_body

# Longer route keys match no tenant: refused before they reach a dict or a log line.
MAX_ROUTE_KEY_CHARS = 256


class RouteSource(enum.StrEnum):
    BODY = "body"
    HEADER = "header"
    PATH = "path"
    CUSTOM = "custom"


@attrs.frozen
class Routing:
    """Where a channel reads the tenant's route key (see the module docstring)."""

    source: RouteSource = attrs.field(converter=RouteSource)
    field: str = ""

    @classmethod
    def body(cls, path: str) -> Routing:
        return cls(RouteSource.BODY, path)

    @classmethod
    def header(cls, name: str) -> Routing:
        return cls(RouteSource.HEADER, name.lower())

    @classmethod
    def path(cls) -> Routing:
        return cls(RouteSource.PATH)

    @classmethod
    def custom(cls, description: str) -> Routing:
        return cls(RouteSource.CUSTOM, description)

    def describe(self) -> str:
        """Where the key is, in words (``maxcore plugins``, docs, errors)."""
        return {
            RouteSource.BODY: f"body field {self.field}",
            RouteSource.HEADER: f"header {self.field}",
            RouteSource.PATH: "path /webhooks/{channel}/{route}",
            RouteSource.CUSTOM: self.field or "the channel's own rule",
        }[self.source]

    def key(self, request: WebhookRequest, channel: str) -> str:
        """The route key ``request`` claims; a ``WebhookError`` saying what is missing."""
        if self.source is RouteSource.PATH:
            if not request.route:
                raise WebhookError(
                    404, f"the {channel} channel's webhooks are at /webhooks/{channel}/{{route}}")
            return request.route
        if request.route is not None:
            raise WebhookError(
                404, f"the {channel} channel takes no route segment: use /webhooks/{channel}")
        if self.source is RouteSource.HEADER:
            value = request.header(self.field)
            if not value or not value.strip():
                raise WebhookError(400, f"missing header {self.field}")
            return value.strip()
        if self.source is RouteSource.BODY:
            return _body_value(json_body(request), self.field)
        raise TypeError(f"channel {channel!r} routes by {self.describe()}: it overrides "
                        "webhook_route_key")


def _body_value(data: dict[str, Any], path: str) -> str:
    current: Any = data
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise WebhookError(400, f"missing field {'.'.join(walked)}")
    if isinstance(current, bool) or not isinstance(current, str | int):
        raise WebhookError(400, f"field {path} must be a string or an integer")
    return str(current)


def with_route_key(routing: Routing, request: WebhookRequest, key: str) -> WebhookRequest | None:
    """A copy of ``request`` claiming ``key`` instead (None for custom routing).

    Used by :class:`maxcore.testing.ChannelContract` to aim one tenant's valid request
    at another tenant, or at a tenant that does not exist.
    """
    import json

    if routing.source is RouteSource.PATH:
        return attrs.evolve(request, route=key)
    if routing.source is RouteSource.HEADER:
        return attrs.evolve(request, headers={**request.headers, routing.field: key})
    if routing.source is RouteSource.BODY:
        data = json.loads(request.body)
        node: Any = data
        parts = routing.field.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = key
        else:
            node[last] = key
        return attrs.evolve(request, body=json.dumps(data).encode())
    return None
