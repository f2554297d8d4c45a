"""An upstream outage in the middle of a burst: with the default schedule scaled down,
the model is down for most of the span a message survives, and nothing ends dead."""

from __future__ import annotations

import asyncio
from pathlib import Path

from maxcore.retry import retry_span
from maxcore.testing.harness import running, write_config
from maxcore.testing.openai_emulator import Fault, openai_emulator
from maxcore.types import InboundMessage

API_KEY = "sk-test-outage-7c1e"
CHATS = 6
PER_CHAT = 5
# The default schedule (21 attempts, 2 s doubling to 600 s) divided by 3000.
INITIAL_S, MAX_S, ATTEMPTS = 2.0 / 3000, 600.0 / 3000, 21
MAIN = f"""
inbox: {{type: sqlite, workers: 4, max_attempts: {ATTEMPTS}, backoff_initial_s: {INITIAL_S},
        backoff_max_s: {MAX_S}}}
"""
TENANT = """
tenant: acme
channel: {{type: webchat}}
crm: {{type: sqlite}}
memory: {{type: sqlite}}
llm: {{type: openai, base_url: {base_url}, api_key: {api_key}, model: gpt-4o-mini, timeout_s: 5}}
assistant: {{language: fr}}
"""


async def test_model_down_for_most_of_the_span_loses_nothing(tmp_path: Path) -> None:
    span = retry_span(INITIAL_S, MAX_S, ATTEMPTS)
    outage_s = 0.8 * span.shortest_s
    with openai_emulator(api_key=API_KEY) as emulator:
        config = write_config(tmp_path / "config", {"acme": TENANT.format(
            base_url=emulator.base_url, api_key=API_KEY)}, main=MAIN, data_dir=tmp_path / "data")
        async with running(config) as r:
            inbox = r.runtime.inbox
            for n in range(PER_CHAT):
                for chat in range(CHATS):
                    await r.runtime.submit(InboundMessage(
                        tenant="acme", channel="webchat", chat_id=f"chat-{chat}", message_id=f"m{chat}-{n}",
                        text=f"Nouveau lead : Jean Martin{chat}x{n}, BTP, l{chat}x{n}@example.com"))
            deadline = asyncio.get_running_loop().time() + 20
            while inbox.stats()["done"] < 4:  # the burst is under way
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"the burst did not start: {inbox.stats()}")
                await asyncio.sleep(0.01)
            # Down: every completion answers 503 until the outage ends.
            emulator.add_fault(Fault(503, "server_error", None, "The engine is currently overloaded."),
                               times=100_000)
            await asyncio.sleep(outage_s)
            refused = sum(1 for request in emulator.completions() if request.status == 503)
            done_during = inbox.stats()["done"]
            emulator.reset()  # back up
            await r.settle(30)
            stats = inbox.stats()
            replies = await r.runtime.tenant("acme").memory.audit_log(action="reply_sent")
    total = CHATS * PER_CHAT
    print(f"\nmodel down {outage_s:.2f}s of a {span.shortest_s:.2f}-{span.longest_s:.2f}s retry span: "
          f"{refused} completions refused, {done_during} messages done before recovery, "
          f"{stats['done']}/{total} done after, {stats['dead']} dead")
    assert refused > 0 and done_during < total  # the outage hit messages in flight
    assert stats["dead"] == 0 and stats["done"] == total
    assert sorted(e.message_id or "" for e in replies) == sorted(
        f"m{chat}-{n}" for chat in range(CHATS) for n in range(PER_CHAT))
