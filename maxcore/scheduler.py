"""Serving an inbox's messages: per-conversation queues, workers, retries, rate limits.

:class:`WorkScheduler` holds that logic once for every inbox; a subclass stores the
messages (``_store_*``) and reads them back (``_recover``).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger

from .config.models import InboxConfig
from .errors import MaxcoreError, RetryableError
from .inbox import Entry, Handler, InboxClosed, InboxFull, RateLimit
from .journal import FIRST_ATTEMPT
from .retry import backoff_delay, is_retryable
from .types import InboundMessage

RATE_WINDOW_S = 60.0
# Health says "degraded" when the oldest message waiting is older than this, or when a
# worker task ended and was replaced less than RESTART_MEMORY_S ago.
STALE_PENDING_S = 300.0
RESTART_MEMORY_S = 60.0
# How long a worker waits before trying again when the store itself failed (the
# message is kept; nothing is marked), and how often it tries to store an outcome.
STORE_RETRY_S = 1.0
RECORD_TRIES = 5


class RateWindow:
    """Messages started per tenant in the last minute (a sliding log, exact)."""

    def __init__(self) -> None:
        self._starts: dict[str, collections.deque[float]] = {}

    def delay(self, tenant: str, limit: int | None, now: float) -> float:
        """0 and count this start if ``tenant`` is under ``limit``; else seconds to wait."""
        if limit is None or limit <= 0:  # 0 or less is read as "no limit", never as "stop"
            return 0.0
        starts = self._starts.setdefault(tenant, collections.deque())
        while starts and starts[0] <= now - RATE_WINDOW_S:
            starts.popleft()
        if len(starts) >= limit:
            return starts[0] + RATE_WINDOW_S - now
        starts.append(now)
        return 0.0


class WorkScheduler:
    """Per-conversation FIFO queues served by N workers; storage is the subclass's job.

    A conversation is in at most one place at a time: the ready queue, a worker, or a
    timer (retry backoff, rate limit). So its messages run one at a time, in order,
    and a conversation that waits never holds a worker.
    """

    kind = "abstract"
    # A durable store keeps what is left at shutdown; a volatile one must drain it all.
    durable = False

    def __init__(self, config: InboxConfig) -> None:
        self.config = config
        self.accepting = True
        self._queues: dict[str, collections.deque[Entry]] = {}
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._scheduled: set[str] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._pending = 0
        self._in_flight = 0
        self._workers: list[asyncio.Task[None]] = []
        self._handler: Handler | None = None
        self._rate_limit: RateLimit = lambda _tenant: None
        self._rates = RateWindow()
        self._idle = asyncio.Event()
        self._idle.set()
        self._quiet = asyncio.Event()  # no message is being handled right now
        self._quiet.set()
        self._stopping = False
        self.done = 0
        self.dead_count = 0
        self.worker_restarts = 0
        self._last_restart: float | None = None

    # -- storage: implemented by subclasses ----------------------------------------
    async def _store_add(self, message: InboundMessage) -> Entry | None:
        """Persist ``message`` and enqueue it (in store order); None if a duplicate."""
        raise NotImplementedError

    async def _store_started(self, entry: Entry) -> None:
        """An attempt starts (``entry.attempts`` counts it). Stores that survive a crash
        record it, so a message that kills the process cannot be retried forever."""
        return None

    async def _store_done(self, entry: Entry) -> None:
        raise NotImplementedError

    async def _store_failed(self, entry: Entry, error: str) -> None:
        """An attempt failed and will be retried: keep the attempt count and the error."""
        raise NotImplementedError

    async def _store_dead(self, entry: Entry, error: str) -> None:
        raise NotImplementedError

    async def _store_dead_letter(self, message: InboundMessage, reason: str) -> bool:
        """Persist ``message`` in the dead state directly; False if a duplicate."""
        raise NotImplementedError

    async def _recover(self) -> list[Entry]:
        """Messages accepted earlier and not finished, oldest first."""
        return []

    async def _close_store(self) -> None:
        return None

    # -- intake --------------------------------------------------------------------
    def _check_open(self) -> None:
        if not self.accepting:
            raise InboxClosed("the server is shutting down")
        if self._pending >= self.config.max_pending:
            raise InboxFull(self._pending, self.config.full_retry_after_s)

    async def submit(self, message: InboundMessage) -> bool:
        self._check_open()
        return await self._store_add(message) is not None

    async def submit_dead(self, message: InboundMessage, reason: str) -> bool:
        """Keep ``message`` as a dead letter at once (never processed); False if known."""
        if not self.accepting:
            raise InboxClosed("the server is shutting down")
        added = await self._store_dead_letter(message, reason)
        if added:
            self.dead_count += 1
            logger.bind(tenant=message.tenant, message_id=message.message_id).warning(
                "[PIPELINE] {} body kept as a dead letter: {}", message.channel, reason
            )
        return added

    def _accept(self, entry: Entry) -> None:
        """A new message is stored: say so (before any worker starts on it), then queue it."""
        message = entry.message
        logger.bind(tenant=message.tenant, message_id=message.message_id).info(
            "[PIPELINE] message accepted from chat {} (inbox #{})", message.chat_id, entry.id
        )
        self._enqueue(entry)

    def _enqueue(self, entry: Entry) -> None:
        conversation = entry.message.conversation_key
        self._queues.setdefault(conversation, collections.deque()).append(entry)
        self._pending += 1
        self._idle.clear()
        if conversation not in self._scheduled:
            self._scheduled.add(conversation)
            self._ready.put_nowait(conversation)

    # -- workers -------------------------------------------------------------------
    async def start(self, handler: Handler, rate_limit: RateLimit | None = None) -> None:
        self._handler = handler
        if rate_limit is not None:
            self._rate_limit = rate_limit
        self._stopping = False
        recovered = await self._recover()
        for entry in recovered:
            self._enqueue(entry)
        if recovered:
            logger.info("[PIPELINE] resuming {} message(s) accepted before the last stop", len(recovered))
        for index in range(self.config.workers):
            self._spawn_worker(index)

    # -- the supervisor: a worker task that ends is replaced -------------------------
    def _spawn_worker(self, index: int) -> None:
        task = asyncio.create_task(self._work(), name=f"inbox-worker-{index}")
        self._workers.append(task)
        task.add_done_callback(lambda done: self._worker_ended(index, done))

    def _worker_ended(self, index: int, task: asyncio.Task[None]) -> None:
        if task in self._workers:
            self._workers.remove(task)
        if self._stopping:
            return
        error = None if task.cancelled() else task.exception()
        self.worker_restarts += 1
        self._last_restart = time.monotonic()
        logger.opt(exception=error).error(
            "[INBOX] worker {} ended ({}); a new one takes its place", index,
            f"{type(error).__name__}: {error}" if error else "returned",
        )
        self._spawn_worker(index)

    def _later(self, delay: float, conversation: str) -> None:
        def wake() -> None:
            self._timers.discard(handle)
            if not self._stopping:
                self._ready.put_nowait(conversation)

        handle = asyncio.get_running_loop().call_later(max(delay, 0.0), wake)
        self._timers.add(handle)

    async def _work(self) -> None:
        while True:
            conversation = await self._ready.get()
            if self._stopping:
                continue
            try:
                await self._turn(conversation)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a worker survives anything a message does
                # The conversation stays scheduled: it is tried again, never forgotten.
                logger.opt(exception=exc).error(
                    "[INBOX] unexpected error serving a conversation ({}: {}); retrying in {:g}s",
                    type(exc).__name__, exc, STORE_RETRY_S,
                )
                self._later(STORE_RETRY_S, conversation)

    async def _turn(self, conversation: str) -> None:
        """Serve the first message of ``conversation`` (or put it on a timer)."""
        queue = self._queues[conversation]
        entry = queue[0]
        if not entry.rate_counted:
            wait = self._rates.delay(
                entry.message.tenant, self._rate_limit(entry.message.tenant), time.monotonic()
            )
            if wait > 0:
                logger.bind(tenant=entry.message.tenant, message_id=entry.message.message_id).info(
                    "[PIPELINE] tenant over its messages_per_minute; message waits {:.1f}s", wait
                )
                self._later(wait, conversation)
                return
            entry.rate_counted = True
        self._in_flight += 1
        self._quiet.clear()
        try:
            retry_in = await self._attempt(entry)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._quiet.set()
        if retry_in is not None:
            self._later(retry_in, conversation)
            return
        queue.popleft()
        self._pending -= 1
        if queue:
            # Back of the line: one message per turn keeps conversations fair.
            self._ready.put_nowait(conversation)
        else:
            del self._queues[conversation]
            self._scheduled.discard(conversation)
        if self._pending == 0:
            self._idle.set()

    async def _attempt(self, entry: Entry) -> float | None:
        """Run the handler once; the delay before the next try, or None when finished."""
        assert self._handler is not None
        message = entry.message
        log = logger.bind(tenant=message.tenant, message_id=message.message_id)
        entry.attempts += 1
        try:
            await self._store_started(entry)
        except Exception as exc:  # noqa: BLE001 - nothing ran yet: try the message again later
            entry.attempts -= 1
            log.opt(exception=exc).error(
                "[INBOX] could not record the start of an attempt ({}); retrying in {:g}s",
                exc, STORE_RETRY_S,
            )
            return STORE_RETRY_S
        first = FIRST_ATTEMPT.set(entry.fresh and entry.attempts == 1)
        try:
            await self._handler(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure ends retried or dead
            return await self._failed(entry, exc, log)
        finally:
            FIRST_ATTEMPT.reset(first)
        await self._record(log, "done", self._store_done, entry)
        self.done += 1
        return None

    async def _failed(self, entry: Entry, exc: Exception, log: Any) -> float | None:
        reason = f"{type(exc).__name__}: {exc}"
        # A bug (not an error a connector raised on purpose) gets its traceback in the log.
        trace = log.opt(exception=exc) if not isinstance(exc, MaxcoreError) else log
        if not is_retryable(exc) or entry.attempts >= self.config.max_attempts:
            trace.error("[PIPELINE] message dead after {} attempt(s): {}", entry.attempts, reason)
            await self._record(log, "dead", self._store_dead, entry, reason)
            self.dead_count += 1
            return None
        retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
        delay = backoff_delay(
            entry.attempts, self.config.backoff_initial_s, self.config.backoff_max_s, retry_after
        )
        trace.warning(
            "[PIPELINE] attempt {}/{} failed ({}); retrying in {:.2f}s",
            entry.attempts, self.config.max_attempts, reason, delay,
        )
        await self._record(log, "failed", self._store_failed, entry, reason)
        return delay

    async def _record(
        self, log: Any, outcome: str, store: Callable[..., Awaitable[None]], entry: Entry, *args: Any
    ) -> None:
        """Store an outcome, trying again while the store fails: the handler is not rerun
        for an outcome already reached. After a few tries the outcome is logged and the
        worker moves on; the row stays pending and the message is resumed on the next
        start (the journal keeps its effects from repeating)."""
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                await store(entry, *args)
                return
            except Exception as exc:  # noqa: BLE001 - the worker must go on
                if attempt == RECORD_TRIES or self._stopping:
                    log.opt(exception=exc).error(
                        "[INBOX] outcome {} of message #{} not stored ({}); it is resumed on "
                        "the next start", outcome, entry.id, exc,
                    )
                    return
                log.warning("[INBOX] storing outcome {} failed ({}); trying again", outcome, exc)
                await asyncio.sleep(STORE_RETRY_S * attempt)

    # -- shutdown ------------------------------------------------------------------
    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is pending; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self, grace: float) -> None:
        """Refuse new messages, let work finish within ``grace``, keep the rest."""
        self.accepting = False
        if self.durable:
            # Only what is being handled now finishes; the backlog waits in the store.
            self._stopping = True
            try:
                if self._in_flight:
                    await asyncio.wait_for(self._quiet.wait(), grace)
            except TimeoutError:
                logger.warning("[PIPELINE] {} message(s) still running after {}s; they will be "
                               "resumed on the next start", self._in_flight, grace)
        elif not await self.drain(grace):
            logger.warning("[PIPELINE] {} message(s) still pending at shutdown", self._pending)
        self._stopping = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        if self._pending:
            logger.info("[PIPELINE] {} message(s) left pending for the next start", self._pending)
        await self._close_store()

    def oldest_pending_s(self, now: float | None = None) -> float:
        """Age in seconds of the oldest message not finished yet (0 when none)."""
        heads = [queue[0].accepted_at for queue in self._queues.values() if queue]
        return max(0.0, (now or time.time()) - min(heads)) if heads else 0.0

    def workers_alive(self) -> int:
        return sum(1 for task in self._workers if not task.done())

    def health(self) -> tuple[str, list[str]]:
        """("ok" | "degraded" | "stopping", reasons), from process state only."""
        if not self.accepting:
            return "stopping", ["the server is shutting down"]
        reasons: list[str] = []
        if self._handler is not None:
            alive = self.workers_alive()
            if alive < self.config.workers:
                reasons.append(f"{self.config.workers - alive} of {self.config.workers} inbox "
                               "worker(s) not running")
        if self._last_restart is not None and time.monotonic() - self._last_restart < RESTART_MEMORY_S:
            reasons.append(f"an inbox worker was replaced less than {RESTART_MEMORY_S:g}s ago "
                           f"({self.worker_restarts} replacement(s) since start; see the log)")
        oldest = self.oldest_pending_s()
        if oldest > STALE_PENDING_S:
            reasons.append(f"the oldest pending message has waited {oldest:.0f}s "
                           f"(more than {STALE_PENDING_S:g}s)")
        return ("degraded" if reasons else "ok"), reasons

    def stats(self) -> dict[str, Any]:
        return {
            "type": self.kind, "pending": self._pending, "running": self._in_flight,
            "done": self.done, "dead": self.dead_count, "accepting": self.accepting,
            "workers": self.workers_alive(), "worker_restarts": self.worker_restarts,
            "oldest_pending_s": round(self.oldest_pending_s(), 3),
        }
