"""The durable inbox on its own: commit before ack, dedupe, order, retries, dead, recovery."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest
from loguru import logger

from maxcore.config.models import InboxConfig
from maxcore.durable_inbox import SqliteInbox
from maxcore.errors import PermanentError, RetryableError
from maxcore.inbox import InboxClosed, InboxFull
from maxcore.memory_inbox import MemoryInbox
from maxcore.scheduler import RateWindow
from maxcore.types import InboundMessage

FAST = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "poll_interval_s": 0.05}


def msg(chat: str, n: int, tenant: str = "acme") -> InboundMessage:
    return InboundMessage(tenant=tenant, channel="test", chat_id=chat, message_id=f"{chat}-{n}", text=str(n))


def rows(path: Path) -> dict[str, tuple[str, int, str | None]]:
    with sqlite3.connect(path) as conn:
        return {
            r[0]: (r[1], r[2], r[3])
            for r in conn.execute("SELECT message_id, state, attempts, last_error FROM inbox")
        }


def make(tmp_path: Path, **overrides: object) -> SqliteInbox:
    return SqliteInbox(InboxConfig(**{**FAST, **overrides}), tmp_path)  # type: ignore[arg-type]


async def test_submit_is_committed_before_it_returns(tmp_path: Path) -> None:
    inbox = make(tmp_path)
    assert await inbox.submit(msg("c1", 1)) is True
    # Another connection (another process, after a crash) sees the row already.
    assert rows(tmp_path / "inbox.sqlite3") == {"c1-1": ("pending", 0, None)}
    await inbox.stop(0)


async def test_redeliveries_concurrent_and_sequential_are_processed_once(tmp_path: Path) -> None:
    inbox = make(tmp_path)
    handled: list[str] = []

    async def handler(message: InboundMessage) -> None:
        handled.append(message.message_id)

    await inbox.start(handler)
    message = msg("c1", 1)
    concurrent = await asyncio.gather(*(inbox.submit(message) for _ in range(3)))
    sequential = [await inbox.submit(message) for _ in range(3)]
    assert sorted(concurrent) == [False, False, True]
    assert sequential == [False, False, False]
    assert await inbox.drain(5)
    assert handled == ["c1-1"]
    await inbox.stop(1)
    # After a restart the key is still known: the redelivery is still a no-op.
    again = make(tmp_path)
    await again.start(handler)
    assert await again.submit(message) is False
    await again.stop(1)
    assert handled == ["c1-1"]


async def test_order_per_conversation_and_slow_conversation_does_not_block(tmp_path: Path) -> None:
    inbox = make(tmp_path, workers=4)
    seen: dict[str, list[int]] = defaultdict(list)
    running: dict[str, int] = defaultdict(int)
    release_slow = asyncio.Event()
    others_done = asyncio.Event()
    expected_others = 3 * 20

    async def handler(message: InboundMessage) -> None:
        running[message.chat_id] += 1
        assert running[message.chat_id] == 1, "two messages of one conversation ran at once"
        if message.chat_id == "slow":
            await release_slow.wait()
        else:
            for _ in range(int(message.text) % 3):
                await asyncio.sleep(0)  # interleave conversations
        seen[message.chat_id].append(int(message.text))
        running[message.chat_id] -= 1
        if sum(len(seen[c]) for c in ("a", "b", "c")) == expected_others:
            others_done.set()

    await inbox.start(handler)
    submits = [inbox.submit(msg(chat, n)) for n in range(20) for chat in ("slow", "a", "b", "c")]
    assert all(await asyncio.gather(*submits))
    # The slow conversation holds one worker; the others still finish.
    await asyncio.wait_for(others_done.wait(), 10)
    assert seen["slow"] == []
    release_slow.set()
    assert await inbox.drain(10)
    for chat in ("slow", "a", "b", "c"):
        assert seen[chat] == list(range(20)), chat
    await inbox.stop(1)


async def test_retryable_failures_then_success_is_processed_once_and_logged(tmp_path: Path) -> None:
    inbox = make(tmp_path, max_attempts=5)
    calls: list[int] = []
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING", format="{message}")

    async def handler(message: InboundMessage) -> None:
        calls.append(1)
        if len(calls) <= 3:
            raise RetryableError("upstream 503", retry_after=0.02)

    try:
        await inbox.start(handler)
        await inbox.submit(msg("c1", 1))
        assert await inbox.drain(5)
    finally:
        logger.remove(sink)
    await inbox.stop(1)
    assert len(calls) == 4
    assert rows(tmp_path / "inbox.sqlite3")["c1-1"] == ("done", 4, None)
    retries = [line for line in lines if "retrying in" in line]
    assert [line.split(" failed")[0] for line in retries] == [
        "[PIPELINE] attempt 1/5", "[PIPELINE] attempt 2/5", "[PIPELINE] attempt 3/5"
    ]
    assert all("RetryableError: upstream 503" in line for line in retries)


async def test_permanent_error_is_dead_at_once_and_exhausted_retries_too(tmp_path: Path) -> None:
    inbox = make(tmp_path, max_attempts=3)

    async def handler(message: InboundMessage) -> None:
        if message.chat_id == "bad":
            raise PermanentError("HTTP 400: field email is invalid")
        raise RetryableError("timeout")

    await inbox.start(handler)
    await inbox.submit(msg("bad", 1))
    await inbox.submit(msg("flaky", 1))
    await inbox.submit(msg("flaky", 2))  # a dead letter does not block its conversation
    assert await inbox.drain(5)
    await inbox.stop(1)
    state = rows(tmp_path / "inbox.sqlite3")
    assert state["bad-1"] == ("dead", 1, "PermanentError: HTTP 400: field email is invalid")
    assert state["flaky-1"] == ("dead", 3, "RetryableError: timeout")
    assert state["flaky-2"] == ("dead", 3, "RetryableError: timeout")
    assert inbox.stats()["dead"] == 3


async def test_accepted_but_unfinished_messages_resume_on_start(tmp_path: Path) -> None:
    first = make(tmp_path)
    for n in range(5):
        await first.submit(msg("c1", n))
    await first.stop(0)  # never started: nothing ran
    handled: list[str] = []

    async def handler(message: InboundMessage) -> None:
        handled.append(message.message_id)

    second = make(tmp_path)
    await second.start(handler)
    assert await second.drain(5)
    await second.stop(1)
    assert handled == [f"c1-{n}" for n in range(5)]


async def test_stop_lets_in_flight_finish_and_keeps_the_backlog(tmp_path: Path) -> None:
    inbox = make(tmp_path, workers=1)
    started = asyncio.Event()
    finish = asyncio.Event()
    handled: list[str] = []

    async def handler(message: InboundMessage) -> None:
        started.set()
        await finish.wait()
        handled.append(message.message_id)

    await inbox.start(handler)
    for n in range(3):
        await inbox.submit(msg("c1", n))
    await started.wait()
    stopping = asyncio.create_task(inbox.stop(5))
    await asyncio.sleep(0)
    with pytest.raises(InboxClosed):
        await inbox.submit(msg("c1", 9))
    finish.set()
    await stopping
    assert handled == ["c1-0"]
    state = rows(tmp_path / "inbox.sqlite3")
    assert [state[f"c1-{n}"][0] for n in range(3)] == ["done", "pending", "pending"]


async def test_stop_after_grace_leaves_the_running_message_pending(tmp_path: Path) -> None:
    inbox = make(tmp_path, workers=1)
    started = asyncio.Event()

    async def handler(message: InboundMessage) -> None:
        started.set()
        await asyncio.Event().wait()  # never finishes

    await inbox.start(handler)
    await inbox.submit(msg("c1", 1))
    await started.wait()
    await inbox.stop(0.05)
    assert rows(tmp_path / "inbox.sqlite3")["c1-1"][0] == "pending"


async def test_a_message_that_kills_the_process_every_time_ends_dead(tmp_path: Path) -> None:
    """An attempt is marked running before it runs: a crash during it is counted at the next
    start, so a message that kills the process goes dead long before its retries run out."""
    for attempt in (1, 2):
        inbox = make(tmp_path, workers=1, max_attempts=21, max_crashes=2)
        started = asyncio.Event()

        async def handler(message: InboundMessage, started: asyncio.Event = started) -> None:
            started.set()
            await asyncio.Event().wait()  # the process "dies" while this runs

        await inbox.start(handler)
        if attempt == 1:
            await inbox.submit(msg("c1", 1))
        await started.wait()
        assert rows(tmp_path / "inbox.sqlite3")["c1-1"] == ("pending", attempt, None)
        await inbox.stop(0)
    handled: list[str] = []

    async def survivor(message: InboundMessage) -> None:
        handled.append(message.message_id)

    third = make(tmp_path, workers=1, max_attempts=21, max_crashes=2)
    await third.start(survivor)
    assert await third.drain(5)
    await third.stop(1)
    state, attempts, error = rows(tmp_path / "inbox.sqlite3")["c1-1"]
    assert (state, attempts, handled) == ("dead", 2, [])
    assert error is not None and "the server stopped during 2 of its attempts" in error


async def test_a_finished_attempt_is_not_counted_as_a_crash(tmp_path: Path) -> None:
    """Failures the handler reports are retries, not crashes: only a died process counts."""
    inbox = make(tmp_path, workers=1, max_attempts=21, max_crashes=1, backoff_initial_s=30)
    failed = asyncio.Event()

    async def flaky(message: InboundMessage) -> None:
        failed.set()
        raise RetryableError("upstream down")

    await inbox.start(flaky)
    await inbox.submit(msg("c1", 1))
    await failed.wait()
    await inbox.stop(1)  # the retry waits 30 s: the message stays pending, not running
    second = make(tmp_path, workers=1, max_attempts=21, max_crashes=1)
    handled: list[str] = []

    async def survivor(message: InboundMessage) -> None:
        handled.append(message.message_id)

    await second.start(survivor)
    assert await second.drain(5)
    await second.stop(1)
    assert rows(tmp_path / "inbox.sqlite3")["c1-1"][0] == "done" and handled == ["c1-1"]


async def test_full_inbox_refuses_with_retry_after(tmp_path: Path) -> None:
    inbox = make(tmp_path, max_pending=3, full_retry_after_s=7)
    for n in range(3):
        await inbox.submit(msg("c1", n))
    with pytest.raises(InboxFull) as caught:
        await inbox.submit(msg("c1", 3))
    assert caught.value.retry_after == 7
    await inbox.stop(0)


def test_rate_window_counts_starts_in_the_last_minute() -> None:
    window = RateWindow()
    assert [window.delay("t", 2, now) for now in (0.0, 1.0)] == [0.0, 0.0]
    assert window.delay("t", 2, 30.0) == pytest.approx(30.0)  # the first start leaves at 60
    assert window.delay("other", 2, 30.0) == 0.0  # tenants are counted apart
    assert window.delay("t", 2, 60.5) == 0.0
    assert window.delay("t", None, 60.5) == 0.0
    assert window.delay("t", 0, 60.5) == 0.0


async def test_rate_limited_tenant_waits_without_blocking_others(tmp_path: Path) -> None:
    inbox = make(tmp_path, workers=2)
    handled: list[str] = []
    other_done = asyncio.Event()

    async def handler(message: InboundMessage) -> None:
        handled.append(message.message_id)
        if len(handled) == 3:
            other_done.set()

    await inbox.start(handler, rate_limit=lambda tenant: 2 if tenant == "capped" else None)
    for n in range(3):
        await inbox.submit(msg("c1", n, tenant="capped"))
    await inbox.submit(msg("c2", 0, tenant="free"))
    await asyncio.wait_for(other_done.wait(), 5)
    await inbox.stop(1)
    assert sorted(handled) == ["c1-0", "c1-1", "c2-0"]
    state = rows(tmp_path / "inbox.sqlite3")
    # The capped tenant's third message waits for the window (kept for later).
    assert {k: v[0] for k, v in state.items()} == {
        "c1-0": "done", "c1-1": "done", "c2-0": "done", "c1-2": "pending"
    }


async def test_memory_inbox_shares_the_scheduler(tmp_path: Path) -> None:
    inbox = MemoryInbox(InboxConfig(type="memory", **FAST))  # type: ignore[arg-type]
    handled: list[str] = []

    async def handler(message: InboundMessage) -> None:
        if message.chat_id == "bad":
            raise PermanentError("no")
        handled.append(message.message_id)

    await inbox.start(handler)
    assert await inbox.submit(msg("c1", 1)) is True
    assert await inbox.submit(msg("c1", 1)) is False
    await inbox.submit(msg("bad", 1))
    assert await inbox.drain(5)
    await inbox.stop(1)
    assert handled == ["c1-1"]
    assert [d.message.chat_id for d in inbox.dead] == ["bad"]


async def test_only_the_first_attempt_of_a_message_stored_here_skips_reading_its_journal(
        tmp_path: Path) -> None:
    from maxcore.journal import FIRST_ATTEMPT

    seen: list[tuple[str, bool]] = []

    async def handler(message: InboundMessage) -> None:
        seen.append((message.message_id, FIRST_ATTEMPT.get()))
        if message.message_id == "c1-1" and len(seen) == 1:
            raise RetryableError("upstream 503", retry_after=0.01)

    inbox = make(tmp_path)
    await inbox.start(handler)
    await inbox.submit(msg("c1", 1))
    await inbox.submit(msg("c2", 1))
    assert await inbox.drain(5)
    await inbox.stop(1)
    # A retry may follow a step already journalled: it reads the journal.
    assert sorted(seen) == [("c1-1", False), ("c1-1", True), ("c2-1", True)]
    assert seen[0] == ("c1-1", True)
    assert FIRST_ATTEMPT.get() is False  # reset after each attempt

    # Stored by an earlier process (here: accepted without workers, then restarted).
    web = make(tmp_path)
    await web.submit(msg("c3", 1))
    await web.stop(1)
    again = make(tmp_path)
    seen.clear()
    await again.start(handler)
    assert await again.drain(5)
    await again.stop(1)
    assert seen == [("c3-1", False)]


async def test_a_first_attempt_opens_its_journal_without_reading_the_store() -> None:
    from maxcore.journal import FIRST_ATTEMPT, MemoryJournalStore, MessageJournal

    class CountingStore(MemoryJournalStore):
        loads = 0

        async def load(self, message_key: str):  # type: ignore[no-untyped-def]
            CountingStore.loads += 1
            return await super().load(message_key)

    store = CountingStore()
    await MessageJournal.open(store, msg("c1", 1))
    token = FIRST_ATTEMPT.set(True)
    try:
        journal = await MessageJournal.open(store, msg("c1", 2))
    finally:
        FIRST_ATTEMPT.reset(token)
    assert CountingStore.loads == 1 and journal.records == {}
