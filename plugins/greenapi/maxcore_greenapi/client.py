"""The handful of Green-API REST calls, over the client the process shares for the api_url.

URLs are ``{api_url}/waInstance{id}/{method}/{token}``: the token sits in the path, so
nothing here ever puts a URL, or a transport error that quotes one, in a message or log.
Errors are keyed on the status (the bodies are not consistent, contract §7).
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from maxcore.errors import PermanentError, RetryableError
from maxcore.http_client import HttpClient, HttpResponse, Timeout
from maxcore.http_pool import HTTP_CLIENTS, HttpClients
from maxcore.logs import REDACTOR
from maxcore.outbound import split_text
from maxcore.webhooks import BodyRejected, decode_json

from .config import GreenApiConfig

MAX_MESSAGE_CHARS = 20_000
# /waInstance1101000001/sendMessage/<token>  →  /waInstance1101000001/sendMessage/***
# (the channel declares it as a redact pattern: every log line hides the token).
URL_TOKEN_RE = re.compile(r"/waInstance\d+/[A-Za-z]+/(?P<secret>[^/\s?\"'#]+)")
MAX_RETRY_AFTER_S = 30.0


class InstanceStarting(RetryableError):
    """The instance is (re)booting: retried later by the inbox, not in a tight loop here."""

    not_sent = True  # refused before anything was queued


class RateLimited(RetryableError):
    """429: the per-instance, per-method requests-per-second limit (contract §8)."""

    not_sent = True


class Unreachable(RetryableError):
    """No connection to Green-API could be made: nothing reached it."""

    not_sent = True


class GreenApiClient:
    """Calls one instance's REST API. Open once, share, close on shutdown."""

    def __init__(self, config: GreenApiConfig, tenant: str, http: HttpClients | None = None) -> None:
        self.config = config
        self.tenant = tenant
        self._http: HttpClient | None = None
        self._clients = http or HTTP_CLIENTS

    async def open(self) -> None:
        # The api_url's pool is shared with the other tenants on it: the instance and
        # its token are in each request's path, never on the client.
        if self._http is None:
            self._http = self._clients.client(
                self.config.api_url, timeout=Timeout(read=self.config.timeout_s, connect=10.0),
                headers={"User-Agent": "maxcore-greenapi"},
            )

    async def close(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await self._clients.release(http)

    def _url(self, method: str, *suffix: str) -> str:
        parts = [self.config.api_url, f"waInstance{self.config.instance_id}", method,
                 self.config.api_token, *suffix]
        return "/".join(parts)

    def _clean(self, text: str) -> str:
        return REDACTOR(text.replace(self.config.api_token, "***"))

    async def call(
        self, http_method: str, method: str, *suffix: str, json_body: Any = None,
        params: dict[str, Any] | None = None, timeout: float | None = None,
    ) -> Any:
        """One request; the decoded JSON on 200, else a RetryableError / PermanentError."""
        if self._http is None:
            await self.open()
        assert self._http is not None
        try:
            response = await self._http.request(
                http_method, self._url(method, *suffix), json=json_body, params=params,
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            # ``from None``: the httpx exception may quote the URL, hence the token.
            unreachable = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            kind = Unreachable if unreachable else RetryableError
            raise kind(
                f"Green-API {method}: {type(exc).__name__} {self._clean(str(exc))}".rstrip()
            ) from None
        if response.status_code == 200:
            try:
                # Bounded like a webhook body, lone surrogates replaced: polled
                # notifications reach the same parser and inbox.
                return decode_json(response.content)
            except (json.JSONDecodeError, UnicodeDecodeError, BodyRejected):
                raise RetryableError(f"Green-API {method}: answer is not JSON") from None
        raise self._error(method, response)

    def _error(self, method: str, response: HttpResponse) -> Exception:
        status = response.status_code
        snippet = self._clean(response.text[:300].strip())
        lowered = snippet.lower()
        instance = self.config.instance_id
        if status == 400 and ("not authorized" in lowered or "notauthorized" in lowered):
            return PermanentError(
                f"the Green-API instance {instance} is not authorised — scan the QR code in the console"
            )
        if status == 400 and "starting" in lowered:
            # "instance in starting process try later": transient by the docs' own words.
            return InstanceStarting(f"the Green-API instance {instance} is starting; try later",
                                    retry_after=10.0)
        if status == 400:
            return PermanentError(f"Green-API rejected {method} as invalid (400): {snippet}")
        if status == 401:
            return PermanentError(
                f"Green-API refused the API token of instance {instance} (401): check api_token"
            )
        if status == 403:
            return PermanentError(
                f"Green-API does not know instance {instance} at {self.config.api_url} (403): "
                "check instance_id and api_url"
            )
        if status == 466:
            return PermanentError(f"monthly quota exceeded on Green-API instance {instance} "
                                  f"(466{_quota_status(response)}): upgrade the plan in the console")
        if status == 429:
            return RateLimited(f"Green-API rate limit on {method} (429)",
                               retry_after=_retry_after(response))
        if status == 499 or status >= 500:
            return RetryableError(f"Green-API {method} failed ({status}): {snippet}",
                                  retry_after=_retry_after(response))
        return PermanentError(f"Green-API answered {status} to {method}: {snippet}")

    # -- methods ------------------------------------------------------------------
    async def send_message(self, payload: dict[str, Any]) -> str | None:
        """POST sendMessage once. A failure is raised, never retried here: the inbox puts
        the message back on a timer, and the journal checks whether it went out first."""
        answer = await self.call("POST", "sendMessage", json_body=payload)
        return answer.get("idMessage") if isinstance(answer, dict) else None

    async def last_outgoing(self, minutes: int) -> list[dict[str, Any]]:
        """The outgoing journal of the last ``minutes`` (newest first, contract §10)."""
        answer = await self.call("GET", "lastOutgoingMessages", params={"minutes": minutes})
        return [m for m in answer if isinstance(m, dict)] if isinstance(answer, list) else []

    async def get_state(self) -> str:
        answer = await self.call("GET", "getStateInstance")
        state = answer.get("stateInstance") if isinstance(answer, dict) else None
        if not isinstance(state, str):
            raise RetryableError("Green-API getStateInstance: no stateInstance in the answer")
        return state

    async def set_settings(self, settings: dict[str, Any]) -> bool:
        answer = await self.call("POST", "setSettings", json_body=settings)
        return bool(isinstance(answer, dict) and answer.get("saveSettings"))

    async def get_settings(self) -> dict[str, Any]:
        answer = await self.call("GET", "getSettings")
        return answer if isinstance(answer, dict) else {}

    async def receive(self, receive_timeout: int) -> dict[str, Any] | None:
        """One long poll: a ``{receiptId, body}`` notification or None when none came."""
        answer = await self.call(
            "GET", "receiveNotification", params={"receiveTimeout": receive_timeout},
            timeout=receive_timeout + self.config.timeout_s,
        )
        return answer if isinstance(answer, dict) else None

    async def delete(self, receipt_id: int) -> bool:
        answer = await self.call("DELETE", "deleteNotification", str(receipt_id))
        return bool(isinstance(answer, dict) and answer.get("result"))


def _quota_status(response: HttpResponse) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    status = body.get("correspondentsStatus", {}).get("status") if isinstance(body, dict) else None
    return f", {status}" if isinstance(status, str) else ""


def _retry_after(response: HttpResponse) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return min(float(value), MAX_RETRY_AFTER_S) if value else None
    except ValueError:
        return None


def split_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """``text`` in parts of at most ``limit`` characters (:func:`maxcore.outbound.split_text`)."""
    return split_text(text, limit)
