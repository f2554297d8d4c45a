"""Green-API plugin tests: the emulator on 127.0.0.1, tenants, a log capture.

Every loguru record of the whole run is collected (raw, before the redacting sinks) and
checked at the end for the API and webhook tokens the tests use.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from maxcore_greenapi.channel import GreenApiChannel
from maxcore_greenapi.config import GreenApiConfig

from maxcore.testing import context_for
from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.harness import write_config

sys.path.insert(0, str(Path(__file__).parent))
from greenapi_support import (
    API_TOKEN,
    INSTANCE,
    OTHER_API_TOKEN,
    OTHER_INSTANCE,
    OTHER_WEBHOOK_TOKEN,
    TOKENS,
    WEBHOOK_TOKEN,
)

LOG_LINES: list[str] = []


def _leaks(lines: list[str]) -> list[str]:
    return [line for line in lines if any(token in line for token in TOKENS)]


@pytest.fixture(scope="session", autouse=True)
def no_token_in_logs() -> Iterator[list[str]]:
    """At the end of the run: no captured record holds a token, and records were captured."""
    yield LOG_LINES
    leaked = _leaks(LOG_LINES)
    assert not leaked, f"a token appeared in {len(leaked)} log record(s): {leaked[0][:300]}"
    assert LOG_LINES, "no log record was captured: the leak check would prove nothing"


@pytest.fixture(autouse=True)
def captured_logs(no_token_in_logs: list[str]) -> Iterator[list[str]]:
    """Every loguru record of the test, raw (before the redacting sinks), with tracebacks.

    Added per test: other suites reconfigure loguru (``logger.remove()``) between tests.
    """
    lines: list[str] = []
    sink = logger.add(lines.append, level="TRACE", format="{level} {message} {extra}\n{exception}",
                      backtrace=True, diagnose=False)
    yield lines
    try:
        logger.remove(sink)
    except ValueError:
        pass  # removed by the code under test (setup_logging)
    no_token_in_logs.extend(str(line) for line in lines)
    leaked = _leaks([str(line) for line in lines])
    assert not leaked, f"a token appeared in the log: {leaked[0][:300]}"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[GreenApiEmulator, str]]:
    emulator = GreenApiEmulator()
    with emulator.serve() as server:
        yield emulator, server.url


@pytest.fixture
def emulator(served: tuple[GreenApiEmulator, str]) -> GreenApiEmulator:
    emulator, _url = served
    emulator.reset(rate_limits={"getStateInstance": 1, "setSettings": 1, "sendMessage": 50})
    emulator.add_instance(INSTANCE, API_TOKEN, WEBHOOK_TOKEN)
    emulator.add_instance(OTHER_INSTANCE, OTHER_API_TOKEN, OTHER_WEBHOOK_TOKEN)
    return emulator


@pytest.fixture
def api_url(served: tuple[GreenApiEmulator, str]) -> str:
    return served[1]


@pytest.fixture
def make_channel(emulator: GreenApiEmulator, api_url: str, tmp_path: Path) -> Callable[..., GreenApiChannel]:
    """An unopened channel for the fixtures' instance; keywords override the Config."""

    def make(tenant: str = "acme", **overrides: Any) -> GreenApiChannel:
        settings: dict[str, Any] = {
            "instance_id": INSTANCE, "api_token": API_TOKEN, "webhook_token": WEBHOOK_TOKEN,
            "api_url": api_url, "backoff_initial_ms": 10,
        }
        settings.update(overrides)
        return GreenApiChannel(GreenApiConfig(**settings), context_for(tenant, tmp_path))

    return make


TENANT_YAML = """
tenant: {tenant}
channel:
  type: greenapi
  instance_id: {instance}
  api_token: {api_token}
  webhook_token: {webhook_token}
  api_url: {api_url}
  mode: {mode}
  receive_timeout_s: 5
  backoff_initial_ms: 10
{extra}crm: {{type: sqlite}}
memory: {{type: sqlite}}
llm: {{type: offline}}
assistant: {{language: fr}}
"""

MAIN_YAML = """
inbox:
  type: {inbox}
  backoff_initial_s: 0.01
  backoff_max_s: 0.05
  max_attempts: 3
"""


@pytest.fixture
def make_config(tmp_path: Path, api_url: str) -> Callable[..., Path]:
    """A config dir with tenant ``acme`` on the fixtures' instance (and ``globex`` on another)."""

    def make(mode: str = "webhook", extra: str = "", two_tenants: bool = False,
             inbox: str = "sqlite") -> Path:
        tenants = {"acme": TENANT_YAML.format(
            tenant="acme", instance=INSTANCE, api_token=API_TOKEN, webhook_token=WEBHOOK_TOKEN,
            api_url=api_url, mode=mode, extra=extra)}
        if two_tenants:
            tenants["globex"] = TENANT_YAML.format(
                tenant="globex", instance=OTHER_INSTANCE, api_token=OTHER_API_TOKEN,
                webhook_token=OTHER_WEBHOOK_TOKEN, api_url=api_url, mode=mode, extra=extra)
        return write_config(tmp_path / "config", tenants, main=MAIN_YAML.format(inbox=inbox),
                            data_dir=tmp_path / "data")

    return make
