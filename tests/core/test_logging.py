"""Logs carry tenant and message id, come as text or JSON, and never hold a secret."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable

from loguru import logger

from maxcore.logs import REDACTOR, Redactor, required_text, setup_logging


def test_redactor_hides_configured_secrets_and_generic_credential_shapes():
    redact = Redactor(["s3cr3t-api-key-value"])
    text = redact(
        "POST https://api.example.com/v1/send failed; key=s3cr3t-api-key-value; "
        "Authorization: Bearer abcdefghijklmnop; ?token=xyz123&api_key=k-42"
    )
    assert "s3cr3t-api-key-value" not in text
    assert "abcdefghijklmnop" not in text and "Bearer ***" in text
    assert "xyz123" not in text and "token=***" in text and "api_key=***" in text


def test_the_core_knows_no_provider_url_shape():
    # A token in a URL path is the provider's business: its plugin declares the shape.
    text = Redactor()("GET https://api.example.com/instance42/getState/d75b3a66374942c5b3c019")
    assert "d75b3a66374942c5b3c019" in text


def test_plugin_patterns_hide_their_secret_group_or_the_whole_match():
    redact = Redactor()
    redact.add_pattern(re.compile(r"/bot(?P<secret>\d+:[A-Za-z0-9_-]{20,})/"))
    redact.add_pattern(re.compile(r"sk_live_[A-Za-z0-9]{10,}"))
    text = redact("POST https://api.example.org/bot123456:AAbbCCddEEffGGhhIIjjKK/sendMessage "
                  "with sk_live_abcdefghijkl")
    assert text == "POST https://api.example.org/bot***/sendMessage with ***"


def test_a_pattern_runs_only_on_lines_holding_its_literal_text():
    # Every match of these contains "/bot" / "sk_live_": lines without it skip the regex.
    assert required_text(re.compile(r"/bot(?P<secret>\d+:[A-Za-z0-9_-]{20,})/")) == "/bot"
    assert required_text(re.compile(r"sk_live_[A-Za-z0-9]{10,}")) == "sk_live_"
    assert required_text(re.compile(r"(?i)Token: (\w+)")) == "token: "
    # No literal every match needs (alternatives, optional parts, too short): always run.
    assert required_text(re.compile(r"(?:sk|pk)_[a-z0-9]{12}")) is None
    assert required_text(re.compile(r"ab?c+")) is None
    redact = Redactor()
    redact.add_pattern(re.compile(r"(?i)Token: (?P<secret>\w+)"))
    # The needle is compared with the lowered line: case-insensitive patterns still match.
    assert redact("got TOKEN: abc123 back") == "got TOKEN: *** back"
    assert redact("no credential here: token-less") == "no credential here: token-less"
    # The generic key=value shape: only the credential words, not every "=".
    assert redact("tenant=acme msg=m1 | done") == "tenant=acme msg=m1 | done"
    assert redact("GET /x?access_token=abcdef&x=1") == "GET /x?access_token=***&x=1"


def test_connector_patterns_are_collected_when_plugins_load():
    from maxcore.plugins import load_plugins

    load_plugins()
    # The Green-API plugin declares /waInstance{id}/{method}/{token}.
    text = REDACTOR("POST https://7105.api.greenapi.com/waInstance7105440259/sendMessage/"
                    "d75b3a66374942c5b3c019c698 failed")
    assert "d75b3a66374942c5b3c019c698" not in text
    assert "/waInstance7105440259/sendMessage/***" in text


def test_text_and_json_sinks_redact_and_carry_context():
    REDACTOR.add("tenant-secret-123456")
    stream = io.StringIO()
    setup_logging("INFO", "json", stream=stream)
    try:
        logger.bind(tenant="acme", message_id="m-1").info("[PIPELINE] using tenant-secret-123456")
        try:
            raise RuntimeError("boom with tenant-secret-123456")
        except RuntimeError:
            logger.bind(tenant="acme", message_id="m-1").exception("failed")
        logging.getLogger("hypercorn.error").warning("from stdlib tenant-secret-123456")
    finally:
        setup_logging("INFO", "text")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["tenant"] == "acme" and lines[0]["message_id"] == "m-1"
    assert lines[0]["message"] == "[PIPELINE] using ***"
    assert "RuntimeError: boom with ***" in lines[1]["exception"]
    assert lines[2]["message"] == "from stdlib ***"
    assert "tenant-secret-123456" not in stream.getvalue()


def test_text_format_has_tenant_and_message_id():
    stream = io.StringIO()
    setup_logging("INFO", "text", stream=stream)
    try:
        logger.bind(tenant="acme", message_id="m-9").info("[LLM] 1 tool call(s) detected")
    finally:
        setup_logging("INFO", "text")
    assert "tenant=acme msg=m-9 | [LLM] 1 tool call(s) detected" in stream.getvalue()


def test_tracebacks_do_not_show_local_variables():
    stream = io.StringIO()
    setup_logging("INFO", "text", stream=stream)
    try:
        api_key = "local-variable-secret-value"  # noqa: F841 - must not appear
        try:
            raise ValueError("bad")
        except ValueError:
            logger.exception("failed")
    finally:
        setup_logging("INFO", "text")
    assert "local-variable-secret-value" not in stream.getvalue()


RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| ")


def _text_lines(emit: Callable[[], None]) -> list[str]:
    stream = io.StringIO()
    setup_logging("INFO", "text", stream=stream)
    try:
        emit()
    finally:
        setup_logging("INFO", "text")
    return stream.getvalue().splitlines()


def test_user_values_cannot_forge_a_text_record():
    forged = "x\n2026-01-01 00:00:00.000 | ERROR   | tenant=acme msg=- | forged\r\x1b[2J\u2028"

    def emit() -> None:
        logger.bind(tenant="acme", message_id=forged).info("[GREENAPI_WEBHOOK] {} ignored", forged)
        try:
            raise ValueError(forged)
        except ValueError:
            logger.exception("failed on {}", forged)

    lines = _text_lines(emit)
    records = [line for line in lines if RECORD_START.match(line)]
    assert len(records) == 2, lines
    assert all(line.startswith("    ") for line in lines if not RECORD_START.match(line))
    assert "\\n2026-01-01" in records[0] and "\\x1b[2J" in records[0] and "\\u2028" in records[0]
    assert "\x1b" not in "".join(lines) and "\r" not in "".join(lines)


def test_lone_surrogates_are_logged_as_escapes_in_both_formats():
    text_lines = _text_lines(lambda: logger.bind(message_id="m-\ud800").info("text \udfff"))
    assert text_lines[-1].endswith("msg=m-\\ud800 | text \\udfff")
    stream = io.StringIO()
    setup_logging("INFO", "json", stream=stream)
    try:
        logger.bind(message_id="m-\ud800").info("text \udfff")
    finally:
        setup_logging("INFO", "text")
    record = json.loads(stream.getvalue())
    assert record["message"] == "text \udfff" and record["message_id"] == "m-\ud800"


def test_only_credential_fields_are_redacted(tmp_path, monkeypatch):
    """An instance id from the environment is not a secret: chat ids keep their digits."""
    from maxcore.plugins import load_plugins
    from maxcore.runtime import configured_secrets, load_checked
    from maxcore.testing.harness import write_config

    monkeypatch.setenv("GA_INSTANCE", "3361234567")
    monkeypatch.setenv("GA_TOKEN", "ga-api-token-0123456789abcdef")
    write_config(tmp_path / "config", {"acme": """
        tenant: acme
        channel: {type: greenapi, instance_id: "${GA_INSTANCE}", api_token: "${GA_TOKEN}",
                  webhook_token: wh-token-0123456789, mode: webhook}
        """}, main="server: {health_token: health-0123456789}\n", data_dir=tmp_path / "data")
    loaded = load_checked(tmp_path / "config", load_plugins())
    assert configured_secrets(loaded) == {
        "ga-api-token-0123456789abcdef", "wh-token-0123456789", "health-0123456789"}
    line = REDACTOR("chat 33612345678@c.us instance 3361234567 token ga-api-token-0123456789abcdef")
    assert line == "chat 33612345678@c.us instance 3361234567 token ***"


def test_redactor_finds_every_secret_added_before_and_after_a_build():
    redact = Redactor()
    secrets = [f"secret-{n:04d}-{'x' * (n % 7)}" for n in range(300)]
    for secret in secrets[:200]:
        redact.add(secret)
    assert redact(f"a {secrets[3]} b {secrets[199]}") == "a *** b ***"  # built here
    for secret in secrets[200:203]:
        redact.add(secret)  # looked for one by one until the next build
    assert redact(f"{secrets[201]}/{secrets[0]}") == "***/***"
    for secret in secrets[203:]:
        redact.add(secret)
    assert redact(f"<{secrets[299]}>") == "<***>"
    overlapping = Redactor(["abcdef", "defghi"])
    assert overlapping("xxabcdefghixx") == "xx***xx"
