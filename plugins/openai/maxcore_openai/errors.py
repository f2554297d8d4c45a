"""OpenAI's error answers mapped to the core's retryable / permanent errors (contract §5).

An error answer is a status and ``{"error": {"message", "type", "param", "code"}}``
(OpenAI's API reference, "Error codes"). Messages say which tenant and which server,
never the key: an OpenAI 401 body quotes part of the key, so it is not repeated; other
upstream messages go through the redactor. Clients match on status and ``code``, never
on the message text.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import httpx

from maxcore.errors import MaxcoreError, PermanentError, RetryableError
from maxcore.http_client import HttpResponse
from maxcore.logs import redact

# Statuses worth another try later (as OpenAI's SDK retries them), besides 5xx.
RETRYABLE_STATUSES = frozenset({408, 409, 429})


class ContextTooLong(PermanentError):
    """400 ``context_length_exceeded``: the request does not fit the model's window."""


class KeyRejected(PermanentError):
    """401: the key is wrong, revoked, or for another server."""


class AccessDenied(PermanentError):
    """403: the key works but may not use this model, project or region."""


class Unreachable(RetryableError):
    """No answer at all: refused, timed out, dropped."""


class OpenAIStatusError(Exception):
    """An error answer as the server sent it (before mapping)."""

    def __init__(self, status: int, headers: Mapping[str, str] | None, message: str,
                 type_: str | None, code: str | None, param: str | None) -> None:
        super().__init__(f"{status} {code or type_ or ''}: {message}")
        self.status = status
        self.headers = headers
        self.message = message
        self.type = type_
        self.code = code
        self.param = param

    @classmethod
    def of(cls, response: HttpResponse) -> OpenAIStatusError:
        error: Any = None
        try:
            body = response.json()
            error = body.get("error") if isinstance(body, dict) else None
        except ValueError:
            pass
        if not isinstance(error, dict):
            return cls(response.status_code, response.headers, response.text[:300], None, None, None)

        def text(key: str) -> str | None:
            value = error.get(key)
            return None if value is None else str(value)

        return cls(response.status_code, response.headers, text("message") or "", text("type"),
                   text("code"), text("param"))


def retry_after_of(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, else ``retry-after``
    (seconds, fractional allowed, or an HTTP date). None when absent or unreadable."""
    if headers is None:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, float(email.utils.mktime_tz(parsed) - time.time()))


def _upstream_message(exc: OpenAIStatusError) -> str:
    text = redact(exc.message or "")
    return text if len(text) <= 300 else text[:297] + "..."


def map_transport(exc: httpx.TransportError, *, tenant: str, base_url: str,
                  timeout_s: float) -> Unreachable:
    """A failure to get an answer at all (a completion has no effect: always retryable)."""
    where = f"tenant {tenant}, {base_url}"
    connecting = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
    if isinstance(exc, httpx.TimeoutException) and not connecting:
        return Unreachable(f"OpenAI did not answer within {timeout_s:g}s ({where})")
    return Unreachable(f"cannot reach the OpenAI-compatible server ({where}): connection failed "
                          f"({type(exc).__name__})")


def map_status(exc: OpenAIStatusError, *, tenant: str, model: str, base_url: str) -> MaxcoreError:
    """The core error for an error answer (after any retries here)."""
    where = f"tenant {tenant}, {base_url}"
    status, code = exc.status, exc.code
    if status == 401:
        return KeyRejected(f"OpenAI rejected the API key for tenant {tenant} "
                           f"({status} {code or exc.type or 'unauthorized'} from {base_url})")
    if status == 403:
        return AccessDenied(f"OpenAI refused access for tenant {tenant} ({status} from {base_url}): "
                            f"{_upstream_message(exc)}")
    if status == 404:
        return PermanentError(f"model {model} not found at {base_url} (tenant {tenant}): "
                              f"{_upstream_message(exc)}")
    if status == 429 and code == "insufficient_quota":
        # Arrives as 429 but waiting does not help: billing must change.
        return PermanentError(f"OpenAI quota exhausted for tenant {tenant} (429 insufficient_quota "
                              f"from {base_url}): check the account's plan and billing")
    if code == "context_length_exceeded":
        return ContextTooLong(f"the conversation is longer than the context window of {model} "
                              f"(tenant {tenant}, {base_url}): {_upstream_message(exc)}")
    if status >= 500 or status in RETRYABLE_STATUSES:
        return RetryableError(
            f"OpenAI answered {status} {code or exc.type or ''} ({where}): {_upstream_message(exc)}",
            retry_after=retry_after_of(exc.headers),
        )
    param = f", param {exc.param}" if exc.param else ""
    return PermanentError(f"OpenAI rejected the request ({status} {code or exc.type or ''}{param}; "
                          f"{where}): {_upstream_message(exc)}")
