"""How late the event loop runs what is ready: the wait every await adds under load.

One process serves webhooks and runs the pipeline on one event loop. When the loop is
busy, a callback that became ready (an upstream's answer, a commit done) waits for the
ones queued before it; every step of a message pays that wait. :class:`LoopLagMonitor`
sleeps ``INTERVAL_S`` at a time and records how much later than asked it woke up; the
detailed ``/api/health`` shows the median, 99th percentile and maximum over the last
``WINDOW_S`` (``loop_lag_ms``). Ten wake-ups a second cost a few microseconds each.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any

INTERVAL_S = 0.1
WINDOW_S = 60.0


class LoopLagMonitor:
    def __init__(self, interval_s: float = INTERVAL_S, window_s: float = WINDOW_S) -> None:
        self.interval_s = interval_s
        self._samples: collections.deque[float] = collections.deque(maxlen=max(1, int(window_s / interval_s)))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            asked = time.perf_counter() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self._samples.append(max(0.0, time.perf_counter() - asked))

    def stats(self) -> dict[str, Any]:
        """``{p50, p99, max}`` in milliseconds over the window, ``samples`` taken."""
        ordered = sorted(self._samples)
        if not ordered:
            return {"p50": None, "p99": None, "max": None, "samples": 0}

        def at(fraction: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 1)

        return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1] * 1000, 1),
                "samples": len(ordered)}
