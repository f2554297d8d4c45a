"""An inbox in process memory: not durable across restarts (the CLI's chat, tests)."""

from __future__ import annotations

import collections

from .config.models import InboxConfig
from .inbox import DeadLetter, Entry
from .scheduler import WorkScheduler
from .types import InboundMessage


class MemoryInbox(WorkScheduler):
    """In-process inbox: not durable across restarts (the CLI's chat, tests)."""

    kind = "memory"

    def __init__(self, config: InboxConfig, *, remember_keys: int = 100_000) -> None:
        super().__init__(config)
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._remember_keys = remember_keys
        self._next_id = 0
        self.dead: list[DeadLetter] = []

    async def _store_add(self, message: InboundMessage) -> Entry | None:
        key = message.dedupe_key
        if key in self._seen:
            return None
        self._seen[key] = None
        if len(self._seen) > self._remember_keys:
            self._seen.popitem(last=False)
        self._next_id += 1
        entry = Entry(self._next_id, message)
        self._accept(entry)
        return entry

    async def _store_done(self, entry: Entry) -> None:
        return None

    async def _store_failed(self, entry: Entry, error: str) -> None:
        return None

    async def _store_dead(self, entry: Entry, error: str) -> None:
        self.dead.append(DeadLetter(entry.message, error, entry.attempts, id=entry.id))

    async def _store_dead_letter(self, message: InboundMessage, reason: str) -> bool:
        if message.dedupe_key in self._seen:
            return False
        self._seen[message.dedupe_key] = None
        self._next_id += 1
        self.dead.append(DeadLetter(message, reason, 0, id=self._next_id))
        return True
