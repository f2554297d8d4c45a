"""The event loop's lag: how late a ready callback runs, shown in the detailed health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from maxcore.loop_lag import LoopLagMonitor
from maxcore.testing.harness import running


async def test_a_blocked_loop_shows_as_lag_and_an_idle_one_does_not() -> None:
    monitor = LoopLagMonitor(interval_s=0.01, window_s=10)
    assert monitor.stats() == {"p50": None, "p99": None, "max": None, "samples": 0}
    monitor.start()
    try:
        await asyncio.sleep(0.2)
        idle = monitor.stats()
        assert idle["samples"] >= 3 and idle["max"] < 140  # a loaded machine still wakes it in time
        time.sleep(0.15)  # noqa: ASYNC251 - the loop is held on purpose: the monitor wakes 150 ms late
        await asyncio.sleep(0.05)
        busy = monitor.stats()
        assert busy["max"] >= 140
        assert busy["samples"] > idle["samples"]
    finally:
        await monitor.stop()


async def test_detailed_health_reports_the_loop_lag(make_config: Callable[..., Path]) -> None:
    config = make_config("acme", main="server: {health_token: lag-health-token}\n")
    async with running(config) as served:
        await asyncio.sleep(0.25)
        lag = (await served.runtime.health())["loop_lag_ms"]
        assert lag["samples"] >= 1 and lag["p99"] is not None
        answer = await served.client.get("/api/health", headers={"Authorization": "Bearer lag-health-token"})
        assert answer.json()["loop_lag_ms"]["samples"] >= 1
