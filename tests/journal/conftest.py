"""The journal's tests: a Green-API emulator whose outgoing journal lags, and tenants on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.harness import write_config

INSTANCE = 7105000071
API_TOKEN = "journal-api-token-0123456789abcdef"
WEBHOOK_TOKEN = "journal-webhook-token-0123456789"
CHAT = "33612345678@c.us"
OUTGOING_LAG_S = 0.3  # the emulator's journal shows a send this long after it happened

GREENAPI_TENANT = """
tenant: acme
channel:
  type: greenapi
  instance_id: {instance}
  api_token: {api_token}
  webhook_token: {webhook_token}
  api_url: {api_url}
  outgoing_journal_lag_s: {lag}
crm: {{type: sqlite}}
memory: {{type: sqlite}}
llm: {{type: {llm}}}
assistant: {{language: fr}}
"""

FAST_RETRIES = """
inbox:
  type: sqlite
  backoff_initial_s: 0.05
  backoff_max_s: 0.2
  max_attempts: 30
"""


@pytest.fixture
def greenapi() -> Iterator[tuple[GreenApiEmulator, str]]:
    emulator = GreenApiEmulator(rate_limits={}, outgoing_lag_s=OUTGOING_LAG_S)
    emulator.add_instance(INSTANCE, API_TOKEN, WEBHOOK_TOKEN)
    with emulator.serve() as server:
        yield emulator, server.url


@pytest.fixture
def greenapi_config(tmp_path: Path, greenapi: tuple[GreenApiEmulator, str]) -> Callable[..., Path]:
    def make(main: str = FAST_RETRIES, lag: float = 2 * OUTGOING_LAG_S, llm: str = "offline") -> Path:
        tenant = GREENAPI_TENANT.format(instance=INSTANCE, api_token=API_TOKEN,
                                        webhook_token=WEBHOOK_TOKEN, api_url=greenapi[1], lag=lag,
                                        llm=llm)
        return write_config(tmp_path / "config", {"acme": tenant}, main=main, data_dir=tmp_path / "data")

    return make
