"""The error vocabulary shared by the core and every plugin.

Connectors raise these so the core can decide what happens next without knowing the
upstream: retry the message later, give up on it, or show the model what went wrong.
Messages must never contain secrets: say *which* credential failed, never its value.
"""

from __future__ import annotations


class MaxcoreError(Exception):
    """Base class of every error maxcore raises on purpose."""


class RetryableError(MaxcoreError):
    """A transient upstream failure (timeout, connection error, 429, 5xx).

    The message is retried later with backoff; ``retry_after`` (seconds), when the
    upstream said so, is honoured as the minimum wait.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(MaxcoreError):
    """A failure that retrying cannot fix (bad credentials, missing model, 4xx).

    The message ends in the dead-letter state with this text as its reason.
    """


class ToolError(MaxcoreError):
    """A problem the model can fix: bad arguments, value not allowed, not found.

    The text is returned to the model as the tool's result; it is never a crash.
    """


class WebhookError(MaxcoreError):
    """An inbound request that must be refused with an HTTP status and a clear reason.

    ``headers`` go with the answer (``Retry-After`` with a 429, for instance).
    """

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


class PluginError(MaxcoreError):
    """Plugins that cannot work together (duplicate connector names, bad hooks)."""
