"""A real ``maxcore serve`` under valid traffic mixed with lone-surrogate messages.

10 valid and 10 poisoned messages per second (``MAXCORE_POISON_S`` seconds, 5 by
default; 30 reproduces the original report): every acknowledged valid message is
answered, every worker stays alive, and health is truthful all along.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import httpx
import pytest

from maxcore.testing.serve_process import HEALTH_TOKEN, ServeProcess

WORKERS = 8
RATE_PER_S = 10
DURATION_S = float(os.environ.get("MAXCORE_POISON_S", "5"))
HEALTH = {"Authorization": f"Bearer {HEALTH_TOKEN}"}

MAIN = f"""
server: {{health_token: {HEALTH_TOKEN}}}
inbox: {{type: sqlite, workers: {WORKERS}}}
logging: {{level: INFO}}
"""
TENANT = """
tenant: acme
channel: {type: webchat, rate_limits: false}  # 20 messages/s from one client
crm: {type: sqlite}
memory: {type: sqlite}
llm: {type: offline}
"""
# The body a hostile page sends: lone surrogates in the text (the webchat's ids are
# restricted to a plain charset; Green-API ids with surrogates are covered elsewhere).
POISON = '{{"text": "bonjour \\ud800 {n} \\udfff", "id": "p-{n}"}}'


@pytest.mark.slow
async def test_lone_surrogates_stop_nothing(maxcore_server: Callable[[str, str], ServeProcess]) -> None:
    server = maxcore_server(MAIN, TENANT)
    server.start()
    health_seen: list[tuple[str, int, int]] = []
    acked_valid: dict[str, str] = {}  # message id -> session token
    acked_poison = 0
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as client:
        sessions = [(await client.post("/chat/acme/session")).json() for _ in range(20)]

        async def watch_health(stop: asyncio.Event) -> None:
            while not stop.is_set():
                report = (await client.get("/api/health", headers=HEALTH)).json()
                public = (await client.get("/api/health")).json()
                assert public["status"] == report["status"]
                health_seen.append((report["status"], report["inbox"]["workers"],
                                    report["inbox"]["worker_restarts"]))
                await asyncio.sleep(0.2)

        async def send(n: int) -> None:
            nonlocal acked_poison
            token = sessions[n % len(sessions)]["token"]
            auth = {"Authorization": f"Bearer {token}"}
            valid = await client.post("/webhooks/webchat", headers=auth,
                                      json={"text": f"bonjour {n}", "id": f"v-{n}"})
            poison = await client.post("/webhooks/webchat", headers=auth,
                                       content=POISON.format(n=n).encode())
            if valid.status_code == 200:
                acked_valid[f"v-{n}"] = token
            acked_poison += poison.status_code == 200
            assert valid.status_code == 200 and poison.status_code == 200, (valid.text, poison.text)

        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_health(stop))
        sends: list[asyncio.Task[None]] = []
        started = time.monotonic()
        for n in range(int(DURATION_S * RATE_PER_S)):
            # Paced from the start time: 10 valid + 10 poisoned per second, whatever the latency.
            await asyncio.sleep(max(0.0, started + n / RATE_PER_S - time.monotonic()))
            sends.append(asyncio.create_task(send(n)))
        await asyncio.gather(*sends)
        await asyncio.to_thread(server.wait_processed, 60)
        stop.set()
        await watcher

        answered: dict[str, int] = {}
        for session in sessions:
            messages = (await client.get("/chat/acme/messages?wait=0", headers={
                "Authorization": f"Bearer {session['token']}"})).json()["messages"]
            answered[session["token"]] = sum(m["from"] == "assistant" for m in messages)
        final = (await client.get("/api/health", headers=HEALTH)).json()

    total = int(DURATION_S * RATE_PER_S)
    assert len(acked_valid) == total and acked_poison == total
    # Every message (valid or repaired) got its answer.
    assert sum(answered.values()) == 2 * total
    assert final["inbox"]["done"] == 2 * total and final["inbox"]["dead"] == 0
    assert final["status"] == "ok" and final["inbox"]["workers"] == WORKERS
    # Truthful throughout: workers never died, so health never had a reason to say otherwise.
    assert health_seen and all(seen == ("ok", WORKERS, 0) for seen in health_seen), health_seen
    rows = server.query("inbox.sqlite3", "SELECT payload FROM inbox WHERE message_id LIKE 'p-%'")
    assert len(rows) == total and all("\ufffd" in row["payload"] for row in rows)
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log and "ERROR" not in log
