"""What a lead message costs the memory store: round trips counted in the PostgREST
emulator's request log, a burst of lead messages through the durable inbox."""

from __future__ import annotations

import collections
from pathlib import Path

from maxcore.testing.harness import running, write_config
from maxcore.testing.postgrest_emulator import PostgrestEmulator
from maxcore.types import InboundMessage

MESSAGES = 40
BUDGET = 4  # read history+facts, remember the lead, append history, a share of an audit batch


async def test_a_lead_message_costs_at_most_four_round_trips(
        emulator: PostgrestEmulator, tmp_path: Path, supabase_db: str) -> None:
    import psycopg

    tenant = f"""
        tenant: acme
        crm: {{type: sqlite, path: {tmp_path / "crm.sqlite3"}}}
        memory: {{type: supabase, url: "{emulator.url}", key: "{emulator.service_key}", timeout_s: 5}}
    """
    config = write_config(tmp_path / "config", {"acme": tenant},
                          main="inbox: {type: sqlite, workers: 8}\n", data_dir=tmp_path / "data")
    async with running(config) as r:
        emulator.reset()
        for n in range(MESSAGES):
            await r.runtime.submit(InboundMessage(
                tenant="acme", channel="webchat", chat_id=f"chat-{n}", message_id=f"m{n}",
                text=f"Nouveau lead : Jean Martin{n}, BTP, lead{n}@example.com, +33 6 12 34 56 {n:02d}"))
        await r.settle(30)
        requests = list(emulator.requests)
    with psycopg.connect(supabase_db) as conn:
        created = conn.execute(
            "SELECT count(*) FROM max_logs WHERE tenant_id = 'acme' AND action = 'lead_created'"
        ).fetchone()[0]
    assert created == MESSAGES  # every message was a lead message, audited once
    kinds = collections.Counter(f"{r.method} {r.table}" for r in requests)
    per_message = len(requests) / MESSAGES
    print(f"\nmemory-store round trips per lead message: {per_message:.2f} "
          f"({len(requests)} for {MESSAGES} messages: {dict(sorted(kinds.items()))})")
    assert per_message <= BUDGET, kinds
    assert emulator.violations == []
