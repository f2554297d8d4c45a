"""A small async EspoCRM 8.3 REST client: auth, error mapping, where encoding, paging.

No third-party SDK: the ones on PyPI are synchronous and sign HMAC with a hex digest,
which 8.3 refuses (it wants the raw 32-byte digest, hex is accepted from 8.4.1 only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx
from loguru import logger

from maxcore.errors import PermanentError, RetryableError, ToolError
from maxcore.http_client import HttpResponse
from maxcore.http_pool import HTTP_CLIENTS, HttpClients

from .config import EspoCRMConfig

MAX_PAGE = 200  # recordListMaxSizeLimit: above it 8.3 answers 403
LOCKOUT_S = 60.0  # authFailedAttemptsPeriod
REBUILD_HINT = (
    "copy deploy/espocrm/custom into the EspoCRM container and run "
    "'php command.php rebuild' as www-data"
)
_VALIDATION_RE = re.compile(r"field: (?P<field>[^,]+), type: (?P<type>[^.]+)")
_VALIDATION_TYPES = {
    "valid": "value not accepted (enum option, or phone not in E.164)",
    "emailAddress": "invalid e-mail address",
    "pattern": "contains a forbidden character (< > =)",
    "maxLength": "too long",
    "required": "is required",
    "validCurrency": "currency not enabled in EspoCRM",
    "min": "below the minimum",
    "max": "above the maximum",
}


def encode_where(items: Sequence[Mapping[str, Any]], prefix: str = "where") -> list[tuple[str, str]]:
    """Where items → PHP bracket parameters (``where[0][type]=equals``...)."""
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        base = f"{prefix}[{index}]"
        for key, value in item.items():
            if key == "value" and isinstance(value, list) and value and isinstance(value[0], Mapping):
                pairs.extend(encode_where(value, f"{base}[value]"))
            elif isinstance(value, list | tuple):
                pairs.extend((f"{base}[{key}][]", str(v)) for v in value)
            elif value is not None:
                pairs.append((f"{base}[{key}]", str(value)))
    return pairs


def hmac_authorization(api_key: str, secret_key: str, method: str, resource: str) -> str:
    """``X-Hmac-Authorization`` for ``METHOD /Resource`` (path without /api/v1, no query)."""
    digest = hmac.new(secret_key.encode(), f"{method} {resource}".encode(), hashlib.sha256).digest()
    return base64.b64encode(api_key.encode() + b":" + digest).decode()


class EspoClient:
    """One tenant's client, on the connection pool the process shares for the EspoCRM
    URL (the key or HMAC goes in each request's headers, never on the pool)."""

    def __init__(self, config: EspoCRMConfig, tenant: str, http: HttpClients | None = None) -> None:
        self.config = config
        self.base = config.url.rstrip("/") + "/api/v1"
        self._clients = http or HTTP_CLIENTS
        self.http = self._clients.client(
            config.url, timeout=config.timeout_s,
            headers={"Accept": "application/json", "User-Agent": "maxcore-espocrm"},
        )
        self.log = logger.bind(tenant=tenant)

    async def aclose(self) -> None:
        await self._clients.release(self.http)

    def _auth_headers(self, method: str, resource: str) -> dict[str, str]:
        if self.config.auth == "hmac" and self.config.secret_key:
            return {"X-Hmac-Authorization": hmac_authorization(
                self.config.api_key, self.config.secret_key, method, resource)}
        return {"X-Api-Key": self.config.api_key}

    async def request(
        self,
        method: str,
        resource: str,
        *,
        params: Iterable[tuple[str, str]] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        expect: tuple[int, ...] = (),
        auth: bool = True,
    ) -> HttpResponse:
        """Send one request; statuses in ``expect`` are returned, other errors raised."""
        all_headers = {**(self._auth_headers(method, resource) if auth else {}), **(headers or {})}
        started = time.monotonic()
        try:
            response = await self.http.request(
                method, self.base + resource, params=list(params or []), json=json, headers=all_headers
            )
        except httpx.TimeoutException:
            raise RetryableError(
                f"EspoCRM at {self.config.url} did not answer within {self.config.timeout_s:g}s"
            ) from None
        except httpx.TransportError as exc:
            raise RetryableError(
                f"cannot reach EspoCRM at {self.config.url} ({type(exc).__name__})"
            ) from None
        elapsed_ms = (time.monotonic() - started) * 1000
        self.log.debug("[ESPO_CLIENT] request {} {} -> {} ({:.0f} ms)", method, resource,
                       response.status_code, elapsed_ms)
        if response.status_code < 300 or response.status_code in expect:
            return response
        raise self._error(method, resource, response)

    def _error(self, method: str, resource: str, response: HttpResponse) -> Exception:
        status = response.status_code
        reason = response.headers.get("X-Status-Reason", "")
        where = f"{method} {resource}"
        if status == 401:
            which = "crm.api_key/crm.secret_key" if self.config.auth == "hmac" else "crm.api_key"
            return PermanentError(
                f"EspoCRM API key rejected (401) on {where}: check {which} and that the API user is active"
            )
        if status == 403:
            # The lockout carries "Max failed login attempts exceeded for IP address ...";
            # ACL refusals always carry a reason, so a bare 403 is the lockout seen through
            # a proxy that drops the header. All connectors share one IP in Docker: another
            # tenant's wrong key can lock this one out too.
            if not reason or reason.startswith("Max failed login attempts"):
                return RetryableError(
                    "EspoCRM locked this client out after failed logins, retry in 60 s",
                    retry_after=LOCKOUT_S,
                )
            if reason.startswith("Assignment failure"):
                return PermanentError(
                    f"EspoCRM refused the assignment on {where}: check crm.assigned_user_id and "
                    "crm.teams_ids (the API user's role must allow assigning to them)"
                )
            return PermanentError(f"EspoCRM refused {where} (403 {reason}): grant it in the API user's Role")
        if status == 400:
            match = _VALIDATION_RE.search(reason)
            if reason.startswith("Field validation failure") and match:
                field, kind = match.group("field"), match.group("type")
                explained = _VALIDATION_TYPES.get(kind, kind)
                return ToolError(f"EspoCRM refused field {field}: {explained}")
            if f"'{self.config.tenant_field}'" in reason:
                return PermanentError(
                    f"EspoCRM does not know the {self.config.tenant_field} field ({reason}): "
                    f"the customization is missing; {REBUILD_HINT}"
                )
            return PermanentError(f"EspoCRM rejected {where} (400 {reason or 'bad request'})")
        if status == 404 and reason.startswith("Controller"):
            return PermanentError(f"EspoCRM: {reason} The custom entity needs its Controller; {REBUILD_HINT}")
        if status == 429 or status >= 500:
            retry_after = response.headers.get("Retry-After")
            seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
            return RetryableError(f"EspoCRM answered {status} on {where}", retry_after=seconds)
        return PermanentError(f"EspoCRM answered {status} on {where}{f' ({reason})' if reason else ''}")

    async def list_records(
        self,
        entity: str,
        where: Sequence[Mapping[str, Any]],
        *,
        limit: int,
        offset: int = 0,
        order_by: str = "createdAt",
        order: str = "desc",
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` records from ``offset``, fetched in pages of at most 200."""
        found: list[dict[str, Any]] = []
        while len(found) < limit:
            size = min(MAX_PAGE, limit - len(found))
            params = [("maxSize", str(size)), ("offset", str(offset + len(found))),
                      ("orderBy", order_by), ("order", order), *encode_where(where)]
            response = await self.request("GET", f"/{entity}", params=params)
            page = response.json().get("list", [])
            found.extend(page)
            if len(page) < size:
                break
        return found
