"""What a lead message costs the memory store: round trips counted in the PostgREST
emulator's request log, a burst of lead messages through the durable inbox."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

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


async def test_audit_rows_wait_out_a_store_outage_and_land_once(
        emulator: PostgrestEmulator, memory_factory: Any, supabase_db: str) -> None:
    import psycopg

    from maxcore.audit_outbox import AuditShipper
    from maxcore.journal import MemoryJournalStore
    from maxcore.types import AuditEntry

    memory = memory_factory("acme")
    await memory.open()
    store = MemoryJournalStore()
    message = InboundMessage(tenant="acme", channel="webchat", chat_id="c1", message_id="m1")
    entries = [AuditEntry(action="llm_call", details={"round": n}, message_id="m1") for n in range(3)]
    await store.record(message, "llm:x", "done", {}, entries)
    shipper = AuditShipper(store, lambda tenant: memory if tenant == "acme" else None)
    try:
        emulator.fail_next(503, count=1)
        assert await shipper.ship_once() == 0  # the store is down: nothing leaves the outbox
        assert await store.outbox_size() == 3
        await shipper.flush()  # back up
        assert await store.outbox_size() == 0
        # The answer to a batch was lost and the batch is sent again: no row twice.
        await memory.audit_batch(entries)
    finally:
        await memory.close()
    with psycopg.connect(supabase_db) as conn:
        count = conn.execute("SELECT count(*) FROM max_logs WHERE tenant_id = 'acme'").fetchone()[0]
    assert count == 3
