"""The ``openai`` LLM connector: Chat Completions with function tools over HTTP.

Tenant YAML::

    llm:
      type: openai
      model: gpt-4o-mini
      api_key: ${OPENAI_API_KEY}          # optional off OpenAI (Ollama, vLLM, LM Studio)
      base_url: http://localhost:11434/v1 # optional; OpenAI's when left out
      temperature: 0.2                    # optional, 0-2
      max_output_tokens: 500              # optional
      token_limit_field: auto             # auto | max_completion_tokens | max_tokens
      timeout_s: 30                       # to connect, and between two reads of the answer
      max_retries: 0                      # quick retries inside the worker, as OpenAI's SDK does
      organization: org-...               # optional (OpenAI-Organization header)
      project: proj_...                   # optional (OpenAI-Project header)

Retries: by default none here. A connection error, 408, 409, 429 or 5xx becomes a
``RetryableError`` whose ``retry_after`` is the server's word (``retry-after-ms`` /
``retry-after``), and the core's inbox puts the message back on a timer no sooner than
that, without holding a worker (the model replies and tool results already journalled
are not asked or run again). ``max_retries`` > 0 retries inside the worker first, with
the rules of OpenAI's own SDK: the server's Retry-After when it is at most 120 s (more:
no retry here, the inbox waits), else 0.5 s doubling up to 8 s with up to 25 % jitter;
``x-should-retry`` obeyed; ``insufficient_quota`` never retried.

The requests go through the process's shared pool for the base URL
(:meth:`maxcore.http_pool.HttpClients.client`), not through OpenAI's SDK:
``bench/http_clients.py`` measured the SDK at 1.2 ms of CPU per completion on aiohttp's
pool (1.7 ms on its own) against 0.2-0.5 ms for the request itself, and a message asks
the model twice. The wire format is the documented Chat Completions API; errors are
read from its ``{"error": {"message", "type", "param", "code"}}`` body.

A request over the model's context window (400 ``context_length_exceeded``) is sent
once more without the conversation's earlier turns; if even that does not fit, the
message is dead with a reason that says what to change.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import attrs
import httpx
from loguru import logger

from maxcore.config.models import FieldValueError, http_url, in_range, non_empty, one_of
from maxcore.connectors import ConnectorBase, ConnectorContext
from maxcore.errors import MaxcoreError, PermanentError, RetryableError
from maxcore.http_client import JSON_HEADERS, HttpClient, Timeout
from maxcore.types import Health, LLMReply, LLMRequest, Role

from .errors import (
    AccessDenied,
    ContextTooLong,
    KeyRejected,
    OpenAIStatusError,
    Unreachable,
    map_status,
    map_transport,
    retry_after_of,
)
from .translate import encode_json, messages_of, reply_of, tool_json, tool_of


@attrs.frozen
class Encoded:
    """A request body already encoded as JSON."""

    content: bytes

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Sent as the bearer when no key is set, as OpenAI's SDK does: keyless servers (Ollama,
# vLLM) ignore it, and some proxies insist on an Authorization header.
KEYLESS_PLACEHOLDER = "no-key"
HEALTH_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 10.0
# OpenAI's SDK: Retry-After honoured up to two minutes, else exponential backoff.
MAX_RETRY_AFTER_S = 120.0
INITIAL_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 8.0
RETRYABLE_STATUSES = frozenset({408, 409, 429})


@attrs.frozen
class OpenAIConfig:
    model: str = attrs.field(default="gpt-4o-mini", validator=non_empty)
    api_key: str | None = attrs.field(default=None, validator=non_empty)
    base_url: str | None = attrs.field(default=None, validator=http_url)
    temperature: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(in_range(0, 2)))
    max_output_tokens: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(in_range(1, 1_000_000)))
    token_limit_field: str = attrs.field(
        default="auto", validator=one_of("auto", "max_completion_tokens", "max_tokens"))
    timeout_s: float = attrs.field(default=30.0, validator=in_range(1, 600))
    max_retries: int = attrs.field(default=0, validator=in_range(0, 10))
    organization: str | None = attrs.field(default=None, validator=non_empty)
    project: str | None = attrs.field(default=None, validator=non_empty)

    def __attrs_post_init__(self) -> None:
        if self.api_key is None and self.base_url is None:
            raise FieldValueError(
                "api_key", "required for OpenAI itself (set base_url for a keyless server such as Ollama)")

    @property
    def url(self) -> str:
        return (self.base_url or OPENAI_BASE_URL).rstrip("/")

    @property
    def limit_field(self) -> str:
        if self.token_limit_field != "auto":
            return self.token_limit_field
        # OpenAI deprecated max_tokens (reasoning models reject it); many compatible
        # servers only know max_tokens.
        return "max_completion_tokens" if self.url == OPENAI_BASE_URL else "max_tokens"


class OpenAILLM(ConnectorBase):
    """``llm: {type: openai, ...}`` — any server speaking OpenAI's Chat Completions."""

    name = "openai"
    Config = OpenAIConfig

    def __init__(self, config: OpenAIConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self.config: OpenAIConfig = config
        if config.api_key:
            context.add_secret(config.api_key)
        self._http: HttpClient | None = None
        self._log = logger.bind(tenant=context.tenant)
        # Only the tenant's own YAML sets these: one process serves many tenants, so
        # nothing comes from OPENAI_* environment variables.
        self._headers = {"Authorization": f"Bearer {config.api_key or KEYLESS_PLACEHOLDER}",
                         "Accept": "application/json"}
        if config.organization:
            self._headers["OpenAI-Organization"] = config.organization
        if config.project:
            self._headers["OpenAI-Project"] = config.project
        self._json_headers = {**self._headers, **JSON_HEADERS}  # with a body encoded here

    async def open(self) -> None:
        if self._http is None:
            # The process's pool for this base URL, shared with the other tenants on it
            # (the key is in each request's headers, nothing tenant-specific on the pool).
            self._http = self.context.http.client(
                self.config.url, headers={"User-Agent": "maxcore-openai"},
                timeout=Timeout(read=self.config.timeout_s,
                                connect=min(self.config.timeout_s, CONNECT_TIMEOUT_S)))

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await self.context.http.release(http)

    @property
    def http(self) -> HttpClient:
        if self._http is None:
            raise PermanentError(f"openai connector of tenant {self.tenant} used before open()")
        return self._http

    def body(self, request: LLMRequest) -> dict[str, Any]:
        """The Chat Completions parameters for ``request`` (what goes on the wire)."""
        body = self._body_without_tools(request)
        if request.tools:
            body["tools"] = [tool_of(spec) for spec in request.tools]
        return body

    def encoded_body(self, request: LLMRequest) -> bytes:
        """:meth:`body` as the JSON sent, the tools' schemas spliced in already encoded."""
        text = encode_json(self._body_without_tools(request))
        if request.tools:
            text = f'{text[:-1]},"tools":[{",".join(tool_json(spec) for spec in request.tools)}]}}'
        return text.encode()

    def _body_without_tools(self, request: LLMRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.config.model, "messages": messages_of(request)}
        if self.config.temperature is not None:
            body["temperature"] = self.config.temperature
        if self.config.max_output_tokens is not None:
            body[self.config.limit_field] = self.config.max_output_tokens
        return body

    async def call(self, method: str, path: str, *, json_body: Any = None,
                   timeout: float | None = None, max_retries: int | None = None) -> Any:
        """One API call, retried up to ``max_retries`` times (the config's by default) as
        the module's docstring says; the decoded answer, else the core error."""
        retries = self.config.max_retries if max_retries is None else max_retries
        attempt = 0
        while True:
            try:
                return await self._call_once(method, path, json_body, timeout)
            except OpenAIStatusError as exc:
                error: MaxcoreError = map_status(exc, tenant=self.tenant, model=self.config.model,
                                                 base_url=self.config.url)
                delay = self._retry_delay(attempt, retries, exc.status, exc.headers, exc.code)
            except httpx.TransportError as exc:
                error = map_transport(exc, tenant=self.tenant, base_url=self.config.url,
                                      timeout_s=timeout or self.config.timeout_s)
                delay = self._retry_delay(attempt, retries, None, None, None)
            if delay is None:
                raise error
            attempt += 1
            self._log.info("[LLM] {} {} failed ({}); retry {}/{} in {:.2f}s",
                           method, path, error, attempt, retries, delay)
            await asyncio.sleep(delay)

    async def _call_once(self, method: str, path: str, json_body: Any, timeout: float | None) -> Any:
        started = time.monotonic()
        if isinstance(json_body, Encoded):
            response = await self.http.request(
                method, self.config.url + path, content=json_body.content,
                headers=self._json_headers, timeout=timeout)
        else:
            response = await self.http.request(method, self.config.url + path, json=json_body,
                                               headers=self._headers, timeout=timeout)
        self._log.debug("[LLM] {} {} -> {} ({:.0f} ms)", method, path, response.status_code,
                        (time.monotonic() - started) * 1000)
        if response.status_code >= 300:
            raise OpenAIStatusError.of(response)
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise OpenAIStatusError(response.status_code, response.headers,
                                    "the answer is not JSON", "invalid_response", None, None) from None

    @staticmethod
    def _retry_delay(attempt: int, retries: int, status: int | None, headers: Any,
                     code: str | None) -> float | None:
        """Seconds before the next try, or None when this failure is not retried here."""
        if attempt >= retries:
            return None
        retry_after = retry_after_of(headers)
        if status is not None:
            should = headers.get("x-should-retry") if headers is not None else None
            if should == "false" or code == "insufficient_quota":
                return None
            if should != "true" and status not in RETRYABLE_STATUSES and status < 500:
                return None
            if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
                return None  # the inbox waits that long, without holding a worker
        if retry_after is not None and 0 < retry_after <= MAX_RETRY_AFTER_S:
            return retry_after
        backoff = min(INITIAL_RETRY_DELAY_S * 2.0 ** attempt, MAX_RETRY_DELAY_S)
        return backoff * (1 - 0.25 * random.random())  # jitter, not a secret

    async def complete(self, request: LLMRequest) -> LLMReply:
        try:
            return await self._complete(request)
        except ContextTooLong as exc:
            trimmed = without_history(request)
            if trimmed is None:
                raise ContextTooLong(f"{exc} — nothing left to trim: fix: shorten the tenant's "
                                     "system_prompt or choose a model with a larger context") from None
            dropped = len(request.messages) - len(trimmed.messages)
            self._log.warning("[LLM] request over the context window of {}: {} earlier turn(s) of "
                              "the conversation dropped, trying once more", self.config.model, dropped)
        try:
            return await self._complete(trimmed)
        except ContextTooLong as exc:
            raise ContextTooLong(f"{exc} — even without the conversation's history: fix: shorten the "
                                 "tenant's system_prompt or the message, or choose a model with a "
                                 "larger context") from None

    async def _complete(self, request: LLMRequest) -> LLMReply:
        started = time.monotonic()
        try:
            completion = await self.call("POST", "/chat/completions",
                                         json_body=Encoded(self.encoded_body(request)))
        except MaxcoreError as error:
            self._log.warning("[LLM] chat completion failed: {}", error)
            raise
        try:
            reply, finish = reply_of(completion)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise RetryableError(f"OpenAI answered a completion this connector cannot read "
                                 f"(tenant {self.tenant}, {self.config.url}): {type(exc).__name__}") from None
        elapsed = time.monotonic() - started
        self._log.info(
            "[LLM] {} answered in {:.2f}s: finish={} tool_calls={} tokens={}+{}",
            reply.model, elapsed, finish, len(reply.tool_calls),
            reply.usage.prompt_tokens, reply.usage.completion_tokens,
        )
        if finish == "length":
            self._log.warning("[LLM] answer cut by the token limit (max_output_tokens={})",
                              self.config.max_output_tokens)
        return reply

    async def health(self) -> Health:
        """A cheap authenticated call: list the models, and say whether ours is there."""
        timeout = min(self.config.timeout_s, HEALTH_TIMEOUT_S)
        try:
            page = await self.call("GET", "/models", timeout=timeout, max_retries=0)
        except MaxcoreError as exc:
            return Health.down(f"{exc} — fix: {self._health_fix(exc)}")
        data = page.get("data") if isinstance(page, dict) else None
        ids = sorted({str(model.get("id")) for model in data or () if isinstance(model, dict)})
        if self.config.model in ids:
            return Health.ok(f"model {self.config.model} available at {self.config.url}")
        # Azure deployments and some proxies list models under other names: the key works,
        # the model may still answer, so degraded rather than down.
        listed = ", ".join(ids[:8]) + (", …" if len(ids) > 8 else "")
        return Health.degraded(
            f"model {self.config.model} not listed by {self.config.url} ({len(ids)} model(s) listed) — "
            f"fix: set llm.model to a model this server lists ({listed or 'none'})")

    def _health_fix(self, error: MaxcoreError) -> str:
        """What the operator changes when listing the models failed with ``error``."""
        if isinstance(error, KeyRejected):
            return f"set llm.api_key (e.g. ${{OPENAI_API_KEY}}) to a valid key for {self.config.url}"
        if isinstance(error, AccessDenied):
            return "give the key access to the models (llm.project / llm.organization, or the key's scopes)"
        if isinstance(error, Unreachable):  # refused, timeouts
            return f"check llm.base_url ({self.config.url}) and that the server is reachable from here"
        return f"check the llm block (base_url, api_key, model) and the status of {self.config.url}"


def without_history(request: LLMRequest) -> LLMRequest | None:
    """``request`` without the turns before the current user message (None: none to drop)."""
    users = [i for i, turn in enumerate(request.messages) if turn.role == Role.USER]
    if not users or users[-1] == 0:
        return None
    return attrs.evolve(request, messages=request.messages[users[-1]:])
