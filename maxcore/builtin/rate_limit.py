"""Token buckets keyed by who is asking, in bounded memory.

One process, in memory, O(1) per check: each key has a bucket of ``burst`` tokens
refilled at ``per_minute`` tokens a minute; a request takes one token or is told how
long to wait. At most ``max_keys`` buckets are kept (least recently used forgotten
first), so a flood of new keys costs a fixed amount of memory; a forgotten key starts
again with a full bucket, which is what an idle key would have anyway.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable


class KeyedLimiter:
    """``take(key)`` → 0.0 when allowed, else the seconds until a token is free."""

    def __init__(self, per_minute: float, burst: int | None = None, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not (per_minute > 0 and math.isfinite(per_minute)):
            raise ValueError(f"per_minute must be a positive number, got {per_minute!r}")
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, math.ceil(per_minute)))
        self.max_keys = max_keys
        self._clock = clock
        # key -> (tokens left, time they were counted)
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def take(self, key: str) -> float:
        now = self._clock()
        tokens, counted = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - counted) * self.rate)
        if tokens >= 1.0:
            wait = 0.0
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after(wait_s: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))
