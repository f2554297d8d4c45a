"""The webchat's public surface: every anonymous input bounded, every sender limited."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from pathlib import Path

import pytest

from maxcore.builtin.webchat import client_network
from maxcore.testing.harness import running, write_config

TENANT = """
tenant: {tenant}
name: {name}
channel: {{type: webchat, {channel}}}
crm: {{type: sqlite}}
memory: {{type: sqlite}}
llm: {{type: offline}}
assistant: {{language: {language}}}
"""


@pytest.fixture
def config(tmp_path: Path):
    def make(channel: str = "", name: str = "Acme", language: str = "fr", main: str = "",
             data: str = "data") -> Path:
        return write_config(
            tmp_path / f"config-{data}",
            {"acme": TENANT.format(tenant="acme", name=json.dumps(name), channel=channel,
                                   language=language)},
            main=main, data_dir=tmp_path / data,
        )

    return make


def bearer(token: str | bytes) -> dict[str, str | bytes]:
    return {"Authorization": (b"Bearer " + token) if isinstance(token, bytes) else f"Bearer {token}"}


async def session(client, **headers: str) -> str:
    response = await client.post("/chat/acme/session", headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def post(client, token: str, text: str = "bonjour", message_id: object = None, **headers):
    body: dict[str, object] = {"text": text}
    if message_id is not None:
        body["id"] = message_id
    return await client.post("/webhooks/webchat", json=body, headers={**bearer(token), **headers})


# -- 1. query values ------------------------------------------------------------------
@pytest.mark.parametrize("query, field", [
    ("wait=nan", "wait"), ("wait=NaN", "wait"), ("wait=inf", "wait"), ("wait=-inf", "wait"),
    ("wait=-1", "wait"), ("wait=1e3", "wait"), ("wait=26", "wait"), ("wait=" + "9" * 400, "wait"),
    ("wait=abc", "wait"), ("wait=", "wait"), ("wait=%00", "wait"), ("wait=1&wait=nan", "wait"),
    ("after=-1", "after"), ("after=1.5", "after"), ("after=" + "9" * 5000, "after"),
    ("after=9007199254740993", "after"), ("after=x", "after"), ("since=3", "since"),
])
async def test_bad_query_values_get_400_naming_the_parameter(config, query, field):
    async with running(config()) as r:
        token = await session(r.client)
        response = await r.client.get(f"/chat/acme/messages?{query}", headers=bearer(token))
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]


async def test_a_valid_short_poll_still_answers(config):
    async with running(config()) as r:
        token = await session(r.client)
        response = await r.client.get("/chat/acme/messages?after=0&wait=0.2", headers=bearer(token))
    assert response.status_code == 200 and response.json() == {"messages": []}


# -- 2. ids, text, tokens ---------------------------------------------------------------
@pytest.mark.parametrize("message_id", [
    "m-1\nINFO forged line", "m\r1", "m\x001", "x" * 129, "", 12, ["a"], {"a": 1}, "é", "a b",
])
async def test_message_ids_are_bounded_and_printable(config, message_id):
    async with running(config()) as r:
        response = await post(r.client, await session(r.client), message_id=message_id)
    assert response.status_code == 400 and "field id" in response.json()["error"]


@pytest.mark.parametrize("text", ["a\x00b", "a\x1b[31mb", "\x7f", "a\x85b"])
async def test_control_characters_in_text_are_refused(config, text):
    async with running(config()) as r:
        response = await post(r.client, await session(r.client), text=text)
    assert response.status_code == 400 and "field text" in response.json()["error"]


async def test_text_keeps_line_breaks_and_tabs(config):
    async with running(config()) as r:
        response = await post(r.client, await session(r.client), text="a\n\tb\r\nc", message_id="m1")
    assert response.status_code == 200


async def test_text_longer_than_configured_is_refused(config):
    async with running(config("max_text_chars: 10")) as r:
        response = await post(r.client, await session(r.client), text="x" * 11)
    assert response.status_code == 400 and "10 characters" in response.json()["error"]


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2].encode() + "é€".encode(),          # non-ASCII signature
    lambda t: t[:-2].encode() + b"\xff\xfe",              # not UTF-8 at all
    lambda t: "é".encode() + t.encode(),                  # non-ASCII claims
    lambda t: base64.urlsafe_b64encode(b"[" * 300).rstrip(b"=") + b"." + b"A" * 43,  # deep
    lambda t: base64.urlsafe_b64encode(b'{"t":"acme","exp":' + b"9" * 380 + b"}").rstrip(b"=")
    + b"." + b"A" * 43,                                   # huge integer
    lambda t: (t + "x" * 600).encode(),                   # too long
    lambda t: b".".join([t.encode()] * 3),                # too many parts
])
async def test_malformed_tokens_are_401_never_500(config, mangle):
    async with running(config()) as r:
        token = mangle(await session(r.client))
        sent = await r.client.post("/webhooks/webchat", json={"text": "x"}, headers=bearer(token))
        read = await r.client.get("/chat/acme/messages?wait=0", headers=bearer(token))
    assert (sent.status_code, read.status_code) == (401, 401), (sent.text, read.text)


# -- 3. rate limits and caps -------------------------------------------------------------
async def test_messages_per_session_are_limited_with_retry_after(config):
    async with running(config("messages_per_minute: 3")) as r:
        token = await session(r.client)
        codes = [(await post(r.client, token, message_id=f"m{n}")).status_code for n in range(3)]
        refused = await post(r.client, token, message_id="m3")
        other = await post(r.client, await session(r.client), message_id="o1")
    assert codes == [200, 200, 200]
    assert refused.status_code == 429 and re.search(r"retry in \d+ s", refused.json()["error"])
    assert other.status_code == 200  # another session has its own quota


async def test_a_refused_webhook_carries_retry_after(config):
    async with running(config("messages_per_minute: 1")) as r:
        token = await session(r.client)
        await post(r.client, token, message_id="m0")
        refused = await post(r.client, token, message_id="m1")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1


async def test_messages_per_client_address_are_limited_across_sessions(config):
    channel = "messages_per_minute_per_client: 4, client_ip_header: X-Real-IP"
    async with running(config(channel)) as r:
        tokens = [await session(r.client, **{"X-Real-IP": "203.0.113.7"}) for _ in range(3)]
        codes = [(await post(r.client, t, message_id=f"{i}-{n}")).status_code
                 for n in range(2) for i, t in enumerate(tokens)]
        elsewhere = await post(r.client, await session(r.client, **{"X-Real-IP": "198.51.100.1"}))
    assert codes == [200, 200, 200, 200, 429, 429]
    assert elsewhere.status_code == 200


async def test_the_whole_tenant_is_limited(config):
    async with running(config("messages_per_minute_total: 2")) as r:
        codes = [(await post(r.client, await session(r.client))).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


async def test_new_sessions_per_client_are_limited_with_retry_after(config):
    channel = "sessions_per_hour_per_client: 2, client_ip_header: X-Forwarded-For"
    async with running(config(channel)) as r:
        ip = {"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}  # the proxy's entry counts
        ok = [(await r.client.post("/chat/acme/session", headers=ip)).status_code for _ in range(2)]
        refused = await r.client.post("/chat/acme/session",
                                      headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.7"})
        other = await r.client.post("/chat/acme/session", headers={"X-Forwarded-For": "203.0.113.8"})
    assert ok == [200, 200]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert other.status_code == 200


async def test_open_reads_per_session_are_capped(config):
    async with running(config()) as r:
        token = await session(r.client)
        channel = r.runtime.tenant("acme").channel
        polls = [asyncio.create_task(
            r.client.get("/chat/acme/messages?wait=10", headers=bearer(token))) for _ in range(3)]
        for _ in range(200):
            if sum(channel._open_polls.values()) == 3:
                break
            await asyncio.sleep(0.01)
        refused = await r.client.get("/chat/acme/messages?wait=10", headers=bearer(token))
        await post(r.client, token, message_id="wake")  # answers the three open reads
        answered = await asyncio.gather(*polls)
    assert refused.status_code == 429 and refused.headers["retry-after"]
    assert [p.status_code for p in answered] == [200, 200, 200]
    assert channel._open_polls == {}


async def test_limits_can_be_switched_off_for_load_tests(config):
    async with running(config("messages_per_minute: 1, rate_limits: false")) as r:
        token = await session(r.client)
        codes = {(await post(r.client, token, message_id=f"m{n}")).status_code for n in range(5)}
    assert codes == {200}


@pytest.mark.parametrize("address, network", [
    ("203.0.113.7", "203.0.113.7"), ("::ffff:203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"), ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
    ("not an address", "unknown"), (None, "unknown"),
])
def test_client_networks(address, network):
    assert client_network(address) == network


# -- 4. the page -------------------------------------------------------------------------
HOSTILE = '</script><script>alert(1)</script><!-- & "quotes" \u2028'


async def test_a_hostile_tenant_name_stays_data(config):
    async with running(config(name=HOSTILE)) as r:
        page = await r.client.get("/chat/acme")
    text = page.text
    assert "<script>alert(1)" not in text and "</script><script>" not in text
    block = re.search(r'<script type="application/json" id="settings">(.*?)</script>', text, re.S)
    assert block is not None and json.loads(block.group(1))["title"].endswith(HOSTILE)
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in re.search(r"<title>(.*)</title>", text).group(1)


@pytest.mark.parametrize("path", ["/chat/acme", "/chat/-/chat.js", "/chat/-/chat.css",
                                  "/chat/-/nope.js", "/chat/globex", "/chat"])
async def test_every_webchat_answer_sends_the_security_headers(config, path):
    async with running(config()) as r:
        response = await r.client.get(path)
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"


async def test_the_json_api_sends_them_too(config):
    async with running(config()) as r:
        created = await r.client.post("/chat/acme/session")
        refused = await r.client.get("/chat/acme/messages?wait=nan", headers=bearer(created.json()["token"]))
    assert created.headers["x-content-type-options"] == refused.headers["x-content-type-options"] == "nosniff"


async def test_the_page_has_no_inline_script(config):
    async with running(config()) as r:
        page = (await r.client.get("/chat/acme")).text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert all('type="application/json"' in attrs or (not body.strip() and "src=" in attrs)
               for attrs, body in scripts)
    assert "style=" not in page and "<style" not in page and " on" not in page.split("<body>")[1]


@pytest.mark.parametrize("language, word", [("fr", "Réessayer"), ("en", "Retry")])
async def test_page_texts_follow_the_tenant_language(config, language, word):
    async with running(config(language=language)) as r:
        page = (await r.client.get("/chat/acme")).text
    assert f'<html lang="{language}">' in page
    settings = json.loads(re.search(r'id="settings">(.*?)</script>', page, re.S).group(1))
    assert settings["language"] == language and settings["texts"]["retry"] == word


# -- 5. server.session_secret ------------------------------------------------------------
async def test_sessions_are_signed_with_the_configured_session_secret(config, tmp_path):
    main = "server: {session_secret: correct-horse-battery-staple-0123456789}\n"
    async with running(config(main=main, data="one")) as r:
        token = await session(r.client)
    payload, signature = token.split(".")
    expected = hmac.new(b"correct-horse-battery-staple-0123456789", payload.encode(),
                        hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "=") == expected
    assert not (tmp_path / "one" / "webchat.secret").exists()
    # Another server (another data directory) with the same secret accepts the session.
    async with running(config(main=main, data="two")) as r:
        assert (await post(r.client, token, message_id="m1")).status_code == 200
    async with running(config(data="three")) as r:
        assert (await post(r.client, token, message_id="m1")).status_code == 401


async def test_a_tenant_may_override_the_page_texts(config):
    async with running(config(language="en, texts: {webchat_retry: Try again}")) as r:
        page = (await r.client.get("/chat/acme")).text
    settings = json.loads(re.search(r'id="settings">(.*?)</script>', page, re.S).group(1))
    assert settings["texts"]["retry"] == "Try again" and settings["texts"]["unsent"] == "Not sent"
