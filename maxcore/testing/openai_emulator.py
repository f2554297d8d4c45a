"""A contract emulator of OpenAI's Chat Completions and Models API (per its API reference).

A real HTTP server on 127.0.0.1 (served by :func:`maxcore.testing.server.serving`) that
answers ``POST /v1/chat/completions``, ``GET /v1/models`` and ``GET /v1/models/{id}``
the way OpenAI does, errors included: Bearer check (401 ``invalid_api_key``, or no-auth
mode for Ollama-style servers), request validation with the tool-call pairing rule,
404 ``model_not_found``. Its "model" is deterministic: the request is translated back
to an :class:`~maxcore.types.LLMRequest` and decided by the offline rules, so tool
calls are predictable. Faults are queued from Python (``emulator.rate_limit()`` ...)
or over HTTP (``POST /_emulator/faults``) and each one applies to one completion.
Every completion request is recorded (``emulator.requests``) for assertions.

    with openai_emulator(api_key="sk-test") as emu:
        llm = OpenAILLM(Config(base_url=emu.base_url, api_key="sk-test"), ctx)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..builtin.offline_llm import decide
from ..types import ChatTurn, LLMRequest, Role, ToolCall, ToolSpec
from .server import ServerThread

TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ROLES = ("system", "developer", "user", "assistant", "tool")


@attrs.define
class Fault:
    """What the next completion does instead of (or on top of) answering normally.

    ``status`` answers an error with that status and OpenAI's error body; ``delay``
    waits before answering; ``malformed`` cuts the tool-call arguments short (invalid
    JSON); ``finish_length`` answers ``finish_reason: "length"``; ``reply`` replaces
    the rules' decision: ``{"content": str | None, "tool_calls": [[name, arguments_text]]}``.
    """

    status: int | None = None
    error_type: str = "server_error"
    code: str | None = None
    message: str = "The server had an error while processing your request. Sorry about that!"
    headers: dict[str, str] = attrs.field(factory=dict)
    delay: float = 0.0
    malformed: bool = False
    finish_length: bool = False
    reply: dict[str, Any] | None = None


@attrs.frozen
class RecordedRequest:
    """One request as the emulator received it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float
    status: int


class APIError(Exception):
    def __init__(self, status: int, message: str, error_type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, error_type
        self.param, self.code, self.headers = param, code, headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class OpenAIEmulator:
    """State and ASGI app of one emulated OpenAI-compatible server."""

    def __init__(self, api_key: str | None = "sk-test-emulator",
                 models: Sequence[str] = ("gpt-4o-mini",)) -> None:
        self.api_key = api_key  # None: no-auth mode, any or no Authorization accepted
        self.models = list(models)
        # The model's context window in tokens (counted as characters / 4): a longer
        # request gets OpenAI's 400 context_length_exceeded. None: unlimited.
        self.max_context_tokens: int | None = None
        self.requests: list[RecordedRequest] = []
        self._faults: collections.deque[Fault] = collections.deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._calls = itertools.count(1)
        self.server: ServerThread | None = None
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._completions, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/v1/models/{model:path}", self._model, methods=["GET"]),
            Route("/_emulator/faults", self._control_faults, methods=["POST"]),
            Route("/_emulator/requests", self._control_requests, methods=["GET"]),
            Route("/_emulator/reset", self._control_reset, methods=["POST"]),
        ])

    # -- control from Python -------------------------------------------------------
    @property
    def url(self) -> str:
        assert self.server is not None, "not serving; use openai_emulator() or serve()"
        return self.server.url

    @property
    def base_url(self) -> str:
        """What a client puts in ``base_url``."""
        return self.url + "/v1"

    def add_fault(self, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._faults.extend(attrs.evolve(fault) for _ in range(times))

    def rate_limit(self, retry_after: float | None = 1.0, *, retry_after_ms: int | None = None,
                   times: int = 1, quota: bool = False) -> None:
        """429s: a transient ``rate_limit_exceeded`` or the permanent ``insufficient_quota``."""
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        if quota:
            fault = Fault(429, "insufficient_quota", "insufficient_quota", (
                "You exceeded your current quota, please check your plan and billing details."),
                headers)
        else:
            fault = Fault(429, "requests", "rate_limit_exceeded", (
                "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, "
                "Requested 1. Please try again in 20s."), headers)
        self.add_fault(fault, times)

    def server_error(self, status: int = 500, times: int = 1) -> None:
        message = ("The engine is currently overloaded, please try again later." if status == 503
                   else Fault().message)
        self.add_fault(Fault(status, "server_error", None, message), times)

    def delay(self, seconds: float, times: int = 1) -> None:
        self.add_fault(Fault(delay=seconds), times)

    def malformed_arguments(self, times: int = 1) -> None:
        self.add_fault(Fault(malformed=True), times)

    def reply(self, content: str | None = None, tool_calls: Sequence[tuple[str, str]] = (),
              *, finish_length: bool = False, raw_tool_calls: Sequence[dict[str, Any]] = ()) -> None:
        """Script the next answer (parallel calls: several ``(name, arguments_text)``).

        ``raw_tool_calls`` are appended verbatim, e.g. a ``{"type": "custom", ...}`` call.
        """
        self.add_fault(Fault(reply={"content": content, "tool_calls": [list(c) for c in tool_calls],
                                    "raw_tool_calls": list(raw_tool_calls)},
                             finish_length=finish_length))

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()
            self.max_context_tokens = None

    def completions(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def serve(self) -> ServerThread:
        self.server = ServerThread(self.app).start()
        return self.server

    # -- HTTP handlers ---------------------------------------------------------------
    def _check_auth(self, request: Request) -> None:
        if self.api_key is None:
            return
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            raise APIError(401, (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."),
                code=None)
        given = header[7:].strip()
        if given != self.api_key:
            shown = f"{given[:3]}*****{given[-4:]}" if len(given) > 8 else "*****"
            raise APIError(401, f"Incorrect API key provided: {shown}. You can find your API key "
                           "at https://platform.openai.com/account/api-keys.", code="invalid_api_key")

    def _check_context(self, body: dict[str, Any]) -> None:
        if self.max_context_tokens is None:
            return
        tokens = len(json.dumps(body.get("messages"), ensure_ascii=False)) // 4
        if tokens > self.max_context_tokens:
            raise APIError(400, (
                f"This model's maximum context length is {self.max_context_tokens} tokens. However, "
                f"your messages resulted in {tokens} tokens. Please reduce the length of the messages."),
                param="messages", code="context_length_exceeded")

    def _record(self, request: Request, body: dict[str, Any], status: int) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(
                request.url.path, dict(request.headers), body, time.time(), status))

    async def _completions(self, request: Request) -> Response:
        body: dict[str, Any] = {}
        try:
            self._check_auth(request)
            try:
                parsed = json.loads(await request.body())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise APIError(400, "We could not parse the JSON body of your request.") from exc
            if not isinstance(parsed, dict):
                raise APIError(400, "The request body must be a JSON object.")
            body = parsed
            validate_request(body, self.models)
            self._check_context(body)
            with self._lock:
                fault = self._faults.popleft() if self._faults else None
            if fault is not None and fault.delay:
                await asyncio.sleep(fault.delay)
            if fault is not None and fault.status is not None:
                raise APIError(fault.status, fault.message, fault.error_type, None, fault.code,
                               fault.headers)
            answer = self._answer(body, fault)
        except APIError as exc:
            self._record(request, body, exc.status)
            return exc.response()
        self._record(request, body, 200)
        return JSONResponse(answer, headers=_rate_headers())

    def _answer(self, body: dict[str, Any], fault: Fault | None) -> dict[str, Any]:
        if fault is not None and fault.reply is not None:
            content = fault.reply["content"]
            calls = [(str(name), str(args)) for name, args in fault.reply["tool_calls"]]
        else:
            content, calls = model_decision(body)
        if fault is not None and fault.malformed:
            # Cut the JSON text short, as local models under token pressure do.
            calls = [(name, args[: max(1, len(args) // 2)]) for name, args in calls]
        tool_calls = [
            {"id": f"call_emu_{next(self._calls)}", "type": "function",
             "function": {"name": name, "arguments": args}}
            for name, args in calls
        ]
        if fault is not None and fault.reply is not None:
            tool_calls.extend(fault.reply.get("raw_tool_calls") or [])
        finish = "tool_calls" if tool_calls else "stop"
        if fault is not None and fault.finish_length:
            finish = "length"
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        prompt_tokens = max(1, len(json.dumps(body.get("messages"), ensure_ascii=False)) // 4)
        completion_tokens = max(1, len(json.dumps(message, ensure_ascii=False)) // 4)
        return {
            "id": f"chatcmpl-emu-{next(self._ids):06d}", "object": "chat.completion",
            "created": int(time.time()), "model": body["model"], "system_fingerprint": None,
            "choices": [{"index": 0, "logprobs": None, "finish_reason": finish, "message": message}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def _model_object(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 1715367049, "owned_by": "system"}

    async def _models(self, request: Request) -> Response:
        try:
            self._check_auth(request)
        except APIError as exc:
            self._record(request, {}, exc.status)
            return exc.response()
        self._record(request, {}, 200)
        return JSONResponse({"object": "list", "data": [self._model_object(m) for m in self.models]})

    async def _model(self, request: Request) -> Response:
        model = request.path_params["model"]
        try:
            self._check_auth(request)
            if model not in self.models:
                raise APIError(404, f"The model `{model}` does not exist or you do not have access "
                               "to it.", code="model_not_found")
        except APIError as exc:
            self._record(request, {}, exc.status)
            return exc.response()
        self._record(request, {}, 200)
        return JSONResponse(self._model_object(model))

    async def _control_faults(self, request: Request) -> Response:
        """``POST /_emulator/faults`` with a Fault as JSON (``times`` repeats it)."""
        data = json.loads(await request.body() or b"{}")
        times = int(data.pop("times", 1))
        self.add_fault(Fault(**data), times)
        return JSONResponse({"queued": len(self._faults)})

    async def _control_requests(self, request: Request) -> Response:
        with self._lock:
            return JSONResponse([attrs.asdict(r) for r in self.requests])

    async def _control_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})


def _rate_headers() -> dict[str, str]:
    return {
        "x-request-id": f"req_emu_{time.monotonic_ns():x}",
        "x-ratelimit-limit-requests": "10000", "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "6ms", "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-tokens": "199000", "x-ratelimit-reset-tokens": "300ms",
    }


def validate_request(body: dict[str, Any], models: Sequence[str]) -> None:
    """The checks OpenAI makes, with its status codes, messages and ``param`` names."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "you must provide a model parameter", param="model")
    if body.get("stream"):
        raise APIError(400, "This emulator does not stream; the plugin never asks it to.",
                       param="stream")
    temperature = body.get("temperature")
    if temperature is not None and not (isinstance(temperature, int | float) and 0 <= temperature <= 2):
        raise APIError(400, f"Invalid 'temperature': {temperature!r}; expected a number between 0 "
                       "and 2.", param="temperature", code="decimal_above_max_value")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "Invalid 'messages': expected a non-empty array.", param="messages")
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise APIError(400, f"Invalid value: {role!r}. Supported values are: 'system', "
                           "'assistant', 'user', 'tool', and 'developer'.", param=f"messages.[{index}].role")
    _check_pairing(messages)
    for index, tool in enumerate(body.get("tools") or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise APIError(400, "Invalid tool: expected {'type': 'function', 'function': {...}}.",
                           param=f"tools[{index}]")
        if not TOOL_NAME_RE.match(str(function.get("name", ""))):
            raise APIError(400, f"Invalid 'tools[{index}].function.name': string does not match "
                           "pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                           param=f"tools[{index}].function.name", code="invalid_value")
        if "parameters" in function and not isinstance(function["parameters"], dict):
            raise APIError(400, "Invalid schema for function: parameters must be an object.",
                           param=f"tools[{index}].function.parameters")
    if model not in models:
        raise APIError(404, f"The model `{model}` does not exist or you do not have access to it.",
                       code="model_not_found")


def _check_pairing(messages: list[dict[str, Any]]) -> None:
    """Every call answered by one tool message before anything else; no orphan answers."""
    open_ids: list[str] = []
    previous_calls: set[str] = set()
    for index, message in enumerate(messages):
        role = message["role"]
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not previous_calls:
                raise APIError(400, "Invalid parameter: messages with role 'tool' must be a response "
                               "to a preceeding message with 'tool_calls'.", param=f"messages.[{index}].role")
            if call_id not in previous_calls or call_id not in open_ids:
                raise APIError(400, f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in "
                               "'tool_calls' of previous message.", param=f"messages.[{index}].tool_call_id")
            open_ids.remove(call_id)
            continue
        if open_ids:
            raise APIError(400, "An assistant message with 'tool_calls' must be followed by tool "
                           "messages responding to each 'tool_call_id'. The following tool_call_ids "
                           f"did not have response messages: {', '.join(open_ids)}",
                           param=f"messages.[{index}].role")
        previous_calls = set()
        if role == "assistant":
            ids = [str(c.get("id")) for c in message.get("tool_calls") or [] if isinstance(c, dict)]
            open_ids, previous_calls = list(ids), set(ids)
    if open_ids:
        raise APIError(400, "An assistant message with 'tool_calls' must be followed by tool messages "
                       "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                       f"response messages: {', '.join(open_ids)}", param=f"messages.[{len(messages)}].role")


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def to_llm_request(body: dict[str, Any]) -> LLMRequest:
    """The Chat Completions body read back as the core's request (what the rules decide on)."""
    system: list[str] = []
    turns: list[ChatTurn] = []
    for message in body["messages"]:
        role, content = message["role"], _text(message.get("content"))
        if role in ("system", "developer"):
            system.append(content or "")
            continue
        calls = tuple(
            ToolCall(c["id"], c["function"]["name"], c["function"].get("arguments", ""))
            for c in message.get("tool_calls") or [] if c.get("type") == "function"
        )
        turns.append(ChatTurn(role=Role(role), content=content, tool_calls=calls,
                              tool_call_id=message.get("tool_call_id")))
    tools = tuple(
        ToolSpec(t["function"]["name"], t["function"].get("description", ""),
                 t["function"].get("parameters") or {})
        for t in body.get("tools") or []
    )
    prompt = "\n".join(system)
    language = "en" if "english" in prompt.lower() else "fr"
    return LLMRequest(system=prompt, messages=tuple(turns), tools=tools, language=language)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def model_decision(body: dict[str, Any]) -> tuple[str | None, list[tuple[str, str]]]:
    """The deterministic "model": the offline rules, plus fixing its own broken calls."""
    request = to_llm_request(body)
    messages = list(request.messages)
    if messages and messages[-1].role == Role.TOOL:
        last = max(i for i, m in enumerate(messages) if m.role == Role.ASSISTANT)
        if any(not _is_json(c.arguments) for c in messages[last].tool_calls):
            # Told that its arguments were not JSON, the model tries again, properly.
            request = attrs.evolve(request, messages=tuple(messages[:last]))
    if body.get("tool_choice") == "none":
        request = attrs.evolve(request, tools=())
    reply = decide(request)
    return reply.text, [(c.name, c.arguments) for c in reply.tool_calls]


@contextlib.contextmanager
def openai_emulator(api_key: str | None = "sk-test-emulator",
                    models: Sequence[str] = ("gpt-4o-mini",)) -> Iterator[OpenAIEmulator]:
    """Serve an :class:`OpenAIEmulator` on 127.0.0.1 for the duration of the block."""
    emulator = OpenAIEmulator(api_key=api_key, models=models)
    server = emulator.serve()
    try:
        yield emulator
    finally:
        server.stop()
