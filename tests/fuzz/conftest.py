"""Fixtures of the fuzz suite: the Green-API emulator, the captured text log, the app."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuzz_support import API_TOKEN, INSTANCE, MAIN, TENANTS, WEBHOOK_TOKEN, LiveApp

from maxcore.logs import setup_logging
from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.harness import write_config


@pytest.fixture(scope="module")
def emulator() -> Iterator[GreenApiEmulator]:
    emulator = GreenApiEmulator()
    emulator.reset(rate_limits={})
    emulator.add_instance(INSTANCE, API_TOKEN, WEBHOOK_TOKEN)
    with emulator.serve() as server:
        emulator.url = server.url  # type: ignore[attr-defined]
        yield emulator


@pytest.fixture(scope="module")
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    setup_logging("DEBUG", "text", stream=stream)
    yield stream
    setup_logging("INFO", "text")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, emulator: GreenApiEmulator,
        log_stream: io.StringIO) -> Iterator[LiveApp]:
    root = tmp_path_factory.mktemp("fuzz")
    url = emulator.url  # type: ignore[attr-defined]
    config = write_config(root / "config", {k: v.replace("{api_url}", url) for k, v in TENANTS.items()},
                          main=MAIN, data_dir=root / "data")
    live = LiveApp(config).start()
    yield live
    live.stop()


