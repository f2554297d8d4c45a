"""Retention: finished work does not pile up forever.

Every ``retention.purge_interval_s`` the server removes done inbox rows and their
journals older than ``retention.messages_days``, and conversation turns older than
``retention.history_days`` from every memory store that offers ``purge_history``.
Pending and dead messages keep their journals (a retry needs them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from loguru import logger

from .config.models import RetentionConfig
from .journal import JournalStore

DAY_S = 86400.0


class RetentionTask:
    """The background purge of one server process."""

    def __init__(self, config: RetentionConfig, journal: JournalStore,
                 memories: Callable[[], Sequence[Any]]) -> None:
        self.config = config
        self.journal = journal
        self.memories = memories
        self._task: asyncio.Task[None] | None = None
        self.purged: dict[str, int] = {"messages": 0, "history": 0}

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="retention-purge")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.purge_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - tried again at the next interval
                logger.warning("[RETENTION] purge failed: {}", exc)
            await asyncio.sleep(self.config.purge_interval_s)

    async def purge_once(self, now: float | None = None) -> dict[str, int]:
        """One pass; the rows removed per kind."""
        now = time.time() if now is None else now
        removed = {"messages": 0, "history": 0}
        if self.config.messages_days is not None:
            removed["messages"] = await self.journal.purge(now - self.config.messages_days * DAY_S)
        if self.config.history_days is not None:
            before = now - self.config.history_days * DAY_S
            for memory in self.memories():
                purge = getattr(memory, "purge_history", None)
                if purge is None:
                    continue
                try:
                    removed["history"] += int(await purge(before))
                except Exception as exc:  # noqa: BLE001 - one store failing does not stop the others
                    logger.bind(tenant=getattr(memory, "tenant", "-")).warning(
                        "[RETENTION] purging history failed: {}", exc)
        for kind, count in removed.items():
            self.purged[kind] += count
        if any(removed.values()):
            logger.info("[RETENTION] purged {} message/journal row(s), {} history row(s)",
                        removed["messages"], removed["history"])
        return removed
