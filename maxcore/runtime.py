"""The running system: plugins, validated config, tenants, inbox and pipeline.

Used by the HTTP server and by the CLI alike. Reload swaps the tenant set atomically;
messages already being processed finish with the connectors they started with.
Tenants' connectors open on first use (see :mod:`maxcore.tenants`), so starting costs
the reading of the configuration, not one connection per tenant and connector.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import attrs
from loguru import logger

from . import __version__
from .audit_outbox import AuditShipper
from .config import LoadedConfig, load_config, load_dotenv_files
from .connectors import ChannelBase, Memory
from .errors import MaxcoreError, PermanentError, PluginError, WebhookError
from .health import HealthMonitor
from .http_pool import HTTP_CLIENTS
from .inbox import Inbox, make_inbox
from .journal import JournalStore, MemoryJournalStore, journal_store_for
from .logs import REDACTOR
from .loop_lag import LoopLagMonitor
from .pipeline import Pipeline, PipelineResult
from .plugins import PluginSet, load_plugins
from .retention import RetentionTask
from .tenants import OpeningProxy, TenantRuntime
from .types import InboundMessage
from .webhooks import UNPROCESSABLE_KIND, BodyRejected, clean_message, dead_letter

# A field whose name says it holds a credential: its value is redacted from every log.
SECRET_FIELD_RE = re.compile(r"(token|key|secret|password|passwd)", re.IGNORECASE)


class ConfigInvalid(MaxcoreError):
    """The configuration has problems; ``problems`` lists them all."""

    def __init__(self, problems: list[Any]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def load_checked(config_dir: Path, plugins: PluginSet) -> LoadedConfig:
    """Load the configuration and raise ConfigInvalid listing every problem."""
    load_dotenv_files(Path(config_dir))
    loaded = load_config(Path(config_dir), plugins)
    if not loaded.ok:
        raise ConfigInvalid(loaded.problems)
    for secret in configured_secrets(loaded):
        REDACTOR.add(secret)
    return loaded


def configured_secrets(loaded: LoadedConfig) -> set[str]:
    """The values of credential fields (``api_token``, ``key``, ``jwt_secret``, …) in
    maxcore.yaml and every tenant's connector blocks: what logs must never show.

    Other values, even when they come from the environment (an instance id, a URL),
    are not secrets: redacting them would garble chat ids and other log content.
    """
    found: set[str] = set()
    roots: list[Any] = [loaded.main]
    for tenant in loaded.tenants:
        roots.extend(getattr(tenant, kind).config for kind in ("channel", "crm", "memory", "llm"))
        roots.append(getattr(tenant, "speech", None))
    for root in roots:
        for name, value, hidden in _fields(root):
            if isinstance(value, str) and (hidden or SECRET_FIELD_RE.search(name)):
                found.add(value)
    return found


def _fields(root: Any, depth: int = 0) -> Iterator[tuple[str, Any, bool]]:
    """(name, value, repr-hidden) of every field of an attrs tree, dict keys included."""
    if depth > 8 or root is None:
        return
    if attrs.has(type(root)):
        for field in attrs.fields(type(root)):
            value = getattr(root, field.name)
            yield field.name, value, field.repr is False
            yield from _fields(value, depth + 1)
    elif isinstance(root, dict):
        for key, value in root.items():
            yield str(key), value, False
            yield from _fields(value, depth + 1)


class TenantSet:
    """Tenants by id and webhook routes by (channel type, route key)."""

    def __init__(self, tenants: Iterable[TenantRuntime]) -> None:
        self.by_id: dict[str, TenantRuntime] = {}
        self.routes: dict[tuple[str, str], TenantRuntime] = {}
        self.channel_classes: dict[str, type] = {}
        for tenant in tenants:
            self.by_id[tenant.id] = tenant
            self.channel_classes[tenant.channel_type] = type(tenant.channel)
            try:
                key = tenant.channel.route_key
            except Exception as exc:
                raise PluginError(f"{tenant.config.source}: channel has no route key ({exc})") from exc
            other = self.routes.get((tenant.channel_type, key))
            if other is not None:
                raise PluginError(
                    f"{tenant.config.source}: channel {tenant.channel_type} instance {key!r} "
                    f"is already used by {other.config.source}; each tenant owns its instance"
                )
            self.routes[(tenant.channel_type, key)] = tenant


class Runtime:
    """Everything ``maxcore serve`` and the CLI commands run on."""

    def __init__(
        self,
        loaded: LoadedConfig,
        plugins: PluginSet,
        *,
        tenant_ids: Iterable[str] | None = None,
        channel_factory: Any = None,
        inbox: Inbox | None = None,
        role: str = "all",
    ) -> None:
        self.loaded = loaded
        # "web": webhooks and receivers commit to the inbox; "worker": the pipeline
        # processes it; "all": both in this process (see ``maxcore serve --role``).
        self.role = role
        self.plugins = plugins
        self.hooks = plugins.hooks
        self.version = __version__
        self._tenant_ids = set(tenant_ids) if tenant_ids is not None else None
        # Shared pools hold a connection per worker that may call the same upstream.
        HTTP_CLIENTS.size_for(loaded.main.inbox.workers)
        self._channel_factory = channel_factory
        self.tenants = self._build_tenants(loaded)
        self.inbox: Inbox = inbox or make_inbox(loaded.main.inbox, loaded.data_dir, role)
        self.journal: JournalStore = journal_store_for(self.inbox)
        self.audit = AuditShipper(self.journal, self._memory_of)
        self._direct_journal = MemoryJournalStore()
        self.retention = RetentionTask(loaded.main.retention, self.journal, self._memories)
        self._receivers: list[asyncio.Task[None]] = []
        self._retired: list[TenantSet] = []
        self._in_flight: dict[int, int] = {}
        self.health_monitor = HealthMonitor(lambda: self.tenants.by_id.values())
        self.loop_lag = LoopLagMonitor()
        self.started = False

    @classmethod
    def from_directory(cls, config_dir: Path, **kwargs: Any) -> Runtime:
        plugins = kwargs.pop("plugins", None) or load_plugins()
        return cls(load_checked(config_dir, plugins), plugins, **kwargs)

    @property
    def config(self) -> Any:
        return self.loaded.main

    def _build_tenants(self, loaded: LoadedConfig) -> TenantSet:
        selected = [
            t for t in loaded.tenants if self._tenant_ids is None or t.tenant in self._tenant_ids
        ]
        if self._tenant_ids is not None:
            missing = self._tenant_ids - {t.tenant for t in selected}
            if missing:
                known = ", ".join(t.tenant for t in loaded.tenants) or "none"
                raise MaxcoreError(f"unknown tenant {', '.join(sorted(missing))}; configured: {known}")
        return TenantSet(
            TenantRuntime(
                config, self.plugins, data_dir=loaded.data_dir, add_secret=REDACTOR.add,
                public_url=loaded.main.server.public_url,
                session_secret=loaded.main.server.session_secret,
                channel_factory=self._channel_factory,
            )
            for config in selected
        )

    def tenant(self, tenant_id: str) -> TenantRuntime:
        try:
            return self.tenants.by_id[tenant_id]
        except KeyError:
            raise MaxcoreError(f"unknown tenant {tenant_id!r}") from None

    # -- lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        """Open every tenant's connectors now (the CLI; serving opens them on first use).
        On failure, close what was opened."""
        opened: list[TenantRuntime] = []
        try:
            for tenant in self.tenants.by_id.values():
                await tenant.open()
                opened.append(tenant)
        except BaseException:
            for tenant in opened:
                await tenant.close()
            raise

    async def start(self) -> None:
        """Start the inbox workers, the channels' receivers (polling) and the health
        monitor. Connectors open on first use, except the CRMs whose vocabulary is read
        from the backend: they are opened now, since checking the lead defaults needs it."""
        await self.open_checked_at_open(self.tenants)
        await self.inbox.start(self.handle, rate_limit=self.messages_per_minute)
        if self.role != "web":  # the pipeline's companions run where the pipeline runs
            self.audit.start()
            self.retention.start()
        if self.role != "worker":  # intake: what pulls messages in
            for tenant in self.tenants.by_id.values():
                self._start_receiver(tenant)
        self.health_monitor.start()
        self.loop_lag.start()
        self._warn_health_token()
        self.started = True
        role = "" if self.role == "all" else f" as {self.role}"
        logger.info(
            "maxcore {} started{} with {} tenant(s): {}", self.version, role, len(self.tenants.by_id),
            ", ".join(list(self.tenants.by_id)[:20]) + (", …" if len(self.tenants.by_id) > 20 else "")
            or "none",
        )

    def _warn_health_token(self) -> None:
        """Tenants on connectors that reach the network: their health is worth reading,
        and only the health token shows it."""
        if self.config.server.health_token:
            return
        remote = sorted({type(c).name for t in self.tenants.by_id.values()
                         for c in t.connectors().values()
                         if not type(c).__module__.startswith("maxcore.builtin")})
        if remote:
            logger.warning("server.health_token is not set: nobody can read the health of the "
                           "{} connector(s) over HTTP (/api/health answers {{status, version}} only)",
                           ", ".join(remote))

    @staticmethod
    async def open_checked_at_open(tenants: TenantSet) -> None:
        """Open the CRMs that only an open connection can check (raises their error)."""
        await asyncio.gather(*(t.ready("crm") for t in tenants.by_id.values() if t.checked_at_open))

    def _start_receiver(self, tenant: TenantRuntime) -> None:
        if not receives(tenant.channel):
            return

        async def run() -> None:
            try:
                await tenant.ready("channel")
                await tenant.channel.run_receiver(self.submit)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a receiver crash must be visible
                logger.bind(tenant=tenant.id).exception("channel receiver stopped: {}", exc)

        self._receivers.append(asyncio.create_task(run(), name=f"receiver-{tenant.id}"))

    async def stop(self, grace: float | None = None) -> None:
        grace = self.config.server.shutdown_grace_s if grace is None else grace
        await self.health_monitor.stop()
        await self.loop_lag.stop()
        for task in self._receivers:
            task.cancel()
        await asyncio.gather(*self._receivers, return_exceptions=True)
        self._receivers.clear()
        await self.retention.stop()
        await self.inbox.stop(grace)
        # After the workers: their last audit rows go out with this shipment.
        await self.audit.stop()
        await self.close()
        self.started = False

    async def close(self) -> None:
        for tenant in self.tenants.by_id.values():
            await tenant.close()
        for retired in self._retired:
            for tenant in retired.by_id.values():
                await tenant.close()
        self._retired.clear()

    # -- messages --------------------------------------------------------------
    async def submit(self, message: InboundMessage) -> bool:
        """Hand ``message`` to the inbox; True if new. Text is made storable first; a
        message that cannot be stored as it is (metadata too deep) becomes a dead letter."""
        if message.tenant not in self.tenants.by_id:
            raise WebhookError(401, f"unknown tenant {message.tenant!r}")
        if message.kind == UNPROCESSABLE_KIND:
            return await self.inbox.submit_dead(message, str(message.metadata.get("reason")))
        try:
            message = clean_message(message)
        except BodyRejected as exc:
            letter = dead_letter(message.tenant, message.channel, repr(message)[:65536],
                                 f"message refused by the inbox: {exc}", message.chat_id,
                                 message.message_id)
            return await self.inbox.submit_dead(letter, str(letter.metadata["reason"]))
        accepted = await self.inbox.submit(message)
        if not accepted:
            logger.bind(tenant=message.tenant, message_id=message.message_id).info(
                "[PIPELINE] message already received from chat {}: duplicate ignored",
                message.chat_id,
            )
        return accepted

    async def handle(self, message: InboundMessage) -> PipelineResult:
        """Process one message with the tenant set current when it starts."""
        if message.kind == UNPROCESSABLE_KIND:  # put back by `maxcore inbox retry`
            raise PermanentError(
                f"this body could not be parsed ({message.metadata.get('reason')}); "
                "see `maxcore inbox show` for the raw body")
        tenants = self.tenants
        tenant = tenants.by_id.get(message.tenant)
        if tenant is None:
            raise MaxcoreError(f"tenant {message.tenant!r} is no longer configured")
        self._in_flight[id(tenants)] = self._in_flight.get(id(tenants), 0) + 1
        try:
            await tenant.ready()
            if self.started:
                return await Pipeline(tenant, self.hooks, self.journal, self.audit.notify).process(message)
            # Outside the inbox (the CLI chat, tests driving the pipeline): a journal in
            # process memory, its audit rows shipped before returning.
            try:
                return await Pipeline(tenant, self.hooks, self._direct_journal).process(message)
            finally:
                await AuditShipper(self._direct_journal, self._memory_of).flush()
        finally:
            self._in_flight[id(tenants)] -= 1
            await self._close_retired()

    def _memory_of(self, tenant_id: str) -> Memory | None:
        tenant = self.tenants.by_id.get(tenant_id)
        # Opened on the first call: rows left by an earlier run may name a tenant that
        # has not had a message since this one started.
        return cast(Memory, OpeningProxy(tenant, "memory")) if tenant is not None else None

    def _memories(self) -> list[Memory]:
        return [cast(Memory, OpeningProxy(t, "memory")) for t in self.tenants.by_id.values()]

    async def flush_audit(self) -> None:
        """Ship every audit row waiting in the outbox (tests, before reading the audit log)."""
        await self.audit.flush()

    def messages_per_minute(self, tenant_id: str) -> int | None:
        """The tenant's ``limits.messages_per_minute`` (None: unlimited), read at each message."""
        tenant = self.tenants.by_id.get(tenant_id)
        return tenant.config.limits.messages_per_minute if tenant is not None else None

    async def process_now(self, message: InboundMessage) -> PipelineResult:
        """Process directly, without the inbox (the CLI's chat)."""
        return await self.handle(message)

    # -- reload ----------------------------------------------------------------
    async def reload(self, config_dir: Path) -> list[str]:
        """Load the configuration again; on success swap tenants. Returns problems."""
        try:
            # Reading and validating files is blocking work: keep it off the event loop.
            loaded = await asyncio.to_thread(load_checked, config_dir, self.plugins)
            tenants = self._build_tenants(loaded)
        except ConfigInvalid as exc:
            return [str(p) for p in exc.problems]
        except MaxcoreError as exc:
            return [str(exc)]
        # The new tenants open on first use, as at start.
        try:
            await self.open_checked_at_open(tenants)
        except Exception as exc:  # noqa: BLE001 - keep serving with the old tenants
            for tenant in tenants.by_id.values():
                await tenant.close()
            return [f"cannot open connectors: {exc}"]
        old, self.tenants, self.loaded = self.tenants, tenants, loaded
        for task in self._receivers:
            task.cancel()
        await asyncio.gather(*self._receivers, return_exceptions=True)
        self._receivers.clear()
        if self.role != "worker":
            for tenant in tenants.by_id.values():
                self._start_receiver(tenant)
        self._retired.append(old)
        self.health_monitor.forget()
        await self._close_retired()
        logger.info("configuration reloaded: {} tenant(s)", len(tenants.by_id))
        return []

    async def _close_retired(self) -> None:
        still: list[TenantSet] = []
        for retired in self._retired:
            if self._in_flight.get(id(retired), 0) > 0:
                still.append(retired)
                continue
            self._in_flight.pop(id(retired), None)
            for tenant in retired.by_id.values():
                await tenant.close()
        self._retired = still

    # -- health ----------------------------------------------------------------
    def status(self) -> tuple[str, list[str]]:
        """The process's own state (inbox, workers, backlog): cheap, no upstream call."""
        return self.inbox.health()

    async def health(self) -> dict[str, Any]:
        """Every tenant's connector health probed now (tenants are opened for it) and the
        inbox: for programs and tests. ``/api/health`` answers from the monitor's cache
        (:meth:`health_json`) instead."""
        await self.health_monitor.refresh(everything=True)
        status, problems = self.status()
        return {
            "status": status,
            "problems": problems,
            **self.health_monitor.report(),
            "version": self.version,
            "inbox": self.inbox.stats(),
            "audit_outbox": self.audit.stats(),
            "loop_lag_ms": self.loop_lag.stats(),
        }

    def health_json(self) -> str:
        """:meth:`health` as JSON, the tenants' part re-encoded only when it changed."""
        status, problems = self.status()
        head = json.dumps({"status": status, "problems": problems, "version": self.version,
                           "inbox": self.inbox.stats(), "audit_outbox": self.audit.stats(),
                           "loop_lag_ms": self.loop_lag.stats()})
        return head[:-1] + ", " + self.health_monitor.rendered() + "}"


def receives(channel: Any) -> bool:
    """Whether ``channel`` pulls messages (a receiver task must run for it).

    A channel says so with a ``polls`` attribute; one without it polls when it
    overrides ``run_receiver`` (the base class's returns at once).
    """
    polls = getattr(channel, "polls", None)
    if isinstance(polls, bool):
        return polls
    return type(channel).run_receiver is not ChannelBase.run_receiver
