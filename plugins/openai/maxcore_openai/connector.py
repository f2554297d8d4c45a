"""The ``openai`` LLM connector: Chat Completions with function tools, one client per tenant.

Tenant YAML::

    llm:
      type: openai
      model: gpt-4o-mini
      api_key: ${OPENAI_API_KEY}          # optional off OpenAI (Ollama, vLLM, LM Studio)
      base_url: http://localhost:11434/v1 # optional; OpenAI's when left out
      temperature: 0.2                    # optional, 0-2
      max_output_tokens: 500              # optional
      token_limit_field: auto             # auto | max_completion_tokens | max_tokens
      timeout_s: 30                       # per request (the SDK's default is 600)
      max_retries: 0                      # the SDK's own quick retries (in the worker)
      organization: org-...               # optional (OpenAI-Organization header)
      project: proj_...                   # optional (OpenAI-Project header)

Retries: by default none here. A connection error, 408, 409, 429 or 5xx becomes a
``RetryableError`` whose ``retry_after`` is the server's word (``retry-after-ms`` /
``retry-after``), and the core's inbox puts the message back on a timer no sooner than
that, without holding a worker (the model replies and tool results already journalled
are not asked or run again). ``max_retries`` > 0 lets the SDK retry inside the worker
first (it waits at most 120 s for a Retry-After).

A request over the model's context window (400 ``context_length_exceeded``) is sent
once more without the conversation's earlier turns; if even that does not fit, the
message is dead with a reason that says what to change.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from maxcore.config.models import FieldValueError, http_url, in_range, non_empty, one_of
from maxcore.connectors import ConnectorBase, ConnectorContext
from maxcore.errors import PermanentError
from maxcore.http_pool import origin, ssl_context
from maxcore.types import Health, LLMReply, LLMRequest, Role

from .translate import messages_of, reply_of, tool_of

if TYPE_CHECKING:
    import openai

# The SDK takes about a second to import: it is imported when a tenant's connector opens,
# not when the plugin loads, so `maxcore check`, `plugins`, `chat` stay quick.

OPENAI_BASE_URL = "https://api.openai.com/v1"
# The SDK refuses to build a client without a key; keyless servers ignore this one.
KEYLESS_PLACEHOLDER = "no-key"
HEALTH_TIMEOUT_S = 5.0


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
        self._client: openai.AsyncOpenAI | None = None
        self._http: Any = None
        self._log = logger.bind(tenant=context.tenant)

    async def open(self) -> None:
        if self._client is not None:
            return
        import openai

        client = openai.AsyncOpenAI(
            api_key=self.config.api_key or KEYLESS_PLACEHOLDER,
            base_url=self.config.url,
            organization=self.config.organization,
            project=self.config.project,
            timeout=self.config.timeout_s,
            max_retries=self.config.max_retries,
            http_client=self._shared_http(),
        )
        # Left None, the SDK fills these from OPENAI_ORG_ID / OPENAI_PROJECT_ID: one process
        # serves many tenants, so only the tenant's own YAML may set them.
        client.organization = self.config.organization
        client.project = self.config.project
        self._client = client

    def _shared_http(self) -> Any:
        """The connection pool the process shares for this base URL (the SDK sends the
        tenant's key in each request's headers; nothing tenant-specific is on the pool).

        On aiohttp (:class:`~maxcore_openai.transport.SdkTransport`): ``bench/http_clients.py``
        measured 1.2 ms of CPU per completion against 1.7 ms on its default httpx2 pool
        with 64 in flight, 1.5 against 2.6 ms with 256."""
        import httpx2
        import openai

        from .transport import SdkTransport

        clients = self.context.http
        size = clients.max_connections
        self._http = clients.acquire(("openai", origin(self.config.url)), lambda: (
            openai.DefaultAsyncHttpxClient(transport=SdkTransport(
                verify=ssl_context(),
                limits=httpx2.Limits(max_connections=size, max_keepalive_connections=size)))))
        return self._http

    async def close(self) -> None:
        # The SDK's own close() would close the shared pool: the lease is given back instead.
        self._client = None
        http, self._http = self._http, None
        if http is not None:
            await self.context.http.release(http)

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            raise PermanentError(f"openai connector of tenant {self.tenant} used before open()")
        return self._client

    def body(self, request: LLMRequest) -> dict[str, Any]:
        """The Chat Completions parameters for ``request`` (what goes on the wire)."""
        body: dict[str, Any] = {"model": self.config.model, "messages": messages_of(request)}
        if request.tools:
            body["tools"] = [tool_of(spec) for spec in request.tools]
        if self.config.temperature is not None:
            body["temperature"] = self.config.temperature
        if self.config.max_output_tokens is not None:
            body[self.config.limit_field] = self.config.max_output_tokens
        return body

    async def complete(self, request: LLMRequest) -> LLMReply:
        from .errors import ContextTooLong

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
        import openai
        from openai.types.chat import ChatCompletion

        from .errors import map_error

        started = time.monotonic()
        try:
            # The SDK's generic POST with the body as built: ``chat.completions.create``
            # would walk it again against the SDK's TypedDicts (a third of the SDK's CPU
            # per call in bench/pipeline.py's profile), for a body that is already the wire
            # format. Errors, retries and the bearer key are the SDK's as with create().
            completion = await self.client.post(
                "/chat/completions", body=self.body(request), cast_to=ChatCompletion,
                options={"security": {"bearer_auth": True}})
        except openai.OpenAIError as exc:
            error = map_error(exc, tenant=self.tenant, model=self.config.model,
                              base_url=self.config.url, timeout_s=self.config.timeout_s)
            self._log.warning("[LLM] chat completion failed: {}", error)
            raise error from None
        reply, finish = reply_of(completion)
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
        import openai

        from .errors import map_error

        try:
            page = await self.client.with_options(
                max_retries=0, timeout=min(self.config.timeout_s, HEALTH_TIMEOUT_S)
            ).models.list()
        except openai.OpenAIError as exc:
            error = map_error(exc, tenant=self.tenant, model=self.config.model,
                              base_url=self.config.url, timeout_s=HEALTH_TIMEOUT_S)
            return Health.down(f"{error} — fix: {self._health_fix(exc)}")
        except PermanentError as exc:
            return Health.down(str(exc))
        ids = sorted({model.id for model in page.data})
        if self.config.model in ids:
            return Health.ok(f"model {self.config.model} available at {self.config.url}")
        # Azure deployments and some proxies list models under other names: the key works,
        # the model may still answer, so degraded rather than down.
        listed = ", ".join(ids[:8]) + (", …" if len(ids) > 8 else "")
        return Health.degraded(
            f"model {self.config.model} not listed by {self.config.url} ({len(ids)} model(s) listed) — "
            f"fix: set llm.model to a model this server lists ({listed or 'none'})")

    def _health_fix(self, exc: openai.OpenAIError) -> str:
        """What the operator changes when listing the models failed with ``exc``."""
        import openai

        if isinstance(exc, openai.AuthenticationError):
            return f"set llm.api_key (e.g. ${{OPENAI_API_KEY}}) to a valid key for {self.config.url}"
        if isinstance(exc, openai.PermissionDeniedError):
            return "give the key access to the models (llm.project / llm.organization, or the key's scopes)"
        if isinstance(exc, openai.APIConnectionError):  # timeouts included
            return f"check llm.base_url ({self.config.url}) and that the server is reachable from here"
        return f"check the llm block (base_url, api_key, model) and the status of {self.config.url}"


def without_history(request: LLMRequest) -> LLMRequest | None:
    """``request`` without the turns before the current user message (None: none to drop)."""
    users = [i for i, turn in enumerate(request.messages) if turn.role == Role.USER]
    if not users or users[-1] == 0:
        return None
    return attrs.evolve(request, messages=request.messages[users[-1]:])
