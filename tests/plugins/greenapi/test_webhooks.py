"""Webhook mode end to end: Green-API's sender → maxcore → pipeline → sendMessage."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner
from greenapi_support import (
    INSTANCE,
    OTHER_INSTANCE,
    OTHER_WEBHOOK_TOKEN,
    WEBHOOK_TOKEN,
    bearer,
    load_fixture,
)

from maxcore.app import create_app
from maxcore.cli import cli, plugins
from maxcore.testing.greenapi_emulator import GreenApiEmulator, WebhookSender
from maxcore.testing.harness import running

LEAD_TEXT = "Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, +33 6 12 34 56 78"


def text_message(message_id: str, chat_id: str = "33612345678@c.us", text: str = LEAD_TEXT,
                 instance: int = INSTANCE) -> dict[str, Any]:
    body = load_fixture("incoming_text.json")
    body["idMessage"] = message_id
    body["instanceData"]["idInstance"] = instance
    body["senderData"].update(chatId=chat_id, sender=chat_id)
    body["messageData"]["textMessageData"]["textMessage"] = text
    return body


async def test_triple_delivery_is_processed_once(
    make_config: Callable[..., Path], emulator: GreenApiEmulator
) -> None:
    async with running(make_config()) as r:
        sender = WebhookSender(r.client, "/webhooks/greenapi", WEBHOOK_TOKEN)
        delivery = await sender.deliver(text_message("3EB0TRIPLE0001"), copies=3)
        assert delivery.statuses == [200, 200, 200]
        await r.settle()
        memory = r.runtime.tenant("acme").memory
        leads = await r.runtime.tenant("acme").crm.list_leads()
        replies = await memory.audit_log(action="reply_sent")
    sent = emulator.sent_to("33612345678@c.us")
    assert len(sent) == 1 and len(replies) == 1
    assert "Jean Dupont" in sent[0]["message"]
    assert [lead.email for lead in leads] == ["jean@dupont.fr"]


async def test_sender_redelivers_until_200(
    make_config: Callable[..., Path], emulator: GreenApiEmulator
) -> None:
    """Green-API resends a body that did not get a 200; the second copy is the one kept."""
    async with running(make_config()) as r:
        app = create_app(r.runtime, manage_lifecycle=False)
        failures = {"left": 2}

        async def flaky(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and failures["left"] > 0:
                failures["left"] -= 1
                await send({"type": "http.response.start", "status": 502, "headers": []})
                await send({"type": "http.response.body", "body": b"bad gateway"})
                return
            await app(scope, receive, send)

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=flaky),
                                     base_url="http://maxcore.test") as client:
            sender = WebhookSender(client, "/webhooks/greenapi", WEBHOOK_TOKEN, retry_pause_s=0.01)
            delivery = await sender.deliver(text_message("3EB0FLAKY0001"))
        assert delivery.statuses == [502, 502, 200]
        await r.settle()
    assert len(emulator.sent_to("33612345678@c.us")) == 1


async def test_refusals(make_config: Callable[..., Path], emulator: GreenApiEmulator) -> None:
    body = json.dumps(text_message("3EB0REFUSE0001"))
    async with running(make_config(two_tenants=True)) as r:
        post = r.client.post
        wrong = await post("/webhooks/greenapi", content=body, headers=bearer("not-the-token"))
        assert wrong.status_code == 401 and "token" in wrong.json()["error"]
        missing = await post("/webhooks/greenapi", content=body)
        assert missing.status_code == 401
        # Another tenant's (valid) token does not open this tenant's instance.
        crossed = await post("/webhooks/greenapi", content=body, headers=bearer(OTHER_WEBHOOK_TOKEN))
        assert crossed.status_code == 401
        unknown = json.dumps(text_message("3EB0REFUSE0002", instance=7105999999))
        not_found = await post("/webhooks/greenapi", content=unknown, headers=bearer())
        # An unknown instance gets the very answer a wrong token gets: ids are not enumerable.
        assert not_found.status_code == 401 and not_found.json() == wrong.json() == missing.json()
        garbage = await post("/webhooks/greenapi", content=b"{not json", headers=bearer())
        assert garbage.status_code == 400 and "not valid JSON" in garbage.json()["error"]
        no_instance = await post("/webhooks/greenapi", content=b'{"typeWebhook": "x"}', headers=bearer())
        assert no_instance.status_code == 400
        assert "instanceData" in no_instance.json()["error"]
        # Authenticated but unusable: 200 (Green-API would redeliver anything else for a
        # day) and a dead letter holding the raw body and the reason.
        no_type = json.dumps({"instanceData": {"idInstance": INSTANCE}})
        untyped = await post("/webhooks/greenapi", content=no_type, headers=bearer())
        assert untyped.status_code == 200 and untyped.json()["dead_letters"] == 1
        no_chat = text_message("3EB0REFUSE0003")
        del no_chat["senderData"]["chatId"]
        chatless = await post("/webhooks/greenapi", content=json.dumps(no_chat), headers=bearer())
        assert chatless.status_code == 200 and chatless.json()["dead_letters"] == 1
        with sqlite3.connect(r.runtime.inbox.path) as conn:  # what `maxcore inbox` shows
            dead = dict(conn.execute("SELECT last_error, payload FROM inbox WHERE state = 'dead'"))
        assert set(dead) == {"missing field typeWebhook", "missing field senderData.chatId"}
        assert json.loads(dead["missing field typeWebhook"])["metadata"]["raw_body"] == no_type
        huge = json.dumps({**text_message("3EB0REFUSE0004"), "pad": "x" * 2_000_000})
        too_big = await post("/webhooks/greenapi", content=huge, headers=bearer())
        assert too_big.status_code == 413
        bare = await post("/webhooks/greenapi", content=body, headers={"Authorization": WEBHOOK_TOKEN})
        assert bare.status_code == 200  # the bare token, as Green-API's own servers accept
        await r.settle()
    assert len(emulator.sent_to("33612345678@c.us")) == 1


async def test_two_tenants_each_get_their_own_messages(
    make_config: Callable[..., Path], emulator: GreenApiEmulator
) -> None:
    async with running(make_config(two_tenants=True)) as r:
        a = WebhookSender(r.client, "/webhooks/greenapi", WEBHOOK_TOKEN)
        b = WebhookSender(r.client, "/webhooks/greenapi", OTHER_WEBHOOK_TOKEN)
        await a.deliver(text_message("3EB0SAMEID", chat_id="33611111111@c.us"))
        # Same chat id and message id on the other instance: a different message.
        await b.deliver(text_message("3EB0SAMEID", chat_id="33611111111@c.us", instance=OTHER_INSTANCE,
                                     text="Nouveau lead : Marie Curie, marie@curie.fr"))
        await r.settle()
        leads_a = await r.runtime.tenant("acme").crm.list_leads()
        leads_b = await r.runtime.tenant("globex").crm.list_leads()
    assert [lead.email for lead in leads_a] == ["jean@dupont.fr"]
    assert [lead.email for lead in leads_b] == ["marie@curie.fr"]
    assert len(emulator.instances[INSTANCE].sent) == 1
    assert len(emulator.instances[OTHER_INSTANCE].sent) == 1


async def test_setup_command_then_webhook_from_the_settings(
    make_config: Callable[..., Path], emulator: GreenApiEmulator
) -> None:
    config_dir = make_config()
    cli_group = cli
    plugins().hooks.register_commands(cli_group)
    result = await asyncio.to_thread(CliRunner().invoke, cli_group, [
        "greenapi", "setup", "--config", str(config_dir), "--tenant", "acme",
        "--public-url", "http://maxcore.test/",
    ])
    assert result.exit_code == 0, result.output
    assert "5 minutes" in result.output
    settings = emulator.instances[INSTANCE].settings
    assert settings["webhookUrl"] == "http://maxcore.test/webhooks/greenapi"
    assert settings["incomingWebhook"] == "yes" and settings["stateWebhook"] == "yes"
    assert settings["outgoingAPIMessageWebhook"] == "no" and settings["outgoingMessageWebhook"] == "no"
    assert settings["outgoingWebhook"] == "no"
    async with running(config_dir) as r:
        sender = WebhookSender.for_instance(emulator, INSTANCE, r.client)
        await sender.deliver(text_message("3EB0SETUP0001"))
        await r.settle()
    assert len(emulator.sent_to("33612345678@c.us")) == 1

    missing_url = await asyncio.to_thread(CliRunner().invoke, cli_group, [
        "greenapi", "setup", "--config", str(config_dir), "--tenant", "acme"])
    assert missing_url.exit_code == 1 and "--public-url" in missing_url.output
    emulator.instances[INSTANCE].api_token = "rotated"
    refused = await asyncio.to_thread(CliRunner().invoke, cli_group, [
        "greenapi", "setup", "--config", str(config_dir), "--tenant", "acme",
        "--public-url", "https://crm.example.com"])
    assert refused.exit_code == 1 and "401" in refused.output
    unknown = await asyncio.to_thread(CliRunner().invoke, cli_group, [
        "greenapi", "setup", "--config", str(config_dir), "--tenant", "nobody",
        "--public-url", "https://crm.example.com"])
    assert unknown.exit_code == 1 and "nobody" in unknown.output
