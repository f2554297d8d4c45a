"""The inbox: where accepted messages wait for processing.

The webhook handler calls :meth:`Inbox.submit` and answers only after it returns.
Workers take messages out one conversation at a time and in arrival order, retry
retryable failures with backoff and put the rest in a dead-letter state.

This module holds what every inbox shares (the :class:`Inbox` protocol, its entries and
errors) and :func:`make_inbox`. :class:`maxcore.scheduler.WorkScheduler` holds the
serving logic once; a subclass says where the messages are kept.
:class:`maxcore.memory_inbox.MemoryInbox` keeps them in process memory (the CLI's chat,
tests); :class:`maxcore.durable_inbox.SqliteInbox` keeps them in SQLite so that a
message acknowledged to the provider survives a crash.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs

from .config.models import InboxConfig
from .errors import MaxcoreError
from .types import InboundMessage

Handler = Callable[[InboundMessage], Awaitable[Any]]
# tenant id -> messages per minute (None: unlimited)
RateLimit = Callable[[str], int | None]


class InboxFull(MaxcoreError):
    """Too many messages are waiting: the caller should answer 503 with Retry-After."""

    def __init__(self, pending: int, retry_after: int = 5) -> None:
        super().__init__(f"{pending} messages are waiting; try again in {retry_after}s")
        self.retry_after = retry_after


class InboxClosed(MaxcoreError):
    """The server is shutting down and accepts no new messages."""


@attrs.define
class Entry:
    """A message the inbox holds, with its store id and the attempts made so far."""

    id: int
    message: InboundMessage
    attempts: int = 0
    rate_counted: bool = False
    # When the inbox accepted it (wall clock): the age of the backlog in health.
    accepted_at: float = attrs.field(factory=time.time)
    # Stored by this process just now (not read back from the store): its first attempt
    # has no journal to read (maxcore.journal.FIRST_ATTEMPT).
    fresh: bool = False


@attrs.define
class DeadLetter:
    message: InboundMessage
    error: str
    attempts: int
    failed_at: float = attrs.field(factory=time.time)
    id: int = 0


class Inbox(Protocol):
    accepting: bool

    async def submit(self, message: InboundMessage) -> bool:
        """Record ``message``; True if new, False if already seen. Durable on return."""
        ...

    async def submit_dead(self, message: InboundMessage, reason: str) -> bool:
        """Record ``message`` straight as a dead letter (a body that cannot be processed)."""
        ...

    async def start(self, handler: Handler, rate_limit: RateLimit | None = None) -> None: ...
    async def stop(self, grace: float) -> None: ...
    async def drain(self, timeout: float) -> bool: ...
    def stats(self) -> dict[str, Any]: ...
    def health(self) -> tuple[str, list[str]]: ...


ROLES = ("all", "web", "worker")


def make_inbox(config: InboxConfig, data_dir: Any, role: str = "all") -> Inbox:
    """The inbox named by ``inbox.type`` in maxcore.yaml, for a process of ``role``."""
    if config.type == "memory":
        if role != "all":
            raise MaxcoreError(f"--role {role} needs inbox.type sqlite: the web and worker "
                               "processes share the inbox file")
        from .memory_inbox import MemoryInbox

        return MemoryInbox(config)
    from .durable_inbox import SqliteInbox

    return SqliteInbox(config, data_dir, role)
