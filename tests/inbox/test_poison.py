"""One bad operation, message or worker never stops the others.

The group commit runs every operation in its own savepoint; a worker survives a store
that fails; a worker task that ends is replaced; health says so while it matters.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from maxcore import inbox as inbox_module
from maxcore import scheduler as scheduler_module
from maxcore.config.models import InboxConfig
from maxcore.durable_inbox import SqliteInbox, connect
from maxcore.group_commit import GroupCommitter, InboxUnavailable
from maxcore.types import InboundMessage

FAST = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "poll_interval_s": 0.05}


def msg(chat: str, n: int, text: str = "hello") -> InboundMessage:
    return InboundMessage(tenant="acme", channel="test", chat_id=chat, message_id=f"{chat}-{n}", text=text)


def states(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT message_id, state FROM inbox"))


async def wait_until(predicate: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110 - state, not an event
            await asyncio.sleep(0.01)


async def test_one_failing_operation_fails_alone(tmp_path: Path) -> None:
    conn = connect(tmp_path / "inbox.sqlite3")
    writer = GroupCommitter(conn)
    writer.start()

    def insert(key: str):  # type: ignore[no-untyped-def]
        return lambda c: c.execute(
            "INSERT INTO inbox (dedupe_key, tenant, channel, chat_id, message_id, payload, received_at,"
            " updated_at) VALUES (?, 'acme', 'test', 'c', ?, '{}', 0, 0)", (key, key)).rowcount

    # Submitted together: they share one batch; the lone surrogate cannot be encoded.
    results = await asyncio.gather(
        writer.write(insert("good-1")), writer.write(insert("bad-\ud800")), writer.write(insert("good-2")),
        return_exceptions=True,
    )
    await writer.close()
    conn.close()
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], InboxUnavailable)
    assert writer.largest_batch == 3
    assert set(states(tmp_path / "inbox.sqlite3")) == {"good-1", "good-2"}


class FlakyStore(SqliteInbox):
    """The real SQLite inbox whose outcome writes fail a given number of times."""

    def __init__(self, *args: object, start_failures: int = 0, done_failures: int = 0) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.start_failures = start_failures
        self.done_failures = done_failures

    async def _store_started(self, entry: inbox_module.Entry) -> None:
        if self.start_failures:
            self.start_failures -= 1
            raise InboxUnavailable("injected")
        await super()._store_started(entry)

    async def _store_done(self, entry: inbox_module.Entry) -> None:
        if self.done_failures:
            self.done_failures -= 1
            raise InboxUnavailable("injected")
        await super()._store_done(entry)


async def test_a_store_failure_never_kills_a_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler_module, "STORE_RETRY_S", 0.01)
    inbox = FlakyStore(InboxConfig(workers=2, **FAST), tmp_path, start_failures=3, done_failures=2)
    handled: list[str] = []

    async def handler(message: InboundMessage) -> None:
        handled.append(message.message_id)

    await inbox.start(handler)
    for n in range(4):
        await inbox.submit(msg("c1", n))
    assert await inbox.drain(10)
    assert handled == ["c1-0", "c1-1", "c1-2", "c1-3"]  # in order, each once
    assert inbox.workers_alive() == 2 and inbox.worker_restarts == 0
    assert set(states(inbox.path).values()) == {"done"}
    await inbox.stop(1)


async def test_an_unexpected_handler_error_is_logged_with_its_traceback(tmp_path: Path) -> None:
    from loguru import logger

    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), format="{message}\n{exception}")
    inbox = SqliteInbox(InboxConfig(workers=1, max_attempts=1, **FAST), tmp_path)

    async def handler(message: InboundMessage) -> None:
        if message.text == "boom":
            raise KeyError("surprise")

    try:
        await inbox.start(handler)
        await inbox.submit(msg("c1", 1, "boom"))
        await inbox.submit(msg("c1", 2))
        assert await inbox.drain(10)
    finally:
        logger.remove(sink)
    assert states(inbox.path) == {"c1-1": "dead", "c1-2": "done"}
    assert any("Traceback" in line and "KeyError: 'surprise'" in line for line in lines)
    await inbox.stop(1)


async def test_a_worker_that_ends_is_replaced_and_health_says_so(tmp_path: Path) -> None:
    inbox = SqliteInbox(InboxConfig(workers=3, **FAST), tmp_path)
    handled: list[str] = []

    async def handler(message: InboundMessage) -> None:
        handled.append(message.message_id)

    await inbox.start(handler)
    assert inbox.health() == ("ok", [])
    victim = inbox._workers[0]
    victim.cancel()  # a worker task that ends, whatever the cause
    await wait_until(lambda: victim.done() and inbox.workers_alive() == 3)
    status, reasons = inbox.health()
    assert status == "degraded" and "replaced" in reasons[0]
    assert inbox.stats()["worker_restarts"] == 1
    for n in range(5):
        await inbox.submit(msg(f"c{n}", n))
    assert await inbox.drain(10)
    assert len(handled) == 5
    await inbox.stop(1)


async def test_health_degraded_when_the_oldest_message_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "STALE_PENDING_S", 0.05)
    inbox = SqliteInbox(InboxConfig(workers=1, **FAST), tmp_path)
    release = asyncio.Event()

    async def handler(message: InboundMessage) -> None:
        await release.wait()

    await inbox.start(handler)
    await inbox.submit(msg("c1", 1))
    await wait_until(lambda: inbox.health()[0] == "degraded")
    assert "oldest pending message" in inbox.health()[1][0]
    release.set()
    assert await inbox.drain(5)
    assert inbox.health() == ("ok", [])
    await inbox.stop(1)


async def test_an_unreadable_stored_row_goes_dead_alone(tmp_path: Path) -> None:
    first = SqliteInbox(InboxConfig(**FAST), tmp_path)
    await first.submit(msg("c1", 1))
    await first.submit(msg("c1", 2))
    await first.stop(0)
    with sqlite3.connect(first.path) as conn:
        conn.execute("UPDATE inbox SET payload = '{\"not\": \"a message\"}' WHERE message_id = 'c1-1'")
    handled: list[str] = []

    async def handler(message: InboundMessage) -> None:
        handled.append(message.message_id)

    second = SqliteInbox(InboxConfig(**FAST), tmp_path)
    await second.start(handler)
    assert await second.drain(5)
    await second.stop(1)
    assert handled == ["c1-2"]
    assert states(second.path) == {"c1-1": "dead", "c1-2": "done"}
