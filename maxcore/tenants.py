"""A tenant at runtime: its configuration and its four bound connector instances.

Connectors are built when the configuration loads (so ``maxcore check`` sees every
error) but opened on first use: :meth:`TenantRuntime.ready` opens what a caller is
about to use, once, whichever task asks first. A server with thousands of tenants so
starts in the time it takes to read their files, and a tenant nobody writes to costs
no connection, file descriptor or client.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from .config.models import TenantConfig
from .connectors import CRM, KINDS, LLM, Channel, ConnectorContext, Memory
from .errors import PluginError
from .health import probe
from .tools import Tool
from .types import Health
from .vocabulary import LeadSchema, schema_problems


class TenantRuntime:
    """Builds, opens and closes one tenant's connectors."""

    def __init__(
        self,
        config: TenantConfig,
        plugins: Any,
        *,
        data_dir: Path,
        add_secret: Callable[[str], None] = lambda _v: None,
        public_url: str | None = None,
        session_secret: str | None = None,
        channel_factory: Callable[[ConnectorContext], Any] | None = None,
    ) -> None:
        self.config = config
        self.id = config.tenant
        self.context = ConnectorContext(
            tenant=config.tenant, data_dir=data_dir, add_secret=add_secret, public_url=public_url,
            session_secret=session_secret,
        )
        instances: dict[str, Any] = {}
        for kind in KINDS:
            block = getattr(config, kind)
            if kind == "channel" and channel_factory is not None:
                instances[kind] = channel_factory(self.context)
                continue
            cls = plugins.connector_class(kind, block.type)
            if cls is None:
                raise PluginError(f"{config.source}: no {kind} connector named {block.type!r}")
            instances[kind] = cls(block.config, self.context)
        self.channel: Channel = instances["channel"]
        self.crm: CRM = instances["crm"]
        self.memory: Memory = instances["memory"]
        self.llm: LLM = instances["llm"]
        self._registry = _allowed_tools(config, plugins.tools)
        # A CRM with a shipped vocabulary is checked now (``maxcore check``); the
        # others at open(), once they have read their declaration.
        declared = _declared_schema(self.crm)
        if declared is not None:
            _check_lead_defaults(config, declared)
        # A CRM that reads its vocabulary from the backend can only be checked open: the
        # server opens it before serving, so a bad lead default stops the start, never
        # a first message.
        self.checked_at_open = declared is None
        self.tools: dict[str, Tool] = _bind_tools(self._registry, declared, self.crm)
        self._opened: list[Any] = []
        self._ready: set[str] = set()  # kinds opened (and, for "crm", its schema bound)
        self._open_lock: asyncio.Lock | None = None

    @property
    def display_name(self) -> str:
        return self.config.name or self.id

    @property
    def channel_type(self) -> str:
        return type(self.channel).name

    def connectors(self) -> dict[str, Any]:
        return {"channel": self.channel, "crm": self.crm, "memory": self.memory, "llm": self.llm}

    @property
    def opened(self) -> bool:
        """True once every connector is open (the tenant has served a message)."""
        return len(self._ready) == len(KINDS)

    async def open(self) -> None:
        """Open every connector now (the CLI, tests); serving opens on first use."""
        await self.ready()

    async def ready(self, *kinds: str) -> None:
        """Open the connectors of ``kinds`` (all when none is given) unless they are.

        Concurrent callers share one opening; a failure leaves nothing half-open of
        the kinds asked for and is raised to each caller (the next call tries again).
        """
        wanted = kinds or KINDS
        if all(kind in self._ready for kind in wanted):
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            connectors = self.connectors()
            for kind in wanted:
                if kind in self._ready:
                    continue
                connector = connectors[kind]
                logger.bind(tenant=self.id).debug("opening {} connector {}", kind, type(connector).name)
                await connector.open()
                self._opened.append(connector)
                if kind == "crm":
                    try:
                        schema = await self.crm.lead_schema()
                        _check_lead_defaults(self.config, schema)
                    except BaseException:
                        self._opened.remove(connector)
                        await _close_quietly(self.id, connector)
                        raise
                    self.tools = _bind_tools(self._registry, schema, self.crm)
                self._ready.add(kind)

    async def close(self) -> None:
        self._ready.clear()
        for connector in self.connectors().values():
            # Opened by a direct call (the CLI, a test), not through ready(): closed too.
            if getattr(connector, "opens_lazily", False) and connector not in self._opened:
                await _close_quietly(self.id, connector)
        while self._opened:
            await _close_quietly(self.id, self._opened.pop())

    async def health(self, timeout: float = 5.0) -> dict[str, dict[str, str]]:
        """Probe every connector now (the caller opened them)."""
        async def one(kind: str, connector: Any) -> tuple[str, Health]:
            return kind, await probe(connector, timeout)

        results = await asyncio.gather(*(one(k, c) for k, c in self.connectors().items()))
        return {
            kind: {"type": type(self.connectors()[kind]).name, "status": str(h.status), "reason": h.reason}
            for kind, h in results
        }


class OpeningProxy:
    """One of a tenant's connectors as the background tasks (audit shipping, retention)
    see it: each coroutine method opens the connector first, as a message would."""

    def __init__(self, tenant: TenantRuntime, kind: str) -> None:
        self._runtime = tenant
        self._kind = kind

    @property
    def tenant(self) -> str:
        return self._runtime.id

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._runtime.connectors()[self._kind], name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def opened_first(*args: Any, **kwargs: Any) -> Any:
            await self._runtime.ready(self._kind)
            return await attribute(*args, **kwargs)

        return opened_first


async def _close_quietly(tenant: str, connector: Any) -> None:
    try:
        await connector.close()
    except Exception as exc:  # noqa: BLE001 - closing must go on for the others
        logger.bind(tenant=tenant).warning("closing {} failed: {}", type(connector).name, exc)


def _allowed_tools(config: TenantConfig, registry: dict[str, Tool]) -> dict[str, Tool]:
    allowed = config.assistant.allowed_tools
    if allowed is None:
        return dict(registry)
    return {name: registry[name] for name in allowed if name in registry}


def _declared_schema(crm: Any) -> LeadSchema | None:
    declared = getattr(crm, "declared_lead_schema", None)
    return declared() if callable(declared) else None


def _check_lead_defaults(config: TenantConfig, schema: LeadSchema) -> None:
    problems = schema_problems(schema, config.assistant.lead_defaults, config.source)
    if problems:
        raise PluginError("\n".join(problems))


def _bind_tools(registry: dict[str, Tool], schema: LeadSchema | None, crm: Any) -> dict[str, Tool]:
    """Tools whose schema depends on the CRM, built from its declaration."""
    entities = tuple(getattr(crm, "entities", ()))
    return {name: tool.for_tenant(schema or LeadSchema(), entities) for name, tool in registry.items()}
