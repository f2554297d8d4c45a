"""Bounded memory for what anyone can send: the outbox's caps and the token buckets."""

from __future__ import annotations

import asyncio

import pytest

from maxcore.builtin.rate_limit import KeyedLimiter, retry_after
from maxcore.builtin.webchat_outbox import Outbox, OutboxLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = KeyedLimiter(6, clock=clock)  # one token every 10 s, burst 6
    assert [limiter.take("a") for _ in range(6)] == [0.0] * 6
    assert limiter.take("a") == pytest.approx(10.0)
    assert limiter.take("b") == 0.0  # keys are independent
    clock.now += 5
    assert limiter.take("a") == pytest.approx(5.0)  # a refusal costs nothing
    clock.now += 5
    assert limiter.take("a") == 0.0 and limiter.take("a") == pytest.approx(10.0)
    clock.now += 3600
    assert [limiter.take("a") for _ in range(7)][-2:] == [0.0, pytest.approx(10.0)]


def test_bucket_memory_is_bounded_by_max_keys() -> None:
    limiter = KeyedLimiter(1, max_keys=100)
    for n in range(10_000):
        limiter.take(f"client-{n}")
    assert len(limiter) == 100


@pytest.mark.parametrize("rate", [0, -1, float("nan"), float("inf")])
def test_bucket_refuses_nonsense_rates(rate: float) -> None:
    with pytest.raises(ValueError):
        KeyedLimiter(rate)


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after(w) for w in (0.01, 1.0, 1.2, 59.9)] == ["1", "1", "2", "60"]


def test_chats_are_capped_least_recently_active_first() -> None:
    box = Outbox(OutboxLimits(max_chats=3, max_chats_per_client=10))
    for chat in ("a", "b", "c"):
        box.push(chat, f"client-{chat}", "user", "x", None)
    box.push("a", None, "assistant", "still here", None)  # a is now the most recent
    box.push("d", "client-d", "user", "x", None)
    assert len(box) == 3 and box.after("b", 0) == [] and box.after("a", 0) != []


def test_one_client_only_pushes_out_its_own_chats() -> None:
    box = Outbox(OutboxLimits(max_chats=100, max_chats_per_client=2))
    box.push("someone", "other", "user", "hello", None)
    for n in range(50):
        box.push(f"flood-{n}", "attacker", "user", "x", None)
    assert len(box) == 3 and box.clients() == 2
    assert [m["text"] for m in box.after("someone", 0)] == ["hello"]


def test_messages_per_chat_and_characters_in_all_are_capped() -> None:
    box = Outbox(OutboxLimits(max_chats=1000, max_chats_per_client=1000, messages_per_chat=5,
                              max_chars=50_000))
    for n in range(6000):
        box.push(f"chat-{n % 600}", f"client-{n % 600}", "user", "x" * 4000, f"id-{n}")
        assert box.chars <= 50_000
    assert all(len(box.after(f"chat-{n}", 0)) <= 5 for n in range(600))
    assert box.chars == sum(len(m["text"]) for n in range(600) for m in box.after(f"chat-{n}", 0))


def test_a_resent_message_is_kept_once() -> None:
    box = Outbox(OutboxLimits())
    first = box.push("a", "c", "user", "hello", "m-1")
    assert box.push("a", "c", "user", "hello", "m-1") == first
    assert len(box.after("a", 0)) == 1


async def test_a_read_waits_for_its_own_chat_only() -> None:
    box = Outbox(OutboxLimits())
    waiting = asyncio.create_task(box.messages("a", 0, 5.0))
    await asyncio.sleep(0)
    box.push("b", "c", "user", "not for a", None)
    await asyncio.sleep(0)
    assert not waiting.done()
    box.push("a", "c", "user", "for a", None)
    assert [m["text"] for m in await asyncio.wait_for(waiting, 5)] == ["for a"]
    assert box._waiters == {}


async def test_close_releases_every_read() -> None:
    box = Outbox(OutboxLimits())
    reads = [asyncio.create_task(box.messages(f"chat-{n}", 0, 30.0)) for n in range(3)]
    await asyncio.sleep(0)
    box.close()
    assert await asyncio.wait_for(asyncio.gather(*reads), 5) == [[], [], []]


@pytest.mark.parametrize("wait", [float("nan"), float("inf"), -1.0])
async def test_a_read_refuses_a_wait_no_timer_can_honour(wait: float) -> None:
    with pytest.raises(ValueError):
        await Outbox(OutboxLimits()).messages("a", 0, wait)
