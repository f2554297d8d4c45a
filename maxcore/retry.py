"""How failures are classified and how long to wait before the next attempt.

Retries never sleep in a worker: a connector raises, the inbox puts the conversation
back on a timer for :func:`backoff_delay` seconds. The delay before attempt ``n + 1`` is
capped exponential with "equal jitter": half of ``min(maximum, initial * 2**(n-1))`` for
sure, plus a random part up to the other half. The sure half is what lets
:func:`retry_span` promise how long a message survives an outage before it is dead
(the inbox defaults ride out at least one hour); the random half spreads the retries of
messages that failed together.
"""

from __future__ import annotations

import random

import attrs
import httpx

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


def backoff_cap(attempt: int, initial: float, maximum: float) -> float:
    """The longest wait after failed attempt ``attempt`` (1-based), without Retry-After."""
    return min(maximum, initial * 2 ** min(attempt - 1, 62))


def backoff_delay(attempt: int, initial: float, maximum: float, retry_after: float | None) -> float:
    """The wait after failed attempt ``attempt`` (1-based), at least ``retry_after``.

    ``maximum`` caps the exponential part only: the upstream's Retry-After is honoured
    even when longer (up to an hour).
    """
    cap = backoff_cap(attempt, initial, maximum)
    delay = cap / 2 + random.uniform(0, cap / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CEILING_S))
    return delay


@attrs.frozen
class RetrySpan:
    """How long a message that fails every attempt stays alive before it is dead."""

    shortest_s: float
    longest_s: float
    waits: int


def retry_span(initial: float, maximum: float, max_attempts: int) -> RetrySpan:
    """The total wait between the first and the last of ``max_attempts`` attempts."""
    caps = [backoff_cap(n, initial, maximum) for n in range(1, max_attempts)]
    return RetrySpan(shortest_s=sum(caps) / 2, longest_s=sum(caps), waits=len(caps))
