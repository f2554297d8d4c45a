"""The whole pipeline (webchat → inbox → openai connector ⇄ emulator → sqlite CRM) end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from maxcore import cli as cli_module
from maxcore.builtin import usage_command
from maxcore.testing.harness import Running, running, write_config
from maxcore.testing.openai_emulator import OpenAIEmulator

from .conftest import API_KEY, DEMO

MAIN = """
inbox: {type: memory, workers: 2, max_attempts: 3, backoff_initial_s: 0.01, backoff_max_s: 5}
"""
TENANT = """
tenant: {tenant}
channel: {{type: webchat}}
crm: {{type: sqlite}}
memory: {{type: sqlite}}
llm:
  type: openai
  base_url: {base_url}
  {key_line}
  model: {model}
  max_retries: {max_retries}
  timeout_s: 5
assistant:
  language: fr
  lead_defaults: {{status: New, source: Web Site}}
"""


@pytest.fixture
def make_system(tmp_path: Path, emulator: OpenAIEmulator) -> Callable[..., Path]:
    def make(api_key: str | None = API_KEY, model: str = "gpt-4o-mini", max_retries: int = 0,
             tenants: tuple[str, ...] = ("acme",)) -> Path:
        key_line = f"api_key: {api_key}" if api_key else ""
        texts = {t: TENANT.format(tenant=t, base_url=emulator.base_url, key_line=key_line, model=model,
                                  max_retries=max_retries) for t in tenants}
        return write_config(tmp_path / "config", texts, main=MAIN, data_dir=tmp_path / "data")

    return make


@pytest.fixture
async def system(make_system: Callable[..., Path]) -> AsyncIterator[Running]:
    async with running(make_system()) as r:
        yield r


async def say(r: Running, text: str, tenant: str = "acme") -> list[str]:
    """Send ``text`` through the webchat webhook, wait for the inbox, return the replies."""
    session = (await r.client.post(f"/chat/{tenant}/session")).json()
    headers = {"Authorization": f"Bearer {session['token']}"}
    answer = await r.client.post("/webhooks/webchat", json={"text": text}, headers=headers)
    assert answer.status_code == 200, answer.text
    await r.settle()
    read = await r.client.get(f"/chat/{tenant}/messages", params={"after": 0, "wait": 0}, headers=headers)
    return [m["text"] for m in read.json()["messages"] if m["from"] == "assistant"]


async def test_full_tool_loop_creates_the_lead(system: Running, emulator: OpenAIEmulator) -> None:
    replies = await say(system, DEMO)
    # The embedded CRM's industry is free text: kept as the user wrote it.
    assert replies == ["✅ Lead créé : Jean Dupont\nSecteur : BTP · Tél : +33612345678 · "
                       "E-mail : jean@dupont.fr"]
    [lead] = await system.runtime.tenant("acme").crm.list_leads()
    assert (lead.phone, lead.fields["industry"], lead.email) == ("+33612345678", "BTP", "jean@dupont.fr")

    first, second = emulator.completions()
    assert [m["role"] for m in first.body["messages"]] == ["system", "user"]
    assert {t["function"]["name"] for t in first.body["tools"]} >= {"upsert_lead", "search_leads"}
    # The second request echoes the assistant's calls and answers each by its id.
    messages = second.body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    [call] = messages[2]["tool_calls"]
    assert messages[3]["tool_call_id"] == call["id"]
    assert json.loads(messages[3]["content"])["status"] == "created"
    assert (first.status, second.status) == (200, 200)

    audit = await system.runtime.tenant("acme").memory.audit_log(action="llm_call")
    assert [e.details["model"] for e in audit] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert all(e.details["prompt_tokens"] > 0 and e.details["completion_tokens"] > 0 for e in audit)


async def test_parallel_calls_are_all_answered_in_order(system: Running, emulator: OpenAIEmulator) -> None:
    emulator.reply(None, [
        ("upsert_lead", json.dumps({"first_name": "Jean", "last_name": "Dupont", "email": "jean@dupont.fr"})),
        ("search_leads", json.dumps({"query": "Dupont"})),
    ])
    await say(system, DEMO)
    last = emulator.completions()[-1].body["messages"]
    calls = [c["id"] for c in last[2]["tool_calls"]]
    assert [m.get("tool_call_id") for m in last[3:]] == calls and len(calls) == 2


async def test_malformed_arguments_are_told_to_the_model_which_recovers(
    system: Running, emulator: OpenAIEmulator
) -> None:
    emulator.malformed_arguments()
    replies = await say(system, DEMO)
    assert replies and replies[0].startswith("✅ Lead créé : Jean Dupont")
    assert len(await system.runtime.tenant("acme").crm.list_leads()) == 1
    bodies = [r.body for r in emulator.completions()]
    assert len(bodies) == 3
    told = bodies[1]["messages"][-1]
    assert told["role"] == "tool" and "not valid JSON" in json.loads(told["content"])["error"]
    errors = await system.runtime.tenant("acme").memory.audit_log(action="tool_error")
    assert errors and errors[0].details["tool"] == "upsert_lead"


async def test_rate_limit_then_success_gives_one_answer_after_the_wait(
    system: Running, emulator: OpenAIEmulator
) -> None:
    # max_retries 0: the connector gives up at once and the inbox honours Retry-After.
    emulator.rate_limit(retry_after=0.5)
    replies = await say(system, DEMO)
    assert len(replies) == 1 and replies[0].startswith("✅ Lead créé")
    limited, retried = emulator.completions()[:2]
    assert (limited.status, retried.status) == (429, 200)
    assert retried.at - limited.at >= 0.5
    assert system.runtime.inbox.dead == []


async def test_bad_key_ends_dead_with_a_clear_reason(make_system: Any, emulator: OpenAIEmulator) -> None:
    async with running(make_system(api_key="sk-not-the-right-one-9999")) as r:
        replies = await say(r, DEMO)
        [dead] = r.runtime.inbox.dead
        assert r.runtime.inbox.stats()["dead"] == 1
    assert replies == []
    assert dead.attempts == 1
    assert "OpenAI rejected the API key for tenant acme" in dead.error
    assert "sk-not-the-right-one" not in dead.error
    assert len(emulator.completions()) == 1


async def test_keyless_ollama_style_server(make_system: Any, emulator: OpenAIEmulator) -> None:
    emulator.api_key = None
    async with running(make_system(api_key=None, model="llama3.1")) as r:
        replies = await say(r, DEMO)
        health = await r.runtime.health()
    assert replies[0].startswith("✅ Lead créé : Jean Dupont")
    assert health["tenants"]["acme"]["connectors"]["llm"]["status"] == "ok"
    assert {r.body["model"] for r in emulator.completions()} == {"llama3.1"}


def test_usage_command_sums_the_tokens_per_tenant(make_system: Any, emulator: OpenAIEmulator) -> None:
    # Synchronous: the command runs its own event loop, as it does from a shell.
    config = make_system(tenants=("acme", "globex"))

    async def talk() -> None:
        async with running(config) as r:
            await say(r, DEMO, "acme")
            await say(r, "Bonjour", "globex")

    asyncio.run(talk())
    acme_calls = emulator.completions()[:2]
    usage_command.register_commands(cli_module.cli)
    result = CliRunner().invoke(
        cli_module.cli, ["usage", "--config", str(config), "--tenant", "acme", "--since", "1h", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    [row] = report["models"]
    assert row["model"] == "gpt-4o-mini" and row["calls"] == 2
    expected_prompt = sum(max(1, len(json.dumps(c.body["messages"], ensure_ascii=False)) // 4)
                          for c in acme_calls)
    assert row["prompt_tokens"] == expected_prompt
    globex = CliRunner().invoke(cli_module.cli, ["usage", "--config", str(config), "--tenant", "globex"])
    assert "gpt-4o-mini" in globex.output and "TOTAL" in globex.output
    assert globex.output.splitlines()[2].split()[:2] == ["gpt-4o-mini", "1"]
