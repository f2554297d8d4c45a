"""A real ``maxcore serve`` subprocess with the Green-API plugin, to kill and start again.

The shape of tests/inbox/conftest.py's ServerProcess, with the third-party plugins the
test names allowed in (that one loads the built-ins only).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from maxcore.testing.server import served_port

MAXCORE = str(Path(sys.executable).with_name("maxcore"))
# The inbox figures are health details: only shown with the health token.
HEALTH_TOKEN = "journal-tests-health-token"


class ServerProcess:
    def __init__(self, root: Path, main: str, tenant: str, plugins: str) -> None:
        self.config = root / "config"
        self.data = root / "data"
        (self.config / "tenants").mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        (self.config / "maxcore.yaml").write_text(textwrap.dedent(main))
        (self.config / "tenants" / "acme.yaml").write_text(textwrap.dedent(tenant))
        self.plugins = plugins
        self.port = 0  # bound by the server on its first start, kept on restarts
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / "server.log"
        self.starts = 0

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, "MAXCORE_DATA_DIR": str(self.data), "MAXCORE_LOAD_PLUGINS": self.plugins}
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

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def health(self) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {HEALTH_TOKEN}"}
        return dict(httpx.get(self.url + "/api/health", headers=headers, timeout=5.0).json())

    def wait_processed(self, timeout: float = 120.0) -> None:
        """Poll the health report (another process: nothing to await) until the inbox is empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.health()["inbox"]
            if stats["pending"] == 0 and stats["running"] == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"inbox not empty after {timeout}s: {self.health()['inbox']}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def query(self, database: str, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with sqlite3.connect(self.data / database) as conn:
            conn.row_factory = sqlite3.Row
            return conn.execute(sql, params).fetchall()
