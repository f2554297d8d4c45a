"""Languages are data: a pack per code, any text overridable per tenant."""

from __future__ import annotations

import pytest

from maxcore import InboundMessage, LLMReply
from maxcore.config import load_config
from maxcore.languages import UnknownLanguageError, available_languages, language_pack
from maxcore.runtime import Runtime
from tests.conftest import REQUESTS, call


def test_every_shipped_pack_has_the_same_texts() -> None:
    assert {"fr", "en"} <= set(available_languages())
    keys = {code: set(language_pack(code).texts) for code in available_languages()}
    assert len({frozenset(k) for k in keys.values()}) == 1, keys
    assert "fallback_reply" in keys["fr"] and "system_prompt" in keys["fr"]


def test_unknown_language_names_the_available_ones() -> None:
    with pytest.raises(UnknownLanguageError, match="no language pack 'de'; available: en, fr"):
        language_pack("de")


def test_overrides_replace_texts_and_unknown_keys_are_refused() -> None:
    pack = language_pack("en", {"fallback_reply": "We will call you back."})
    assert pack.texts["fallback_reply"] == "We will call you back."
    assert pack.texts["console_prompt"] == language_pack("en").texts["console_prompt"]
    with pytest.raises(KeyError, match="unknown text 'nope'"):
        language_pack("en", {"nope": "x"})


def test_check_reports_an_unknown_text_key_with_its_path(make_config, plugins) -> None:
    config = make_config("acme", extra="  texts: {fallback_reply: ok, goodbye: bye}\n")
    problems = [str(p) for p in load_config(config, plugins, env={}).problems]
    assert any("tenants/acme.yaml: assistant.texts.goodbye: unknown text; expected one of:" in p
               for p in problems), problems


@pytest.mark.parametrize("language", ["fr", "en"])
async def test_tenant_texts_reach_the_model_and_the_customer(make_config, plugins, script,
                                                              language: str) -> None:
    extra = ("  texts:\n    fallback_reply: 'Un instant, on vous rappelle.'\n"
             "    system_prompt: 'You are {name} for {company}; answer briefly.'\n")
    config = make_config("acme", llm="scripted", language=language, extra=extra)
    runtime = Runtime.from_directory(config, plugins=plugins)
    await runtime.open()
    try:
        script(*[LLMReply(tool_calls=(call("search_leads", {}, f"c{i}"),)) for i in range(6)])
        result = await runtime.handle(InboundMessage(
            tenant="acme", channel="webchat", chat_id="chat-1", message_id="m1", text="hello"))
    finally:
        await runtime.close()
    assert result.reply is not None and result.reply.text == "Un instant, on vous rappelle."
    assert REQUESTS["default"][0].system.startswith("You are MAX for ")
