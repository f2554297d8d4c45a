"""Retention purges finished work; ``memory forget`` erases a contact from the journal
and the inbox as well as from memory."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from maxcore.testing.harness import running, write_config
from maxcore.types import InboundMessage, hash_chat_id

TENANT = """
tenant: acme
channel: {type: webchat}
crm: {type: sqlite}
memory: {type: sqlite}
llm: {type: offline}
"""
MAIN = "inbox: {type: sqlite}\nretention: {messages_days: 30, history_days: 180}\n"
DAY = 86400.0


def lead(chat: str, n: int) -> InboundMessage:
    return InboundMessage(tenant="acme", channel="webchat", chat_id=chat, message_id=f"m{n}",
                          text=f"Nouveau lead : Jean Martin{n}, BTP, secret{n}.{chat}@example.com")


def rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()


async def process(config: Path, messages: list[InboundMessage]) -> None:
    async with running(config) as r:
        for message in messages:
            await r.runtime.submit(message)
        await r.settle(20)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config", {"acme": TENANT}, main=MAIN, data_dir=tmp_path / "data")


async def test_done_messages_journals_and_old_history_are_purged(config: Path, tmp_path: Path) -> None:
    await process(config, [lead("chat-a", 1), lead("chat-a", 2)])
    inbox = tmp_path / "data" / "inbox.sqlite3"
    assert rows(inbox, "SELECT COUNT(*) AS n FROM journal")[0]["n"] > 0
    async with running(config) as r:
        retention = r.runtime.retention
        assert await retention.purge_once(now=time.time() + 29 * DAY) == {"messages": 0, "history": 0}
        later = await retention.purge_once(now=time.time() + 31 * DAY)
        assert later["messages"] > 0 and later["history"] == 0
        assert rows(inbox, "SELECT COUNT(*) AS n FROM inbox")[0]["n"] == 0
        assert rows(inbox, "SELECT COUNT(*) AS n FROM journal")[0]["n"] == 0
        memory = r.runtime.tenant("acme").memory
        assert await memory.history("chat-a", 10)
        assert (await retention.purge_once(now=time.time() + 181 * DAY))["history"] == 4
        assert await memory.history("chat-a", 10) == []


async def test_forget_erases_the_contact_from_journal_and_inbox(config: Path, tmp_path: Path) -> None:
    from maxcore.cli import cli as group
    from maxcore.cli import plugins

    await process(config, [lead("chat-a", 1), lead("chat-b", 2)])
    plugins().hooks.register_commands(group)
    result = await asyncio.to_thread(CliRunner().invoke, group, [
        "memory", "forget", "--tenant", "acme", "--chat", "chat-a", "--config", str(config)],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    inbox = tmp_path / "data" / "inbox.sqlite3"
    dump = json.dumps([dict(r) for r in rows(inbox, "SELECT * FROM inbox")])
    journal = json.dumps([dict(r) for r in rows(inbox, "SELECT * FROM journal")])
    assert "secret1" not in dump and "chat-a" not in dump and hash_chat_id("chat-a") in dump
    assert "secret1" not in journal and "chat-a" not in journal
    assert "secret2.chat-b" in dump and "secret2.chat-b" in journal  # the other contact stays
    memory_db = tmp_path / "data" / "memory.sqlite3"
    assert "secret1" not in json.dumps([dict(r) for r in rows(memory_db, "SELECT * FROM sessions")])
