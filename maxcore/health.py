"""Detailed health from a cache that a background task keeps fresh.

``/api/health`` with the health token answers from what :class:`HealthMonitor` last
saw, so a call costs the same with one tenant or ten thousand and never waits on an
upstream. The monitor probes the connectors of the tenants that are open (a tenant
opens on its first message), each connector again once its TTL has passed: a
connector class may set ``health_ttl_s`` (the embedded ones are cheap, a provider with
a rate-limited status call wants it long); the default is ``DEFAULT_TTL_S``. Probes
run a few at a time, so a round never floods an upstream or the event loop.

A tenant not opened yet is reported as such (``"opened": false``) without a probe:
``maxcore doctor`` opens and probes every connector of every tenant on demand.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from loguru import logger

from .types import Health, HealthStatus

DEFAULT_TTL_S = 30.0
PROBE_TIMEOUT_S = 5.0
# Probes in flight at once, across every tenant.
CONCURRENT_PROBES = 8
# How often the monitor looks for connectors whose result is older than their TTL.
TICK_S = 1.0


def connector_ttl(connector: Any) -> float:
    ttl = getattr(connector, "health_ttl_s", DEFAULT_TTL_S)
    return float(ttl) if isinstance(ttl, int | float) and ttl > 0 else DEFAULT_TTL_S


def overall(statuses: Iterable[str]) -> str:
    statuses = list(statuses)
    if any(s == HealthStatus.DOWN for s in statuses):
        return "down"
    if any(s == HealthStatus.DEGRADED for s in statuses):
        return "degraded"
    return "ok"


async def probe(connector: Any, timeout: float = PROBE_TIMEOUT_S) -> Health:
    """``connector.health()`` within ``timeout``; never raises."""
    try:
        return await asyncio.wait_for(connector.health(), timeout)
    except TimeoutError:
        return Health.down(f"health check timed out after {timeout:g}s")
    except Exception as exc:  # noqa: BLE001 - health never raises
        return Health.down(f"{type(exc).__name__}: {exc}")


class HealthMonitor:
    """Per-connector results, refreshed in the background; a JSON rendering cached.

    ``tenants`` returns the current tenant runtimes (it follows reloads).
    """

    def __init__(self, tenants: Callable[[], Iterable[Any]]) -> None:
        self._tenants = tenants
        # (tenant id, kind) -> (monotonic time of the probe, connector, result)
        self._results: dict[tuple[str, str], tuple[float, Any, Health]] = {}
        self._rendered: tuple[int, str] | None = None  # (version, JSON of the tenants part)
        self._version = 0
        self._task: asyncio.Task[None] | None = None
        self._probes = asyncio.Semaphore(CONCURRENT_PROBES)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="health-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def forget(self) -> None:
        """The tenant set changed (reload): results are for connectors that are gone."""
        self._results.clear()
        self._version += 1

    async def refresh(self, now: float | None = None, *, everything: bool = False) -> int:
        """Probe every open connector whose result is older than its TTL; how many.

        ``everything``: open every tenant first and probe every connector now (the
        programmatic :meth:`maxcore.runtime.Runtime.health`; a server never does).
        """
        now = time.monotonic() if now is None else now
        due: list[tuple[str, str, Any]] = []
        for tenant in self._tenants():
            if everything:
                try:
                    await tenant.ready()
                except Exception as exc:  # noqa: BLE001 - reported as the tenant's health
                    failed = Health.down(f"cannot open: {type(exc).__name__}: {exc}")
                    for kind, connector in tenant.connectors().items():
                        self._results[(tenant.id, kind)] = (time.monotonic(), connector, failed)
                    continue
            elif not tenant.opened:
                continue
            for kind, connector in tenant.connectors().items():
                seen = self._results.get((tenant.id, kind))
                if (everything or seen is None or seen[1] is not connector
                        or now - seen[0] >= connector_ttl(connector)):
                    due.append((tenant.id, kind, connector))

        async def one(tenant_id: str, kind: str, connector: Any) -> None:
            async with self._probes:
                result = await probe(connector)
            self._results[(tenant_id, kind)] = (time.monotonic(), connector, result)

        await asyncio.gather(*(one(*item) for item in due))
        if due:
            self._version += 1
        return len(due)

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the monitor keeps monitoring
                logger.opt(exception=exc).warning("health refresh failed: {}", exc)
            await asyncio.sleep(TICK_S)

    def report(self) -> dict[str, Any]:
        """``{"tenants_status", "tenants": {id: {status, opened, connectors}}}``."""
        tenants: dict[str, Any] = {}
        for tenant in self._tenants():
            connectors: dict[str, Any] = {}
            for kind, connector in tenant.connectors().items():
                seen = self._results.get((tenant.id, kind))
                entry: dict[str, Any] = {"type": type(connector).name}
                if seen is not None and seen[1] is connector:
                    entry.update(status=str(seen[2].status), reason=seen[2].reason,
                                 checked_s_ago=round(time.monotonic() - seen[0], 1))
                else:
                    entry.update(status="ok", reason="not checked yet" if tenant.opened
                                 else "opens on the first message")
                connectors[kind] = entry
            tenants[tenant.id] = {
                "status": overall(c["status"] for c in connectors.values()),
                "opened": tenant.opened, "connectors": connectors,
            }
        return {"tenants_status": overall(t["status"] for t in tenants.values()),
                "tenants": tenants}

    def rendered(self) -> str:
        """The report as JSON (``"tenants_status": …, "tenants": {…}`` without braces),
        rebuilt only when a result changed: a health call does not re-encode every tenant."""
        if self._rendered is None or self._rendered[0] != self._version:
            # A tenant that opened shows up at the next probe round (within TICK_S).
            self._rendered = (self._version, json.dumps(self.report())[1:-1])
        return self._rendered[1]
