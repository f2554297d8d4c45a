"""A real ``maxcore serve`` process on loopback: start, kill, terminate, start again.

For tests that need what only a process shows (a SIGKILL mid-load, a restart, signals):

    server = ServeProcess(tmp_path, main="inbox: {workers: 4}", tenant="tenant: acme\\n")
    server.start()          # binds a free port, kept across restarts
    ...                     # server.url, server.health(), server.query("inbox.sqlite3", ...)
    server.kill(); server.start(); server.wait_processed(); server.stop()

The server gets a health token (``HEALTH_TOKEN``, unless the main file sets one), since
the inbox figures are health details. ``plugins`` is ``MAXCORE_LOAD_PLUGINS``: the
built-ins only by default, which start faster.
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

from .server import served_port

MAXCORE = str(Path(sys.executable).with_name("maxcore"))
HEALTH_TOKEN = "serve-process-health-token"


class ServeProcess:
    """``maxcore serve`` for one config dir under ``root`` (config/, data/, server.log)."""

    def __init__(self, root: Path, main: str, tenant: str, *, plugins: str = "") -> None:
        self.root = root
        self.config = root / "config"
        self.data = root / "data"
        (self.config / "tenants").mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        main = textwrap.dedent(main)
        self.health_token = HEALTH_TOKEN
        if "health_token" not in main:
            if "server:" in main:
                raise ValueError("a server block needs health_token: HEALTH_TOKEN")
            main += f"\nserver: {{health_token: {HEALTH_TOKEN}}}\n"
        (self.config / "maxcore.yaml").write_text(main)
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

    def health(self) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.health_token}"}
        return dict(httpx.get(self.url + "/api/health", headers=headers, timeout=5.0).json())

    def stats(self) -> dict[str, Any]:
        return dict(self.health()["inbox"])

    def wait_processed(self, timeout: float = 60.0) -> None:
        """Poll the health report (another process: nothing to await) until the inbox is empty."""
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
