"""API users, X-Api-Key / HMAC authentication and the failed-attempts lockout of 8.3.

``Core/Api/Auth.php``: bad or missing credentials → 401 with an empty body.
``FailedAttemptsLimit.php``: before each login, the denied attempts from the client IP
within the period are counted; more than the maximum → 403 for every request from that
IP (valid keys included) until the window slides past.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import threading
from collections.abc import Callable

import attrs

API_PREFIX = "/api/v1"


@attrs.frozen
class ApiUser:
    """An API user (Administration › API Users) and what its Role lets it do.

    ``denied`` holds ``(scope, action)`` pairs the role refuses, e.g.
    ``("Lead", "create")``; everything else is allowed (``read``/``edit`` on all).
    ``granted``, when set (users created through the admin API), lists the only pairs
    their Roles allow.
    """

    api_key: str
    secret_key: str | None = None
    id: str = attrs.field(factory=lambda: "api-user-1")
    user_name: str = "max-api"
    denied: frozenset[tuple[str, str]] = attrs.field(factory=frozenset, converter=frozenset)
    granted: frozenset[tuple[str, str]] | None = None

    @property
    def auth_method(self) -> str:
        return "Hmac" if self.secret_key else "ApiKey"

    def can(self, scope: str, action: str) -> bool:
        if self.granted is not None and (scope, action) not in self.granted:
            return False
        return (scope, action) not in self.denied


class Unauthorized(Exception):
    """401, empty body."""


class LockedOut(Exception):
    """403 ``Max failed login attempts exceeded for IP address <ip>.``"""


def hmac_header(api_key: str, secret_key: str, method: str, path: str) -> str:
    """What a client sends in ``X-Hmac-Authorization`` (raw digest, as 8.3 expects)."""
    digest = hmac.new(secret_key.encode(), f"{method} {path}".encode(), hashlib.sha256).digest()
    return base64.b64encode(api_key.encode() + b":" + digest).decode()


class Authenticator:
    def __init__(self, clock: Callable[[], float], max_failed: int = 10, period_s: float = 60.0) -> None:
        self.clock = clock
        self.max_failed = max_failed
        self.period_s = period_s
        self.users: dict[str, ApiUser] = {}
        self._denied: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def reset_failures(self) -> None:
        with self._lock:
            self._denied.clear()

    def _recent_failures(self, ip: str) -> int:
        window_start = self.clock() - self.period_s
        attempts = self._denied[ip]
        while attempts and attempts[0] < window_start:
            attempts.popleft()
        return len(attempts)

    def _deny(self, ip: str) -> Unauthorized:
        with self._lock:
            self._denied[ip].append(self.clock())
        return Unauthorized()

    def authenticate(self, ip: str, method: str, path: str, headers: dict[str, str]) -> ApiUser:
        api_key = headers.get("x-api-key")
        hmac_value = headers.get("x-hmac-authorization")
        if api_key is None and hmac_value is None:
            raise Unauthorized()  # no login attempted: not counted
        with self._lock:
            if self._recent_failures(ip) > self.max_failed:
                raise LockedOut(f"Max failed login attempts exceeded for IP address {ip}.")
        if hmac_value is not None:
            return self._hmac(ip, method, path, hmac_value)
        user = self.users.get(api_key or "")
        if user is None or user.auth_method != "ApiKey":
            raise self._deny(ip)
        return user

    def _hmac(self, ip: str, method: str, path: str, value: str) -> ApiUser:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise self._deny(ip) from None
        key_bytes, sep, digest = raw.partition(b":")
        user = self.users.get(key_bytes.decode(errors="replace")) if sep else None
        if user is None or user.secret_key is None:
            raise self._deny(ip)
        resource = path[len(API_PREFIX):] if path.startswith(API_PREFIX) else path
        expected = hmac.new(
            user.secret_key.encode(), f"{method} {resource}".encode(), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(expected, digest):
            raise self._deny(ip)
        return user
