"""The default retry schedule keeps a message alive through an hour of upstream outage."""

from __future__ import annotations

import random

from maxcore.config.models import InboxConfig
from maxcore.retry import RETRY_AFTER_CEILING_S, backoff_cap, backoff_delay, retry_span

HOUR_S = 3600.0


def test_the_default_schedule_spans_at_least_an_hour() -> None:
    config = InboxConfig()
    span = retry_span(config.backoff_initial_s, config.backoff_max_s, config.max_attempts)
    print(f"\ndefault retry schedule: {span.waits} waits, {span.shortest_s / 60:.0f} to "
          f"{span.longest_s / 60:.0f} minutes from the first attempt to the last")
    assert span.shortest_s >= HOUR_S
    # And a sampled schedule (jitter drawn) never falls below the promise.
    rng_state = random.getstate()
    try:
        random.seed(14)
        for _ in range(200):
            total = sum(backoff_delay(n, config.backoff_initial_s, config.backoff_max_s, None)
                        for n in range(1, config.max_attempts))
            assert span.shortest_s <= total <= span.longest_s
    finally:
        random.setstate(rng_state)


def test_delays_are_capped_exponential_with_jitter_and_honour_retry_after() -> None:
    caps = [backoff_cap(n, 2.0, 600.0) for n in range(1, 13)]
    assert caps[:4] == [2.0, 4.0, 8.0, 16.0] and caps[-1] == 600.0
    draws = {backoff_delay(5, 2.0, 600.0, None) for _ in range(50)}
    assert all(16.0 <= d <= 32.0 for d in draws) and len(draws) > 1  # jittered, within [cap/2, cap]
    assert backoff_delay(1, 2.0, 600.0, retry_after=90.0) == 90.0  # Retry-After beats the cap
    assert backoff_delay(1, 2.0, 600.0, retry_after=10 * HOUR_S) == RETRY_AFTER_CEILING_S
