"""A real ``maxcore serve`` subprocess on loopback, and a webchat client for it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from maxcore.testing.server import served_port

MAXCORE = str(Path(sys.executable).with_name("maxcore"))
# The inbox figures are health details: the servers these tests start set this token.
HEALTH_TOKEN = "inbox-tests-health-token"
HEALTH = {"Authorization": f"Bearer {HEALTH_TOKEN}"}


class ServerProcess:
    """``maxcore serve`` for one config dir; start, kill, terminate, start again."""

    def __init__(self, root: Path, main: str, tenant: str) -> None:
        self.root = root
        self.config = root / "config"
        self.data = root / "data"
        (self.config / "tenants").mkdir(parents=True, exist_ok=True)
        main = textwrap.dedent(main)
        if "health_token" not in main:
            assert "server:" not in main, "give server.health_token: HEALTH_TOKEN in the test's server block"
            main += f"\nserver: {{health_token: {HEALTH_TOKEN}}}\n"
        (self.config / "maxcore.yaml").write_text(main)
        (self.config / "tenants" / "acme.yaml").write_text(textwrap.dedent(tenant))
        self.port = 0  # the server binds a free port and logs it; a restart keeps it
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / "server.log"
        self.starts = 0

    def start(self, timeout: float = 30.0) -> None:
        env = {
            **os.environ, "MAXCORE_DATA_DIR": str(self.data),
            # Built-ins only: the test is about the core, and third-party plugins only slow the start.
            "MAXCORE_LOAD_PLUGINS": "",
        }
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            self.process = subprocess.Popen(
                [MAXCORE, "serve", "--config", str(self.config), "--host", "127.0.0.1",
                 "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"maxcore serve exited with {self.process.returncode}:\n{self.tail()}")
            if not self.url:
                port = served_port(self.data)
                if port is None:
                    time.sleep(0.05)
                    continue
                self.port, self.url = port, f"http://127.0.0.1:{port}"
            try:
                if httpx.get(self.url + "/api/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"maxcore serve did not answer within {timeout}s:\n{self.tail()}")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def stats(self) -> dict[str, Any]:
        return dict(self.health()["inbox"])

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/api/health", headers=HEALTH, timeout=5.0).json())

    def wait_processed(self, timeout: float = 60.0) -> None:
        """Poll the health report (another process: no event to await) until the inbox is empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.stats()
            if stats["pending"] == 0 and stats["running"] == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"inbox not empty after {timeout}s: {self.stats()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def query(self, database: str, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with sqlite3.connect(self.data / database) as conn:
            conn.row_factory = sqlite3.Row
            return conn.execute(sql, params).fetchall()


@pytest.fixture
def maxcore_server(tmp_path: Path) -> Iterator[Callable[[str, str], ServerProcess]]:
    servers: list[ServerProcess] = []

    def make(main: str, tenant: str) -> ServerProcess:
        server = ServerProcess(tmp_path / f"server{len(servers)}", main, tenant)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
