"""``maxcore_server(main, tenant)``: real ``maxcore serve`` processes, stopped after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from maxcore.testing.serve_process import ServeProcess


@pytest.fixture
def maxcore_server(tmp_path: Path) -> Iterator[Callable[[str, str], ServeProcess]]:
    servers: list[ServeProcess] = []

    def make(main: str, tenant: str) -> ServeProcess:
        server = ServeProcess(tmp_path / f"server{len(servers)}", main, tenant)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
