"""Hostile bodies on every webhook route and channel parser.

Never a 500, never a dead worker, never a forged log line, and a valid message sent
afterwards is still answered. Budgets are small and derandomized here (the whole folder
in well under a minute); ``bench/fuzz_webhooks.py`` runs the same properties for long.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

from fuzz_support import INSTANCE, WORKERS, LiveApp, bearer, forged_lines, post
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from maxcore_greenapi.parse import parse_notification
from strategies import SEEDS, greenapi_bodies, values, webchat_bodies

from maxcore.durable_inbox import encode_message
from maxcore.errors import WebhookError
from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.harness import Running
from maxcore.webhooks import BodyRejected, clean_message, decode_json

EXAMPLES = int(os.environ.get("MAXCORE_FUZZ_EXAMPLES", "300"))
# Fixed seed in the suite; bench/fuzz_webhooks.py sets MAXCORE_FUZZ_RANDOM for new inputs.
FUZZ = settings(max_examples=EXAMPLES, derandomize=not os.environ.get("MAXCORE_FUZZ_RANDOM"),
                deadline=None, database=None, suppress_health_check=list(HealthCheck))

TEXT = json.dumps(next(s for s in SEEDS if s.get("messageData", {}).get("typeMessage") == "textMessage"))
AUTH_SHAPES = [
    TEXT.replace('"timestamp": ', '"timestamp": ' + "9" * 400 + ", \"t\": ", 1),     # 400-digit time
    TEXT.replace('"textMessage": "', '"textMessage": "\\ud800', 1),                 # lone surrogate
    TEXT.replace('"typeWebhook": "incomingMessageReceived"', '"typeWebhook": "x\\n2026-01-01 00:00:00'
                 '.000 | ERROR   | tenant=acme msg=- | forged"', 1),                # log forging
    TEXT[:-1] + ', "v": ' + "[" * 600 + "]" * 600 + "}",                              # 600 deep
]
UNAUTH_SHAPES = ['{"n": ' + "9" * 4301 + "}", "[" * 1000 + "]" * 1000, '{"a": NaN}']


def _ok(status: int) -> bool:
    return status in (200, 400, 401, 413)


def _parser_accepts(data: Any) -> None:
    """The parser either classifies a notification or names the field (400); what it
    returns can always be stored."""
    try:
        parsed = parse_notification(data, "acme")
    except WebhookError as exc:
        assert exc.status == 400
        return
    if parsed.message is not None:
        encode_message(clean_message(parsed.message)).encode("utf-8")


@FUZZ
@given(st.sampled_from(SEEDS).flatmap(lambda seed: st.just(seed)), values)
def test_parser_never_raises_anything_but_400(seed: dict[str, Any], value: Any) -> None:
    for key in list(seed)[:6]:
        _parser_accepts({**seed, key: value})
        inner = seed.get(key)
        if isinstance(inner, dict):
            for sub in list(inner)[:4]:
                _parser_accepts({**seed, key: {**inner, sub: value}})


@FUZZ
@given(greenapi_bodies(instance=INSTANCE))
def test_decoder_bounds_or_decodes(body: bytes) -> None:
    try:
        data = decode_json(body)
    except (BodyRejected, ValueError):
        return  # ValueError: JSONDecodeError / UnicodeDecodeError, answered 400
    json.dumps(data, ensure_ascii=False).encode("utf-8")  # nothing unencodable survives


@FUZZ
@given(greenapi_bodies(instance=INSTANCE), st.sampled_from(["good", "wrong", "none"]))
@example(b'{"typeWebhook": "incomingMessageReceived"}', "good")
def test_greenapi_route(app: LiveApp, body: bytes, auth: str) -> None:
    headers = {"good": bearer(), "wrong": bearer("nope"), "none": {}}[auth]
    response = post(app, "/webhooks/greenapi", body, headers)
    assert _ok(response.status_code), (response.status_code, response.text, body[:300])
    assert "Traceback" not in response.text


def test_known_hostile_shapes(app: LiveApp) -> None:
    for body in AUTH_SHAPES:
        response = post(app, "/webhooks/greenapi", body.encode(), bearer())
        assert response.status_code == 200, (response.text, body[:200])
    for body in UNAUTH_SHAPES:
        response = post(app, "/webhooks/greenapi", body.encode(), {})
        assert response.status_code == 400 and "body refused" in response.json()["error"]


@FUZZ
@given(webchat_bodies())
def test_webchat_route(app: LiveApp, body: bytes) -> None:
    async def send(r: Running) -> Any:
        session = (await r.client.post("/chat/web/session")).json()
        return await r.client.post("/webhooks/webchat", content=body,
                                   headers={"Authorization": f"Bearer {session['token']}"})

    response = app.call(send)
    assert _ok(response.status_code), (response.status_code, response.text, body[:300])


def test_afterwards_everything_still_works(
    app: LiveApp, log_stream: io.StringIO, emulator: GreenApiEmulator
) -> None:
    """Run last in this module: after the fuzzing, workers alive, a valid message answered."""
    valid = json.loads(TEXT)
    valid["idMessage"] = "3EB0AFTERFUZZ0001"
    valid["senderData"].update(chatId="33699999999@c.us", sender="33699999999@c.us")

    async def check(r: Running) -> dict[str, Any]:
        response = await r.client.post("/webhooks/greenapi", content=json.dumps(valid), headers=bearer())
        assert response.status_code == 200 and response.json()["accepted"] == 1
        await r.settle(60)
        return r.runtime.inbox.stats()

    stats = app.call(check, timeout=90)
    assert stats["workers"] == WORKERS and stats["worker_restarts"] == 0
    assert len(emulator.sent_to("33699999999@c.us")) == 1
    log = log_stream.getvalue()
    assert not forged_lines(log), forged_lines(log)[:3]
    assert "unhandled error" not in log

