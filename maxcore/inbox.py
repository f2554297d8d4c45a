"""The inbox: where accepted messages wait for processing.

The webhook handler calls :meth:`Inbox.submit` and answers only after it returns.
Workers take messages out, one conversation at a time and in arrival order, retry
retryable failures with backoff and put the rest in a dead-letter list.

:class:`MemoryInbox` keeps everything in process memory: fine for the demo and the
CLI, not durable across restarts. A durable implementation plugs into the same
:class:`Inbox` protocol.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
from loguru import logger

from .config.models import InboxConfig
from .errors import MaxcoreError, RetryableError
from .retry import backoff_delay, is_retryable
from .types import InboundMessage

Handler = Callable[[InboundMessage], Awaitable[Any]]


class InboxFull(MaxcoreError):
    """Too many messages are waiting: the caller should answer 503 with Retry-After."""

    def __init__(self, pending: int, retry_after: int = 5) -> None:
        super().__init__(f"{pending} messages are waiting; try again in {retry_after}s")
        self.retry_after = retry_after


class InboxClosed(MaxcoreError):
    """The server is shutting down and accepts no new messages."""


@attrs.define
class DeadLetter:
    message: InboundMessage
    error: str
    attempts: int
    failed_at: float = attrs.field(factory=time.time)


class Inbox(Protocol):
    accepting: bool

    async def submit(self, message: InboundMessage) -> bool:
        """Record ``message``; True if new, False if already seen. Durable on return."""
        ...

    async def start(self, handler: Handler) -> None: ...
    async def stop(self, grace: float) -> None: ...
    def stats(self) -> dict[str, Any]: ...


class MemoryInbox:
    """In-process inbox: per-conversation FIFO queues served by N workers."""

    def __init__(self, config: InboxConfig, *, remember_keys: int = 100_000) -> None:
        self.config = config
        self.accepting = True
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._remember_keys = remember_keys
        self._queues: dict[str, collections.deque[InboundMessage]] = {}
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._active: set[str] = set()
        self._pending = 0
        self._workers: list[asyncio.Task[None]] = []
        self._handler: Handler | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.dead: list[DeadLetter] = []
        self.done = 0

    async def submit(self, message: InboundMessage) -> bool:
        if not self.accepting:
            raise InboxClosed("the server is shutting down")
        key = message.dedupe_key
        if key in self._seen:
            return False
        if self._pending >= self.config.max_pending:
            raise InboxFull(self._pending)
        self._seen[key] = None
        if len(self._seen) > self._remember_keys:
            self._seen.popitem(last=False)
        conversation = message.conversation_key
        queue = self._queues.setdefault(conversation, collections.deque())
        queue.append(message)
        self._pending += 1
        self._idle.clear()
        if conversation not in self._active and len(queue) == 1:
            self._ready.put_nowait(conversation)
        return True

    async def start(self, handler: Handler) -> None:
        self._handler = handler
        for index in range(self.config.workers):
            self._workers.append(asyncio.create_task(self._work(), name=f"inbox-worker-{index}"))

    async def _work(self) -> None:
        while True:
            conversation = await self._ready.get()
            self._active.add(conversation)
            try:
                queue = self._queues.get(conversation)
                while queue:
                    message = queue[0]
                    await self._process(message)
                    queue.popleft()
                    self._pending -= 1
                if queue is not None and not queue:
                    self._queues.pop(conversation, None)
            finally:
                self._active.discard(conversation)
                if self._pending == 0:
                    self._idle.set()

    async def _process(self, message: InboundMessage) -> None:
        assert self._handler is not None
        log = logger.bind(tenant=message.tenant, message_id=message.message_id)
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._handler(message)
                self.done += 1
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure ends retried or dead
                retryable = is_retryable(exc)
                if not retryable or attempt >= self.config.max_attempts:
                    reason = f"{type(exc).__name__}: {exc}"
                    log.error("[PIPELINE] message dead after {} attempt(s): {}", attempt, reason)
                    self.dead.append(DeadLetter(message, reason, attempt))
                    return
                retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
                delay = backoff_delay(
                    attempt, self.config.backoff_initial_s, self.config.backoff_max_s, retry_after
                )
                log.warning(
                    "[PIPELINE] attempt {} failed ({}: {}); retrying in {:.2f}s",
                    attempt, type(exc).__name__, exc, delay,
                )
                await asyncio.sleep(delay)

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is pending; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self, grace: float) -> None:
        self.accepting = False
        drained = await self.drain(grace)
        if not drained:
            logger.warning("[PIPELINE] {} message(s) still pending at shutdown", self._pending)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "type": "memory", "pending": self._pending, "done": self.done,
            "dead": len(self.dead), "accepting": self.accepting,
        }


def make_inbox(config: InboxConfig, data_dir: Any) -> Inbox:
    """The inbox named by ``inbox.type`` in maxcore.yaml."""
    if config.type == "memory":
        return MemoryInbox(config)
    # Resolved lazily so the core runs without the durable inbox's module.
    from .durable_inbox import SqliteInbox  # type: ignore[import-not-found]

    return SqliteInbox(config, data_dir)
