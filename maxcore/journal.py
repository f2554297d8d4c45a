"""The per-message journal: every step of a message recorded before the next one runs.

A step is a model reply, a tool result, a send, the memory the message was answered
with, or the final history append. Its key is the step's kind plus a hash of the step's
*request* (the model request, the tool name and arguments, the text and chat of a send),
and an occurrence number when the same request comes twice in one message. A replay after
a crash therefore finds the model's recorded replies for the same requests, follows the
same path and gets recorded tool results back instead of running the tools again.

Steps without an outside effect (the memory read, a model reply) are *noted*: kept in
memory and written in the commit of the next step that must be durable before it runs
(a send's start, a tool result), or right before a tool runs. A crash in between loses
only work that is safe to redo (reading memory, asking the model again), and a message
costs a few commits instead of one per step. A finished step is queued for the next
commit without waiting for it: what the message writes next (the next effect's start,
the inbox's ``done``) is queued after it, so shares its commit or follows it.

Audit rows are written in the same commit as the journal entry of the step that produced
them, into an outbox that :mod:`maxcore.audit_outbox` ships to the memory store in
batches. The SQLite store (:mod:`maxcore.journal_sqlite`) lives in the inbox's database;
:class:`MemoryJournalStore` keeps everything in process memory (the CLI chat, tests).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import attrs
from loguru import logger

from .types import AuditEntry, InboundMessage, hash_chat_id

# Set by the inbox while it runs the first attempt of a message it stored itself a
# moment ago: no journal can exist for it yet (its key was new to the inbox, and a
# journal is purged with or before its inbox row), so opening it reads nothing.
FIRST_ATTEMPT: contextvars.ContextVar[bool] = contextvars.ContextVar("first_attempt", default=False)

STARTED = "started"
DONE = "done"
# The step kinds that are sends (their done result holds the provider's message_id).
SEND_STEPS = ("reply:", "tool_send:")


def request_hash(request: Any) -> str:
    """A stable hash of a JSON-able request (key order and whitespace do not matter)."""
    text = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    # surrogatepass: a lone surrogate (a plugin's text) hashes instead of failing the message.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@attrs.frozen
class StepRecord:
    state: str
    result: dict[str, Any] | None
    started_at: float


@attrs.frozen
class JournalWrite:
    """One step's record (``step`` None: audit rows alone), as one statement of a commit."""

    step: str | None
    state: str
    result: dict[str, Any] | None
    audits: Sequence[AuditEntry] = ()


@attrs.frozen
class OutboxRow:
    """An audit row waiting to be shipped to the tenant's memory store."""

    seq: int
    tenant: str
    entry: AuditEntry
    attempts: int = 0


class JournalStore(Protocol):
    """Where journals and the audit outbox are kept."""

    async def load(self, message_key: str) -> dict[str, StepRecord]: ...

    async def record(
        self, message: InboundMessage, step: str | None, state: str,
        result: dict[str, Any] | None, audits: Sequence[AuditEntry],
    ) -> float:
        """Write one step (or, with ``step`` None, audit rows alone) in one commit;
        returns the step's start time (kept from an earlier ``started`` record)."""
        ...

    async def record_batch(self, message: InboundMessage, writes: Sequence[JournalWrite]) -> list[float]:
        """Write ``writes`` in order in one commit; each step's start time."""
        ...

    def record_later(self, message: InboundMessage,
                     writes: Sequence[JournalWrite]) -> Awaitable[list[float]]:
        """Queue ``writes`` for one commit now, without waiting for it: what the store
        writes after this call commits with them or later."""
        ...

    async def clear(self, message_key: str, step: str) -> None:
        """Forget a ``started`` step that certainly did not happen (the provider refused it)."""
        ...

    async def sent_ids(self, tenant: str, chat_id: str, since: float) -> set[str]:
        """Provider ids of the sends to ``chat_id`` recorded done since ``since`` (any message)."""
        ...

    async def outbox(self, limit: int, skip: Sequence[str] = ()) -> list[OutboxRow]:
        """The oldest rows waiting, leaving out the tenants in ``skip`` (their store is failing)."""
        ...

    async def shipped(self, seqs: Sequence[int]) -> None: ...
    async def ship_failed(self, seqs: Sequence[int], error: str) -> None: ...
    async def outbox_size(self) -> int: ...

    async def forget(self, tenant: str, chat_id: str) -> int:
        """Erase a contact from journals, the outbox's details and stored messages."""
        ...

    async def purge(self, before: float) -> int:
        """Remove journals (and finished stored messages) last touched before ``before``."""
        ...


class MessageJournal:
    """The journal of one message: loaded once when processing starts, then written
    step by step (one conversation runs in one place at a time, so it stays current)."""

    def __init__(self, store: JournalStore, message: InboundMessage,
                 records: dict[str, StepRecord], on_audit: Callable[[], None] | None = None) -> None:
        self.store = store
        self.message = message
        self.records = records
        self._on_audit = on_audit or (lambda: None)
        self._seen: dict[str, int] = {}
        self._noted: list[JournalWrite] = []
        self.replayed = 0  # steps answered from the journal in this run

    @classmethod
    async def open(cls, store: JournalStore, message: InboundMessage,
                   on_audit: Callable[[], None] | None = None) -> MessageJournal:
        """The message's journal as stored (empty without a read on a first attempt)."""
        records = {} if FIRST_ATTEMPT.get() else await store.load(message.dedupe_key)
        return cls(store, message, records, on_audit)

    def step(self, kind: str, request: Any = None) -> str:
        """The key of the next step of ``kind`` for ``request`` in this message."""
        base = kind if request is None else f"{kind}:{request_hash(request)}"
        occurrence = self._seen.get(base, 0)
        self._seen[base] = occurrence + 1
        return base if occurrence == 0 else f"{base}:{occurrence}"

    def done(self, step: str) -> dict[str, Any] | None:
        record = self.records.get(step)
        if record is None or record.state != DONE:
            return None
        self.replayed += 1
        return record.result or {}

    def started(self, step: str) -> StepRecord | None:
        record = self.records.get(step)
        return record if record is not None and record.state == STARTED else None

    async def _write(self, write: JournalWrite | None = None) -> float:
        """The noted steps, then ``write``, in one commit; the last one's start time."""
        writes = [*self._noted, *([write] if write is not None else [])]
        self._noted = []
        started = await self.store.record_batch(self.message, writes)
        if any(w.audits for w in writes):
            self._on_audit()
        return started[-1]

    async def start(self, step: str, request: dict[str, Any]) -> float:
        """Record that a step with an outside effect is about to run (with what it will
        do, for a later check); its start time."""
        started_at = await self._write(JournalWrite(step, STARTED, request))
        self.records[step] = StepRecord(STARTED, request, started_at)
        return started_at

    def finish(self, step: str, result: dict[str, Any], audits: Sequence[AuditEntry] = ()) -> None:
        """Record a step's outcome (and anything noted) in the next commit, without waiting
        for it. Whatever this message writes next is queued after it, so it commits with
        or after this record: the next step that must be durable before it runs (a
        send's start, the flush before a tool) and the inbox's outcome for the message.
        The message goes on meanwhile (the model's next turn needs no commit); a crash
        before the commit repeats this step, as a crash just before a waited commit would."""
        writes = [*self._noted, JournalWrite(step, DONE, result, audits)]
        self._noted = []
        earlier = self.records.get(step)
        self.records[step] = StepRecord(DONE, result, earlier.started_at if earlier else time.time())
        pending = asyncio.ensure_future(self.store.record_later(self.message, writes))
        pending.add_done_callback(functools.partial(_report_lost, step))
        if any(w.audits for w in writes):
            pending.add_done_callback(lambda _: self._on_audit())

    def note(self, step: str, result: dict[str, Any], audits: Sequence[AuditEntry] = ()) -> None:
        """Record the outcome of a step without an outside effect, with the next durable
        write (or :meth:`flush`): a crash before then repeats only this step."""
        earlier = self.records.get(step)
        self.records[step] = StepRecord(DONE, result, earlier.started_at if earlier else time.time())
        self._noted.append(JournalWrite(step, DONE, result, audits))

    async def flush(self) -> None:
        """Make the noted steps durable (before something with an outside effect runs)."""
        if self._noted:
            await self._write()

    async def clear(self, step: str) -> None:
        await self.flush()
        await self.store.clear(self.message.dedupe_key, step)
        self.records.pop(step, None)

    async def audit(self, audits: Sequence[AuditEntry]) -> None:
        """Audit rows that belong to no step (a veto, a fallback)."""
        if audits:
            await self._write(JournalWrite(None, DONE, None, audits))


def _report_lost(step: str, future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("[JOURNAL] step {} of a message was not recorded ({}): a replay "
                       "repeats it", step.split(":", 1)[0], future.exception())


def pseudonymise(details: dict[str, Any], chat_id: str) -> dict[str, Any]:
    """``details`` without the raw chat id (a hash instead), as the audit log keeps it."""
    if details.get("chat_id") != chat_id:
        return details
    out = {k: v for k, v in details.items() if k != "chat_id"}
    out["chat_hash"] = hash_chat_id(chat_id)
    return out


@attrs.define
class _MemoryStep:
    tenant: str
    chat_id: str
    record: StepRecord
    updated_at: float


class MemoryJournalStore:
    """Journals and outbox in process memory: for inboxes that do not survive a restart."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, str], _MemoryStep] = {}
        self._outbox: dict[int, OutboxRow] = {}
        self._chats: dict[int, str] = {}
        self._seq = 0

    async def load(self, message_key: str) -> dict[str, StepRecord]:
        return {step: value.record for (key, step), value in self._steps.items() if key == message_key}

    async def record(
        self, message: InboundMessage, step: str | None, state: str,
        result: dict[str, Any] | None, audits: Sequence[AuditEntry],
    ) -> float:
        return self._record(message, step, state, result, audits)

    def _record(
        self, message: InboundMessage, step: str | None, state: str,
        result: dict[str, Any] | None, audits: Sequence[AuditEntry],
    ) -> float:
        now = time.time()
        started_at = now
        if step is not None:
            key = (message.dedupe_key, step)
            earlier = self._steps.get(key)
            if earlier is not None and state != STARTED:
                started_at = earlier.record.started_at
            self._steps[key] = _MemoryStep(message.tenant, message.chat_id,
                                           StepRecord(state, result, started_at), now)
        for entry in audits:
            self._seq += 1
            self._outbox[self._seq] = OutboxRow(self._seq, message.tenant, entry)
            self._chats[self._seq] = message.chat_id
        return started_at

    async def record_batch(self, message: InboundMessage, writes: Sequence[JournalWrite]) -> list[float]:
        return [await self.record(message, w.step, w.state, w.result, w.audits) for w in writes]

    def record_later(self, message: InboundMessage,
                     writes: Sequence[JournalWrite]) -> Awaitable[list[float]]:
        done: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        done.set_result([self._record(message, w.step, w.state, w.result, w.audits) for w in writes])
        return done

    async def clear(self, message_key: str, step: str) -> None:
        self._steps.pop((message_key, step), None)

    async def sent_ids(self, tenant: str, chat_id: str, since: float) -> set[str]:
        ids: set[str] = set()
        for (_key, step), value in self._steps.items():
            sent = (value.record.result or {}).get("message_id")
            if (sent and value.tenant == tenant and value.chat_id == chat_id and value.record.state == DONE
                    and value.updated_at >= since and step.startswith(SEND_STEPS)):
                ids.add(str(sent))
        return ids

    async def outbox(self, limit: int, skip: Sequence[str] = ()) -> list[OutboxRow]:
        rows = [self._outbox[seq] for seq in sorted(self._outbox) if self._outbox[seq].tenant not in skip]
        return rows[:limit]

    async def shipped(self, seqs: Sequence[int]) -> None:
        for seq in seqs:
            self._outbox.pop(seq, None)
            self._chats.pop(seq, None)

    async def ship_failed(self, seqs: Sequence[int], error: str) -> None:
        for seq in seqs:
            row = self._outbox.get(seq)
            if row is not None:
                self._outbox[seq] = attrs.evolve(row, attempts=row.attempts + 1)

    async def outbox_size(self) -> int:
        return len(self._outbox)

    async def forget(self, tenant: str, chat_id: str) -> int:
        keys = [k for k, v in self._steps.items() if v.tenant == tenant and v.chat_id == chat_id]
        for key in keys:
            del self._steps[key]
        for seq, row in list(self._outbox.items()):
            if row.tenant == tenant and self._chats.get(seq) == chat_id:
                entry = attrs.evolve(row.entry, details=pseudonymise(row.entry.details, chat_id))
                self._outbox[seq] = attrs.evolve(row, entry=entry)
        return len(keys)

    async def purge(self, before: float) -> int:
        old = [k for k, v in self._steps.items() if v.updated_at < before]
        for key in old:
            del self._steps[key]
        return len(old)


def journal_store_for(inbox: Any) -> JournalStore:
    """The journal store next to ``inbox``: in its database when it is durable."""
    write = getattr(inbox, "write", None)
    if getattr(inbox, "durable", False) and write is not None:
        from .journal_sqlite import SqliteJournalStore

        return SqliteJournalStore(write, getattr(inbox, "path", None), getattr(inbox, "write_later", None))
    return MemoryJournalStore()
