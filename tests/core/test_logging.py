"""Logs carry tenant and message id, come as text or JSON, and never hold a secret."""

from __future__ import annotations

import io
import json
import logging

from loguru import logger

from maxcore.logs import REDACTOR, Redactor, setup_logging


def test_redactor_hides_configured_secrets_and_url_tokens():
    redact = Redactor(["s3cr3t-api-key-value"])
    text = redact(
        "POST https://7105.api.greenapi.com/waInstance7105440259/sendMessage/d75b3a66374942c5b3c019c698"
        " failed; key=s3cr3t-api-key-value; Authorization: Bearer abcdefghijklmnop; ?token=xyz123"
    )
    assert "d75b3a66374942c5b3c019c698" not in text
    assert "/waInstance7105440259/sendMessage/***" in text
    assert "s3cr3t-api-key-value" not in text
    assert "abcdefghijklmnop" not in text and "Bearer ***" in text
    assert "xyz123" not in text


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
