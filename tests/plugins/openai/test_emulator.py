"""The OpenAI emulator itself answers as the contract says (raw HTTP, no SDK)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from maxcore.testing.openai_emulator import OpenAIEmulator

from .conftest import API_KEY

USER = {"role": "user", "content": "Nouveau lead : Jean Dupont, jean@dupont.fr"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "upsert_lead", "arguments": "{}"}}
ASSISTANT = {"role": "assistant", "content": None, "tool_calls": [CALL]}


def post(emulator: OpenAIEmulator, body: dict[str, Any], key: str | None = API_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(emulator.base_url + "/chat/completions", json=body, headers=headers, timeout=5)


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": list(messages), **extra}


def test_bearer_key_is_checked(emulator: OpenAIEmulator) -> None:
    missing = post(emulator, chat(USER), key=None)
    wrong = post(emulator, chat(USER), key="sk-wrong-123456789")
    assert missing.status_code == wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert "sk-wrong-123456789" not in wrong.text
    assert post(emulator, chat(USER)).status_code == 200
    emulator.api_key = None
    assert post(emulator, chat(USER), key=None).status_code == 200


@pytest.mark.parametrize(("messages", "param", "words"), [
    ([USER, ASSISTANT, USER], "messages.[2].role", "did not have response messages: call_1"),
    ([USER, ASSISTANT], "messages.[2].role", "did not have response messages: call_1"),
    ([USER, {"role": "tool", "tool_call_id": "call_1", "content": "{}"}], "messages.[1].role",
     "must be a response to a preceeding message with 'tool_calls'"),
    ([USER, ASSISTANT, {"role": "tool", "tool_call_id": "call_9", "content": "{}"}],
     "messages.[2].tool_call_id", "'tool_call_id' of 'call_9' not found"),
    ([USER, ASSISTANT, {"role": "tool", "tool_call_id": "call_1", "content": "{}"},
      {"role": "tool", "tool_call_id": "call_1", "content": "{}"}], "messages.[3].tool_call_id", "not found"),
    ([{"role": "robot", "content": "x"}], "messages.[0].role", "Invalid value: 'robot'"),
])
def test_pairing_rule_and_roles(
    emulator: OpenAIEmulator, messages: list[Any], param: str, words: str
) -> None:
    answer = post(emulator, chat(*messages))
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert words in error["message"]


def test_request_validation(emulator: OpenAIEmulator) -> None:
    bad_tool = {"type": "function", "function": {"name": "has space", "parameters": {}}}
    cases = [
        ({"messages": [USER]}, 400, "model"),
        (chat(USER, stream=True), 400, "stream"),
        (chat(USER, temperature=3), 400, "temperature"),
        (chat(USER, tools=[bad_tool]), 400, "tools[0].function.name"),
        (chat(), 400, "messages"),
    ]
    for body, status, param in cases:
        answer = post(emulator, body)
        assert (answer.status_code, answer.json()["error"]["param"]) == (status, param), body
    unknown = post(emulator, {"model": "gpt-x", "messages": [USER]})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


def test_answers_and_rate_limit_headers(emulator: OpenAIEmulator) -> None:
    tools = [{"type": "function", "function": {"name": "upsert_lead", "parameters": {"type": "object"}}}]
    answer = post(emulator, chat(USER, tools=tools))
    data = answer.json()
    assert answer.headers["x-ratelimit-remaining-requests"] and answer.headers["x-request-id"]
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and data["object"] == "chat.completion"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "upsert_lead"
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    emulator.rate_limit(retry_after=1.5, retry_after_ms=1500)
    limited = post(emulator, chat(USER))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1.5"
    assert limited.headers["retry-after-ms"] == "1500"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert [r.status for r in emulator.requests] == [200, 429]


def test_models_endpoints(emulator: OpenAIEmulator) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    listed = httpx.get(emulator.base_url + "/models", headers=headers).json()
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == ["gpt-4o-mini", "llama3.1"]
    one = httpx.get(emulator.base_url + "/models/gpt-4o-mini", headers=headers)
    assert one.json()["object"] == "model"
    missing = httpx.get(emulator.base_url + "/models/gpt-x", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert httpx.get(emulator.base_url + "/models").status_code == 401


def test_faults_over_the_control_api(emulator: OpenAIEmulator) -> None:
    queued = httpx.post(emulator.url + "/_emulator/faults", json={"status": 503, "times": 2})
    assert queued.json() == {"queued": 2}
    assert [post(emulator, chat(USER)).status_code for _ in range(3)] == [503, 503, 200]
    recorded = httpx.get(emulator.url + "/_emulator/requests").json()
    assert [r["status"] for r in recorded] == [503, 503, 200]
    assert recorded[0]["body"]["messages"] == [USER]
    httpx.post(emulator.url + "/_emulator/reset")
    assert emulator.requests == []
