"""How failures are classified and how long to wait before the next attempt."""

from __future__ import annotations

import httpx
from tenacity import RetryCallState, wait_random_exponential

from .errors import PermanentError, RetryableError, ToolError


def is_retryable(exc: BaseException) -> bool:
    """Timeouts, connection errors, 429 and 5xx are worth another try; the rest is not."""
    if isinstance(exc, RetryableError):
        return True
    if isinstance(exc, PermanentError | ToolError):
        return False
    if isinstance(exc, httpx.TimeoutException | httpx.TransportError | TimeoutError | ConnectionError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    # Unknown errors: bugs or surprises. Retried (bounded) so a transient cause heals,
    # then dead-lettered with the error text.
    return True


# An upstream asking for more than this is not waited for in full: the message is
# retried then, and the upstream may ask again.
RETRY_AFTER_CEILING_S = 3600.0


def backoff_delay(attempt: int, initial: float, maximum: float, retry_after: float | None) -> float:
    """Full-jitter exponential delay for ``attempt`` (1-based), at least ``retry_after``.

    ``maximum`` caps the exponential part only: the upstream's Retry-After is honoured
    even when longer (up to an hour).
    """
    wait = wait_random_exponential(multiplier=initial, max=maximum)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    delay = float(wait(state))
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CEILING_S))
    return delay
