"""Exactly once, measured from the outside: Green-API-shaped webhooks into a real
``maxcore serve``, SIGKILL at random points under load, restart, full redelivery.

The provider (this test) sends each chat's messages in order and redelivers whatever
did not get a 200. Ground truth is upstream: the Green-API emulator's sent messages
(each quotes the message it answers), a trigger counting every write to the CRM's lead
table, the inbox's states and the audit rows shipped to the memory store.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from maxcore.builtin.sqlite_crm import SCHEMA as CRM_SCHEMA
from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.serve_process import HEALTH_TOKEN, ServeProcess

from .conftest import API_TOKEN, INSTANCE, WEBHOOK_TOKEN

pytestmark = pytest.mark.slow  # real processes, five crashes per run: ~15 s a run

CHATS = 50
PER_CHAT = 10
KILLS = 5
WORKERS = 8
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "greenapi" / "incoming_text.json"

# max_crashes above KILLS: the kills fall at random points, so one slow message (retrying
# a 429) can be in flight at three of them and would end dead as a poison message, which
# is that rule working, not a lost message (tests/inbox/test_scheduler.py covers it).
MAIN = f"""
server: {{shutdown_grace_s: 10, health_token: {HEALTH_TOKEN}}}
inbox: {{type: sqlite, workers: {WORKERS}, max_pending: 100000, backoff_initial_s: 0.05,
        backoff_max_s: 0.5, max_attempts: 40, max_crashes: {KILLS + 1}}}
logging: {{level: WARNING}}
"""
TENANT = """
tenant: acme
channel:
  type: greenapi
  instance_id: {instance}
  api_token: {api_token}
  webhook_token: {webhook_token}
  api_url: {api_url}
  outgoing_journal_lag_s: 0.6
  quote_replies: true
crm: {{type: sqlite}}
memory: {{type: sqlite}}
llm: {{type: offline, latency_ms: 15}}
"""
WRITE_COUNTER = """
CREATE TABLE IF NOT EXISTS lead_writes (id INTEGER PRIMARY KEY, kind TEXT, email TEXT);
CREATE TRIGGER IF NOT EXISTS lead_inserted AFTER INSERT ON leads
    BEGIN INSERT INTO lead_writes (kind, email) VALUES ('insert', NEW.email); END;
CREATE TRIGGER IF NOT EXISTS lead_updated AFTER UPDATE ON leads
    BEGIN INSERT INTO lead_writes (kind, email) VALUES ('update', NEW.email); END;
"""


def chat_of(conversation: int) -> str:
    return f"336{conversation:08d}@c.us"


def message_id(conversation: int, n: int) -> str:
    return f"3EB0C{conversation:03d}M{n:03d}"


def webhook(template: dict[str, Any], conversation: int, n: int) -> dict[str, Any]:
    # Two consecutive messages of a chat name the same lead: 250 distinct leads, each
    # created by one message and updated by the next.
    lead = (conversation * PER_CHAT + n) // 2
    body = json.loads(json.dumps(template))
    body["instanceData"]["idInstance"] = INSTANCE
    body["idMessage"] = message_id(conversation, n)
    body["senderData"].update(chatId=chat_of(conversation), sender=chat_of(conversation))
    body["messageData"]["textMessageData"]["textMessage"] = (
        f"Nouveau lead : Jean Martin{lead}, BTP, lead{lead}@example.com")
    return body


class Provider:
    """Delivers each chat's webhooks in order; what got no 200 is delivered again."""

    def __init__(self, server: ServeProcess) -> None:
        self.server = server
        self.template = json.loads(FIXTURE.read_text())
        self.next_index = [0] * CHATS
        self.acked: set[str] = set()

    async def deliver(self, client: httpx.AsyncClient, conversation: int) -> None:
        while self.next_index[conversation] < PER_CHAT:
            n = self.next_index[conversation]
            try:
                response = await client.post(
                    self.server.url + "/webhooks/greenapi", json=webhook(self.template, conversation, n),
                    headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"})
            except httpx.TransportError:
                return  # the server is gone: redeliver from here later
            if response.status_code != 200:
                return
            self.acked.add(message_id(conversation, n))
            self.next_index[conversation] += 1

    async def deliver_all(self) -> None:
        limits = httpx.Limits(max_connections=CHATS)
        async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:
            await asyncio.gather(*(self.deliver(client, c) for c in range(CHATS)))


def prepare_crm(data: Path) -> None:
    """The CRM's own schema, plus triggers counting every write to a lead."""
    conn = sqlite3.connect(data / "crm.sqlite3")
    try:
        conn.executescript(CRM_SCHEMA + WRITE_COUNTER)
    finally:
        conn.close()


@pytest.mark.parametrize("run", range(5))
async def test_sigkill_at_random_points_repeats_nothing(run: int, tmp_path: Path) -> None:
    seed = int(os.environ.get("MAXCORE_CRASH_SEED", random.randrange(1 << 30))) + run
    rng = random.Random(seed)
    emulator = GreenApiEmulator(outgoing_lag_s=0.3)
    emulator.add_instance(INSTANCE, API_TOKEN, WEBHOOK_TOKEN)
    with emulator.serve() as upstream:
        server = ServeProcess(tmp_path, MAIN, TENANT.format(
            instance=INSTANCE, api_token=API_TOKEN, webhook_token=WEBHOOK_TOKEN, api_url=upstream.url),
            plugins="greenapi")
        prepare_crm(server.data)
        provider = Provider(server)
        kills: list[tuple[int, int]] = []
        try:
            await asyncio.to_thread(server.start)
            delivering = asyncio.create_task(provider.deliver_all())
            for _ in range(KILLS):
                # A random point under load: ingest and processing both still running.
                await asyncio.sleep(rng.uniform(0.2, 1.2))
                sent_before = len(emulator.instances[INSTANCE].sent)
                await asyncio.to_thread(server.kill)
                kills.append((len(provider.acked), sent_before))
                await asyncio.wait_for(delivering, 30)
                await asyncio.to_thread(server.start)
                delivering = asyncio.create_task(provider.deliver_all())
            await asyncio.wait_for(delivering, 60)
            assert len(provider.acked) == CHATS * PER_CHAT
            await asyncio.to_thread(server.wait_processed)
        finally:
            await asyncio.to_thread(server.stop)  # SIGTERM: the outbox ships its last rows
        sent = list(emulator.instances[INSTANCE].sent)

    # 0 lost: every acknowledged message finished; none dead, none waiting.
    states = server.query("inbox.sqlite3", "SELECT state, COUNT(*) AS n FROM inbox GROUP BY state")
    assert {r["state"]: r["n"] for r in states} == {"done": CHATS * PER_CHAT}, server.tail()

    # 0 duplicate replies: each message is quoted by exactly one sent message.
    replies = collections.Counter(m.get("quotedMessageId") for m in sent)
    duplicate_replies = sum(n - 1 for n in replies.values())
    assert set(replies) == provider.acked

    # 0 duplicate CRM writes: one insert per lead (by its first message), one update (by the
    # second), nothing more; and one lead record per e-mail.
    writes = server.query("crm.sqlite3", "SELECT kind, email, COUNT(*) AS n FROM lead_writes "
                                         "GROUP BY kind, email")
    duplicate_writes = sum(r["n"] - 1 for r in writes)
    leads = server.query("crm.sqlite3", "SELECT email, COUNT(*) AS n FROM leads GROUP BY email")
    assert len(leads) == CHATS * PER_CHAT // 2 and {r["n"] for r in leads} == {1}

    # Every reply audited once in the memory store (the outbox ships each row once).
    audited = server.query("memory.sqlite3", "SELECT message_id, COUNT(*) AS n FROM max_logs "
                                             "WHERE action = 'reply_sent' GROUP BY message_id")
    assert {r["message_id"] for r in audited} == provider.acked
    duplicate_audits = sum(r["n"] - 1 for r in audited)
    reconciled = server.query("memory.sqlite3", "SELECT COUNT(*) AS n FROM max_logs WHERE action = "
                              "'reply_sent' AND json_extract(details, '$.reconciled')")[0]["n"]

    print(f"\nseed {seed}: {KILLS} SIGKILLs at (acked, sent) {kills}; {len(sent)} replies sent for "
          f"{len(provider.acked)} messages; duplicate replies {duplicate_replies}, duplicate CRM "
          f"writes {duplicate_writes}, duplicate audit rows {duplicate_audits}; interrupted sends "
          f"found in the outgoing journal {reconciled}")
    assert duplicate_replies == 0, [m for m, n in replies.items() if n > 1]
    assert duplicate_writes == 0, [dict(r) for r in writes if r["n"] > 1]
    assert duplicate_audits == 0
