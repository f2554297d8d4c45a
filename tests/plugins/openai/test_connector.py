"""The openai connector against the emulator: wire format, replies, errors, health."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from loguru import logger
from maxcore_openai import OpenAIConfig, OpenAILLM

from maxcore.config.structure import structure
from maxcore.errors import PermanentError, RetryableError
from maxcore.logs import InterceptHandler
from maxcore.testing import LLMContract
from maxcore.testing.server import free_port
from maxcore.types import ChatTurn, HealthStatus, LLMRequest, Role, ToolCall, ToolSpec

from .conftest import API_KEY, DEMO

UPSERT = ToolSpec("upsert_lead", "create or update a lead", {
    "type": "object", "properties": {"first_name": {"type": "string"}, "email": {"type": "string"}},
})
SEARCH = ToolSpec("search_leads", "find leads", {
    "type": "object", "properties": {"query": {"type": "string"}},
})


def demo_request(*extra: ChatTurn, tools: tuple[ToolSpec, ...] = (UPSERT, SEARCH)) -> LLMRequest:
    return LLMRequest(system="Tu es MAX.", messages=(ChatTurn(role=Role.USER, content=DEMO), *extra),
                      tools=tools)


class TestOpenAIAgainstEmulator(LLMContract):
    @pytest.fixture
    def make_llm(self, make_openai: Callable[..., OpenAILLM]) -> Callable[[str], OpenAILLM]:
        return lambda tenant: make_openai(tenant)


@pytest.fixture
async def llm(make_openai: Callable[..., OpenAILLM]) -> Any:
    connector = make_openai()
    await connector.open()
    yield connector
    await connector.close()


async def test_request_body_follows_the_chat_completions_contract(emulator: Any, make_openai: Any) -> None:
    llm = make_openai(temperature=0.2, max_output_tokens=300)
    await llm.open()
    call = ToolCall("call_abc", "upsert_lead", '{"first_name": "Jean"}')
    await llm.complete(demo_request(
        ChatTurn(role=Role.ASSISTANT, content=None, tool_calls=(call,)),
        ChatTurn(role=Role.TOOL, content='{"status": "created"}', tool_call_id="call_abc",
                 name="upsert_lead"),
    ))
    await llm.close()
    [recorded] = emulator.completions()
    body = recorded.body
    assert recorded.headers["authorization"] == f"Bearer {API_KEY}"
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0.2
    # Off OpenAI the token limit goes by its old name, which compatible servers know.
    assert body["max_tokens"] == 300 and "max_completion_tokens" not in body
    assert "stream" not in body or body["stream"] is False
    assert body["messages"] == [
        {"role": "system", "content": "Tu es MAX."},
        {"role": "user", "content": DEMO},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_abc", "type": "function",
             "function": {"name": "upsert_lead", "arguments": '{"first_name": "Jean"}'}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": '{"status": "created"}'},
    ]
    assert body["tools"][0] == {"type": "function", "function": {
        "name": "upsert_lead", "description": "create or update a lead", "parameters": UPSERT.parameters}}
    assert all("strict" not in tool["function"] for tool in body["tools"])


def test_core_annotations_are_not_sent_to_the_model(make_openai: Any) -> None:
    # The CRM's synonyms ride in the tool schema as x-synonyms for the core's own use.
    annotated = ToolSpec("upsert_lead", "create or update a lead", {
        "type": "object", "properties": {"status": {
            "type": "string", "enum": ["New", "Assigned"], "x-synonyms": {"New": ["nouveau"]}}},
        "x-origin": "crm",
    })
    llm = make_openai()
    sent = llm.body(demo_request(tools=(annotated,)))["tools"][0]["function"]["parameters"]
    status = {"type": "string", "enum": ["New", "Assigned"]}
    assert sent == {"type": "object", "properties": {"status": status}}
    wire = json.loads(llm.encoded_body(demo_request(tools=(annotated,))))  # what goes out
    assert wire["tools"][0]["function"]["parameters"] == sent


async def test_the_encoded_body_is_the_body(make_openai: Any) -> None:
    """The request sent splices the tools' JSON, encoded once per schema, into the rest."""
    llm = make_openai(temperature=0.2, max_output_tokens=50)
    integer = {"type": "object", "properties": {"n": {"type": "integer"}}}
    tools = (ToolSpec("a", "first \"quoted\" é", integer), ToolSpec("b", "no parameters", {}))
    for request in (demo_request(tools=()), demo_request(), demo_request(tools=tools)):
        assert json.loads(llm.encoded_body(request)) == llm.body(request)
        assert json.loads(llm.encoded_body(request)) == llm.body(request)  # from the cache


async def test_openai_itself_gets_max_completion_tokens(make_openai: Any) -> None:
    llm = make_openai(max_output_tokens=100, token_limit_field="max_completion_tokens")
    assert "max_completion_tokens" in llm.body(demo_request())
    default = OpenAILLM(OpenAIConfig(api_key="sk-x", max_output_tokens=100), make_openai().context)
    assert default.config.url == "https://api.openai.com/v1"
    assert default.body(demo_request())["max_completion_tokens"] == 100


async def test_tool_call_reply_is_translated(llm: OpenAILLM) -> None:
    reply = await llm.complete(demo_request())
    [call] = reply.tool_calls
    assert call.name == "upsert_lead" and call.id.startswith("call_")
    assert json.loads(call.arguments)["email"] == "jean@dupont.fr"
    assert reply.text is None and reply.model == "gpt-4o-mini"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


async def test_parallel_calls_and_text_answers(emulator: Any, llm: OpenAILLM) -> None:
    emulator.reply(None, [("upsert_lead", '{"first_name": "Jean"}'), ("search_leads", '{"query": "Jean"}')])
    reply = await llm.complete(demo_request())
    assert [c.name for c in reply.tool_calls] == ["upsert_lead", "search_leads"]
    assert len({c.id for c in reply.tool_calls}) == 2
    emulator.reply("Bonjour !")
    reply = await llm.complete(demo_request())
    assert reply.text == "Bonjour !" and reply.tool_calls == ()


async def test_only_function_calls_are_used(emulator: Any, llm: OpenAILLM) -> None:
    custom = {"id": "call_custom_1", "type": "custom", "custom": {"name": "grammar", "input": "x"}}
    emulator.reply(None, [("search_leads", '{"query": "Jean"}')], raw_tool_calls=[custom])
    reply = await llm.complete(demo_request())
    assert [c.name for c in reply.tool_calls] == ["search_leads"]


async def test_malformed_arguments_are_passed_through_raw(emulator: Any, llm: OpenAILLM) -> None:
    emulator.malformed_arguments()
    [call] = (await llm.complete(demo_request())).tool_calls
    with pytest.raises(json.JSONDecodeError):
        json.loads(call.arguments)


async def test_finish_reason_length_still_returns_the_text(emulator: Any, llm: OpenAILLM) -> None:
    emulator.reply("Lead enregis", finish_length=True)
    assert (await llm.complete(demo_request())).text == "Lead enregis"


@pytest.fixture
def raw_log_lines() -> Iterator[list[str]]:
    """Every log line, unredacted, including the HTTP library's own DEBUG logging."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG")
    sdk_logger, handler = logging.getLogger("aiohttp"), InterceptHandler()
    level = sdk_logger.level
    sdk_logger.setLevel(logging.DEBUG)
    sdk_logger.addHandler(handler)
    yield lines
    sdk_logger.removeHandler(handler)
    sdk_logger.setLevel(level)
    logger.remove(sink)


async def test_keys_never_reach_logs_or_errors(
    emulator: Any, make_openai: Any, raw_log_lines: list[str]
) -> None:
    good = make_openai()
    await good.open()
    await good.complete(demo_request())
    await good.close()
    wrong = "sk-wrong-key-that-must-stay-secret-1234"
    llm = make_openai(api_key=wrong)
    await llm.open()
    try:
        with pytest.raises(PermanentError) as caught:
            await llm.complete(demo_request())
    finally:
        await llm.close()
    assert str(caught.value).startswith("OpenAI rejected the API key for tenant acme")
    assert [r.status for r in emulator.completions()] == [200, 401]
    assert any("POST /chat/completions -> 401" in line for line in raw_log_lines)  # logged, at DEBUG
    for text in [str(caught.value), *raw_log_lines]:
        assert wrong not in text and "1234." not in text and API_KEY not in text


async def test_unknown_model_is_permanent_and_named(make_openai: Any) -> None:
    llm = make_openai(model="gpt-x")
    await llm.open()
    with pytest.raises(PermanentError, match="model gpt-x not found"):
        await llm.complete(demo_request())
    await llm.close()


async def test_broken_pairing_is_rejected_as_permanent(llm: OpenAILLM) -> None:
    orphan = ChatTurn(role=Role.TOOL, content="{}", tool_call_id="call_nowhere")
    with pytest.raises(PermanentError, match=r"400 .*messages\.\[2\]\.role"):
        await llm.complete(demo_request(orphan))


async def test_429_retried_in_the_worker_honours_retry_after(emulator: Any, make_openai: Any) -> None:
    emulator.rate_limit(retry_after=0.4)
    llm = make_openai(max_retries=2)
    await llm.open()
    reply = await llm.complete(demo_request())
    await llm.close()
    first, second = emulator.completions()
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.4
    assert reply.tool_calls


async def test_server_errors_are_retried_with_backoff_then_given_to_the_inbox(
        emulator: Any, make_openai: Any) -> None:
    emulator.server_error(503, times=3)
    llm = make_openai(max_retries=2)
    await llm.open()
    with pytest.raises(RetryableError, match="answered 503"):
        await llm.complete(demo_request())
    await llm.close()
    first, second, third = emulator.completions()
    # OpenAI's SDK schedule: 0.5 s then 1 s, each less up to 25 % jitter.
    assert 0.375 <= second.at - first.at < 1.0 and 0.75 <= third.at - second.at < 1.5


async def test_quota_and_client_errors_are_not_retried(emulator: Any, make_openai: Any) -> None:
    emulator.rate_limit(quota=True)
    llm = make_openai(max_retries=3)
    await llm.open()
    with pytest.raises(PermanentError, match="quota exhausted"):
        await llm.complete(demo_request())
    await llm.close()
    assert len(emulator.completions()) == 1


async def test_429_without_sdk_retries_carries_retry_after(emulator: Any, llm: OpenAILLM) -> None:
    emulator.rate_limit(retry_after=None, retry_after_ms=2500)
    with pytest.raises(RetryableError) as caught:
        await llm.complete(demo_request())
    assert caught.value.retry_after == pytest.approx(2.5)
    assert "429 rate_limit_exceeded" in str(caught.value)


async def test_retry_after_beyond_two_minutes_goes_to_the_inbox(emulator: Any, make_openai: Any) -> None:
    # Not waited for more than 120 s in the worker (OpenAI's SDK rule): the inbox waits instead.
    emulator.rate_limit(retry_after=300)
    llm = make_openai(max_retries=2)
    await llm.open()
    with pytest.raises(RetryableError) as caught:
        await llm.complete(demo_request())
    await llm.close()
    assert caught.value.retry_after == 300 and len(emulator.completions()) == 1


async def test_insufficient_quota_is_permanent(emulator: Any, llm: OpenAILLM) -> None:
    emulator.rate_limit(quota=True)
    with pytest.raises(PermanentError, match="quota exhausted for tenant acme"):
        await llm.complete(demo_request())


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_retryable(emulator: Any, llm: OpenAILLM, status: int) -> None:
    emulator.server_error(status)
    with pytest.raises(RetryableError, match=f"answered {status}"):
        await llm.complete(demo_request())


async def test_slow_server_times_out_as_retryable(emulator: Any, make_openai: Any) -> None:
    emulator.delay(3.0)
    llm = make_openai(timeout_s=1)
    await llm.open()
    # The client's own 1 s timeout fired: the 3 s answer was never awaited.
    with pytest.raises(RetryableError, match="did not answer within 1s"):
        await llm.complete(demo_request())
    await llm.close()


async def test_unreachable_server_is_retryable(make_openai: Any) -> None:
    llm = make_openai(base_url=f"http://127.0.0.1:{free_port()}/v1")
    await llm.open()
    with pytest.raises(RetryableError, match="cannot reach"):
        await llm.complete(demo_request())
    assert (await llm.health()).status == HealthStatus.DOWN
    await llm.close()


async def test_health_reports_the_model_availability(make_openai: Any) -> None:
    cases = [({}, HealthStatus.OK, "available"), ({"model": "gpt-x"}, HealthStatus.DEGRADED, "not listed"),
             ({"api_key": "sk-bad-key-000"}, HealthStatus.DOWN, "rejected the API key")]
    for overrides, status, words in cases:
        llm = make_openai(**overrides)
        await llm.open()
        health = await llm.health()
        await llm.close()
        assert health.status == status and words in health.reason, (overrides, health)


async def test_keyless_server_in_no_auth_mode(emulator: Any, make_openai: Any) -> None:
    emulator.api_key = None  # Ollama-style: the server ignores the key
    llm = make_openai(api_key=None, model="llama3.1")
    await llm.open()
    reply = await llm.complete(demo_request())
    assert (await llm.health()).status == HealthStatus.OK
    await llm.close()
    assert [c.name for c in reply.tool_calls] == ["upsert_lead"]
    assert emulator.completions()[0].body["model"] == "llama3.1"


async def test_process_environment_does_not_leak_into_tenants(
    emulator: Any, make_openai: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-of-someone-else")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-of-someone-else")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    emulator.api_key = None  # a keyless server, to see what a keyless tenant sends
    for overrides in ({"api_key": None}, {"organization": "org-acme", "project": "proj_acme"}):
        llm = make_openai(**overrides)
        await llm.open()
        await llm.complete(demo_request())
        await llm.close()
    keyless, configured = (r.headers for r in emulator.completions())
    assert "openai-organization" not in keyless and "openai-project" not in keyless
    assert keyless["authorization"] == "Bearer no-key"
    assert (configured["openai-organization"], configured["openai-project"]) == ("org-acme", "proj_acme")


def test_config_is_validated_strictly() -> None:
    config, problems = structure({"model": "gpt-4o-mini", "api_key": "sk-1", "timeout_s": 30}, OpenAIConfig)
    assert problems == [] and config is not None and config.max_retries == 0
    _, problems = structure({"model": "m"}, OpenAIConfig, "llm")
    assert problems and problems[0][0] == "llm.api_key" and "required for OpenAI" in problems[0][1]
    _, problems = structure({"api_key": "k", "temprature": 1}, OpenAIConfig, "llm")
    assert problems[0][0] == "llm.temprature" and "unknown key" in problems[0][1]
    _, problems = structure({"api_key": "k", "temperature": 3}, OpenAIConfig, "llm")
    assert problems[0][0] == "llm.temperature"
    _, problems = structure({"api_key": "k", "base_url": "localhost:11434"}, OpenAIConfig, "llm")
    assert problems[0][0] == "llm.base_url"
    _, problems = structure({"base_url": "http://localhost:11434/v1"}, OpenAIConfig, "llm")
    assert problems == []


async def test_context_length_exceeded_trims_history_once_then_is_permanent(
        emulator: Any, llm: OpenAILLM) -> None:
    from maxcore_openai.errors import ContextTooLong

    from maxcore.types import ChatTurn, LLMRequest, Role

    history = tuple(ChatTurn(role=Role.USER if i % 2 == 0 else Role.ASSISTANT, content="x" * 400)
                    for i in range(20))
    current = ChatTurn(role=Role.USER, content="Nouveau lead : Jean Dupont, jean@dupont.fr")
    request = LLMRequest(system="Tu es MAX.", messages=(*history, current))
    emulator.max_context_tokens = 500  # the history alone is ~2000 tokens
    reply = await llm.complete(request)
    sent = [r.body["messages"] for r in emulator.completions()]
    assert [r.status for r in emulator.completions()] == [400, 200]
    assert len(sent[1]) == 2 and sent[1][-1]["content"] == current.content  # system + the message
    assert reply.tool_calls or reply.text

    emulator.reset()  # (also lifts the window: reset again by the fixture for the next test)
    emulator.max_context_tokens = 5
    with pytest.raises(ContextTooLong, match="even without the conversation's history") as caught:
        await llm.complete(request)
    assert isinstance(caught.value, PermanentError) and "fix: " in str(caught.value)
    assert [r.status for r in emulator.completions()] == [400, 400]  # retried once, no more
