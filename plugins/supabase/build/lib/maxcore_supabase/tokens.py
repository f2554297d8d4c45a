"""Short-lived per-tenant JWTs, so that Postgres RLS enforces the tenant too.

Each token carries ``role=authenticated`` and ``app_metadata.tenant_id`` (the claim the
migrations' policies read; app_metadata because users cannot edit it) and is signed
HS256 with the project's JWT secret, like the tokens Supabase Auth issues.
"""

from __future__ import annotations

import time

import jwt

TOKEN_TTL_S = 600.0
REFRESH_MARGIN_S = 120.0


class TenantTokens:
    """Mints the tenant's token and re-mints it before it expires."""

    def __init__(self, secret: str, tenant: str, ttl_s: float = TOKEN_TTL_S) -> None:
        self._secret = secret
        self._tenant = tenant
        self._ttl_s = ttl_s
        self._token: str | None = None
        self._expires_at = 0.0

    def mint(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        self._expires_at = now + self._ttl_s
        claims = {
            "role": "authenticated",
            "aud": "authenticated",
            "iss": "maxcore",
            "iat": int(now),
            "exp": int(self._expires_at),
            "app_metadata": {"tenant_id": self._tenant},
        }
        self._token = jwt.encode(claims, self._secret, algorithm="HS256")
        return self._token

    def current(self, now: float | None = None) -> tuple[str, bool]:
        """The token to send and whether it is new since the last call."""
        now = time.time() if now is None else now
        if self._token is None or now > self._expires_at - min(REFRESH_MARGIN_S, self._ttl_s / 2):
            return self.mint(now), True
        return self._token, False
