"""Ships the audit outbox to each tenant's memory store, in batches, until it is empty.

Audit rows are committed with the journal entry of the step that produced them (see
:mod:`maxcore.journal`); this task sends them on. A row leaves the outbox only after its
store accepted it, and stores insert idempotently on the row's id, so a crash between
the two sends the row again without doubling it. A failing store is retried with capped
backoff; its rows wait, other tenants' rows go on.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Callable
from typing import Any

from loguru import logger

from .journal import JournalStore, OutboxRow
from .types import AuditEntry

# Rows per read of the outbox; a store receives one tenant's share as one batch.
BATCH_ROWS = 500
# After a wake-up, wait this long so concurrent messages share the batch.
LINGER_S = 0.05
# Rows left by an earlier process (or a failed batch) are looked at this often.
POLL_S = 2.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 60.0

MemoryOf = Callable[[str], Any]  # tenant id -> its Memory connector (None if not configured)


class AuditShipper:
    """One background task per process: outbox → ``memory.audit_batch``."""

    def __init__(self, store: JournalStore, memory_of: MemoryOf, *, linger_s: float = LINGER_S,
                 poll_s: float = POLL_S) -> None:
        self.store = store
        self.memory_of = memory_of
        self.linger_s = linger_s
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures: collections.Counter[str] = collections.Counter()
        self._not_before: dict[str, float] = {}
        self._unknown_warned: set[str] = set()
        self.shipped = 0
        self.batches = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="audit-outbox")

    def notify(self) -> None:
        """New rows were committed: ship soon."""
        self._wake.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Ship what can be shipped within ``timeout``, then stop (the rest stays queued)."""
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except (TimeoutError, Exception) as exc:  # noqa: BLE001 - the rows stay in the outbox
            logger.warning("[AUDIT] outbox not empty at shutdown ({}); shipped on the next start",
                           type(exc).__name__)

    async def flush(self) -> None:
        """Ship until the outbox holds only rows whose store refuses them right now."""
        self._not_before.clear()
        while await self.ship_once() > 0:
            pass

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
                await asyncio.sleep(self.linger_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                while await self.ship_once() >= BATCH_ROWS:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the outbox itself failed: try later
                logger.warning("[AUDIT] reading the outbox failed: {}", exc)

    async def ship_once(self) -> int:
        """Ship one read of the outbox; the number of rows that left it."""
        loop = asyncio.get_running_loop()
        # A failing store's rows wait for their retry time without holding back the others.
        waiting = [t for t, at in self._not_before.items() if at > loop.time()]
        waiting += [t for t in self._unknown_warned if self.memory_of(t) is None]
        rows = await self.store.outbox(BATCH_ROWS, skip=waiting)
        by_tenant: dict[str, list[OutboxRow]] = collections.defaultdict(list)
        for row in rows:
            by_tenant[row.tenant].append(row)
        left = 0
        for tenant, tenant_rows in by_tenant.items():
            memory = self.memory_of(tenant)
            if memory is None:
                if tenant not in self._unknown_warned:
                    self._unknown_warned.add(tenant)
                    logger.warning("[AUDIT] {} audit row(s) of tenant {} wait: it is not configured",
                                   len(tenant_rows), tenant)
                continue
            entries: list[AuditEntry] = [row.entry for row in tenant_rows]
            seqs = [row.seq for row in tenant_rows]
            try:
                await memory.audit_batch(entries)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - kept and retried, never dropped
                self._failures[tenant] += 1
                delay = _backoff(self._failures[tenant])
                self._not_before[tenant] = loop.time() + delay
                logger.bind(tenant=tenant).warning(
                    "[AUDIT] shipping {} audit row(s) failed ({}: {}); next try in {:.1f}s",
                    len(entries), type(exc).__name__, exc, delay)
                await self.store.ship_failed(seqs, f"{type(exc).__name__}: {exc}")
                continue
            self._failures.pop(tenant, None)
            self._not_before.pop(tenant, None)
            await self.store.shipped(seqs)
            self.shipped += len(seqs)
            self.batches += 1
            left += len(seqs)
        return left

    def stats(self) -> dict[str, Any]:
        return {"shipped": self.shipped, "batches": self.batches,
                "failing_tenants": sorted(self._not_before)}


def _backoff(failures: int) -> float:
    ceiling = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** min(failures - 1, 16))
    return random.uniform(ceiling / 2, ceiling)
