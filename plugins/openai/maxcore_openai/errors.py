"""OpenAI SDK exceptions mapped to the core's retryable / permanent errors (contract §5).

Messages say which tenant and which server, never the key: an OpenAI 401 body quotes
part of the key, so it is not repeated; other upstream messages go through the redactor.
Clients match on status and ``code``, never on the message text.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import openai

from maxcore.errors import MaxcoreError, PermanentError, RetryableError
from maxcore.logs import redact

# Statuses the SDK itself retries (besides connection errors): worth another try later.
RETRYABLE_STATUSES = frozenset({408, 409, 429})


class ContextTooLong(PermanentError):
    """400 ``context_length_exceeded``: the request does not fit the model's window."""


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


def _upstream_message(exc: openai.APIStatusError) -> str:
    text = redact(str(getattr(exc, "message", "") or ""))
    return text if len(text) <= 300 else text[:297] + "..."


def map_error(exc: openai.OpenAIError, *, tenant: str, model: str, base_url: str,
              timeout_s: float) -> MaxcoreError:
    """The core error for an SDK exception raised after the SDK's own retries."""
    where = f"tenant {tenant}, {base_url}"
    if isinstance(exc, openai.APITimeoutError):
        return RetryableError(f"OpenAI did not answer within {timeout_s:g}s ({where})")
    if isinstance(exc, openai.APIConnectionError):
        return RetryableError(f"cannot reach the OpenAI-compatible server ({where}): connection failed")
    if not isinstance(exc, openai.APIStatusError):
        return PermanentError(f"OpenAI client error ({where}): {type(exc).__name__}")
    status, code = exc.status_code, exc.code
    if isinstance(exc, openai.AuthenticationError):
        return PermanentError(f"OpenAI rejected the API key for tenant {tenant} "
                              f"({status} {code or exc.type or 'unauthorized'} from {base_url})")
    if isinstance(exc, openai.PermissionDeniedError):
        return PermanentError(f"OpenAI refused access for tenant {tenant} ({status} from {base_url}): "
                              f"{_upstream_message(exc)}")
    if isinstance(exc, openai.NotFoundError):
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
            retry_after=retry_after_of(exc.response.headers),
        )
    param = f", param {exc.param}" if exc.param else ""
    return PermanentError(f"OpenAI rejected the request ({status} {code or exc.type or ''}{param}; "
                          f"{where}): {_upstream_message(exc)}")
