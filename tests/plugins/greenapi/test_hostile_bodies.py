"""Authenticated bodies that break the contract, lone surrogates, health without a token."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from greenapi_support import INSTANCE, bearer, load_fixture

from maxcore.cli import cli, plugins
from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.harness import running


def _dead_rows(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT last_error, payload FROM inbox WHERE state = 'dead'"))


async def test_contract_breaking_bodies_become_dead_letters(
    make_config: Callable[..., Path], emulator: GreenApiEmulator
) -> None:
    huge_time = load_fixture("incoming_text.json")
    huge_time["idMessage"] = "3EB0HUGETIME01"
    huge_time["timestamp"] = int("9" * 400)
    deep_vcard = load_fixture("incoming_contact.json")
    nested: list[object] = []
    for _ in range(600):
        nested = [nested]
    deep_vcard["messageData"]["contactMessageData"]["vcard"] = nested
    config = make_config()
    async with running(config) as r:
        answers = [await r.client.post("/webhooks/greenapi", content=json.dumps(body), headers=bearer())
                   for body in (huge_time, deep_vcard)]
        # A correct copy of the first message still gets in: dead letters have their own ids.
        huge_time["timestamp"] = 1700000000
        fixed = await r.client.post("/webhooks/greenapi", content=json.dumps(huge_time), headers=bearer())
        await r.settle()
        dead = _dead_rows(r.runtime.inbox.path)
    assert [a.status_code for a in answers] == [200, 200]
    assert all(a.json()["dead_letters"] == 1 for a in answers)
    assert fixed.json()["accepted"] == 1
    assert any("timestamp" in reason for reason in dead)
    assert any("vcard must be a string" in reason for reason in dead)
    plugins().hooks.register_commands(cli)
    listed = CliRunner().invoke(cli, ["inbox", "--config", str(config), "list", "--state", "dead"])
    assert listed.exit_code == 0 and "2 dead message(s)" in listed.output
    first_id = listed.output.splitlines()[1].split()[0]
    shown = CliRunner().invoke(cli, ["inbox", "--config", str(config), "show", first_id])
    assert shown.exit_code == 0 and "raw_body" in shown.output


async def test_lone_surrogates_from_green_api_are_answered(
    make_config: Callable[..., Path], emulator: GreenApiEmulator
) -> None:
    body = json.dumps(load_fixture("incoming_text.json"))
    body = body.replace('"textMessage": "', '"textMessage": "\\ud83d ', 1)
    body = body.replace('"idMessage": "', '"idMessage": "\\udfff', 1)
    async with running(make_config()) as r:
        response = await r.client.post("/webhooks/greenapi", content=body, headers=bearer())
        await r.settle()
        stats = r.runtime.inbox.stats()
    assert response.status_code == 200 and response.json()["accepted"] == 1
    assert stats["done"] == 1 and stats["worker_restarts"] == 0
    assert stats["workers"] == r.runtime.config.inbox.workers
    assert len(emulator.instances[INSTANCE].sent) == 1


async def test_anonymous_health_never_calls_green_api(
    make_config: Callable[..., Path], emulator: GreenApiEmulator
) -> None:
    async with running(make_config()) as r:
        for _ in range(50):
            public = await r.client.get("/api/health")
            assert public.json() == {"status": "ok", "version": r.runtime.version}
        calls = list(emulator.instances[INSTANCE].calls)
    assert "getStateInstance" not in calls and "getSettings" not in calls
