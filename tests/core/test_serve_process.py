"""`maxcore serve` as a real process: reload on `maxcore reload` / SIGHUP, clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from maxcore.testing.server import served_port

pytestmark = pytest.mark.slow  # real processes: seconds each

MAXCORE = [sys.executable, "-m", "maxcore"]
HEALTH = {"Authorization": "Bearer serve-health-token"}


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def tenants(url: str) -> set[str]:
    try:
        return set(httpx.get(f"{url}/api/health", timeout=2, headers=HEALTH).json()["tenants"])
    except (httpx.HTTPError, KeyError, ValueError):
        return set()


def test_reload_and_terminate(make_config, tmp_path: Path):
    config = make_config("acme", main="server: {health_token: serve-health-token}\n")
    env = {**os.environ, "MAXCORE_DATA_DIR": str(tmp_path / "data"), "MAXCORE_LOAD_PLUGINS": ""}
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([*MAXCORE, "serve", "--config", str(config), "--port", "0"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: served_port(tmp_path / "data") is not None)
        url = f"http://127.0.0.1:{served_port(tmp_path / 'data')}"
        wait_for(lambda: tenants(url) == {"acme"})
        (config / "tenants" / "globex.yaml").write_text("tenant: globex\n")
        reload = subprocess.run([*MAXCORE, "reload", "--config", str(config)], env=env,
                                capture_output=True, text=True, timeout=30)
        assert reload.returncode == 0, reload.stderr
        assert "reload requested" in reload.stdout
        wait_for(lambda: tenants(url) == {"acme", "globex"})

        (config / "tenants" / "globex.yaml").write_text("tenant: globex\ncrm: {type: nope}\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in log_path.read_text())
        assert tenants(url) == {"acme", "globex"}  # still serving the last good configuration
        assert "crm.type: unknown crm type 'nope'" in log_path.read_text()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not (tmp_path / "data" / "maxcore.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
