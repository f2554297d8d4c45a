"""`maxcore serve --role web` and `--role worker` as two processes on one SQLite inbox:
the web process commits the webhook before its 200, the worker processes it and replies."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.server import ServerThread, served_port

pytestmark = pytest.mark.slow  # real processes: seconds each

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "greenapi" / "incoming_text.json"
MAXCORE = [sys.executable, "-m", "maxcore"]
INSTANCE = 7105000001  # the fixture's idInstance
API_TOKEN = "roles-api-token-0123456789abcdef0123"
WEBHOOK_TOKEN = "roles-webhook-token-0123456789abcdef"


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def write_config(root: Path, api_url: str) -> Path:
    config = root / "config"
    (config / "tenants").mkdir(parents=True)
    (config / "maxcore.yaml").write_text(f"data_dir: {root / 'data'}\n")
    (config / "tenants" / "acme.yaml").write_text(textwrap.dedent(f"""
        tenant: acme
        channel:
          type: greenapi
          instance_id: {INSTANCE}
          api_token: {API_TOKEN}
          webhook_token: {WEBHOOK_TOKEN}
          api_url: {api_url}
        assistant: {{language: fr}}
    """))
    return config


def test_a_message_flows_from_the_web_process_to_the_worker_process(tmp_path: Path) -> None:
    emulator = GreenApiEmulator(rate_limits={})
    instance = emulator.add_instance(INSTANCE, API_TOKEN, WEBHOOK_TOKEN)
    upstream = ServerThread(emulator.app).start()
    config = write_config(tmp_path, upstream.url)
    env = {**os.environ, "MAXCORE_LOAD_PLUGINS": "greenapi"}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs = {role: tmp_path / f"{role}.log" for role in ("web", "worker")}
    try:
        for role in ("web", "worker"):
            with logs[role].open("wb") as log:
                processes[role] = subprocess.Popen(
                    [*MAXCORE, "serve", "--config", str(config), "--port", "0", "--role", role],
                    env=env, stdout=log, stderr=subprocess.STDOUT)
        data = tmp_path / "data"
        wait_for(lambda: served_port(data) is not None and (data / "maxcore-worker.pid").exists())
        body = copy.deepcopy(json.loads(FIXTURE.read_text()))
        body["idMessage"] = "ROLES0001"
        body["messageData"]["textMessageData"]["textMessage"] = (
            "Nouveau lead : Jean Dupont, BTP, jean@dupont.example, +33612345678")
        response = httpx.post(f"http://127.0.0.1:{served_port(data)}/webhooks/greenapi", json=body,
                              headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}, timeout=10)
        assert response.status_code == 200 and response.json()["accepted"] == 1
        wait_for(lambda: len(instance.sent) == 1)
        assert "Jean Dupont" in str(instance.sent[0])
        # The worker logs "reply sent" after Green-API answered: the emulator can hold the
        # message before the line is written, so wait for the line, not for the send.
        wait_for(lambda: "[PIPELINE] reply sent" in logs["worker"].read_text())
        web_log, worker_log = logs["web"].read_text(), logs["worker"].read_text()
        assert "[PIPELINE] message accepted" in web_log and "[PIPELINE] reply sent" not in web_log
        assert "[PIPELINE] reply sent" in worker_log and "[GREENAPI_SEND]" in worker_log
        # `maxcore reload` reaches both processes (the worker's pid file names a worker).
        reload = subprocess.run([*MAXCORE, "reload", "--config", str(config)], env=env,
                                capture_output=True, text=True, timeout=60)
        assert reload.returncode == 0, reload.stderr
        assert "reload requested from the worker too" in reload.stdout
        for role in ("web", "worker"):
            wait_for(lambda role=role: "configuration reloaded" in logs[role].read_text())
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            process.wait(30)
        upstream.stop()
    assert all(process.returncode == 0 for process in processes.values()), (
        logs["web"].read_text()[-2000:], logs["worker"].read_text()[-2000:])


def test_reload_names_a_worker_it_cannot_see(tmp_path: Path) -> None:
    """A pid file whose pid is not a maxcore worker here (another container): not signalled."""
    config = write_config(tmp_path, "http://127.0.0.1:9")
    data = tmp_path / "data"
    data.mkdir()
    (data / "maxcore.pid").write_text(f"{os.getpid()}\n")  # stands for the web process
    (data / "maxcore-worker.pid").write_text(f"{os.getpid()}\n")  # pytest: not a worker
    previous = signal.signal(signal.SIGHUP, lambda *_: None)
    try:
        reload = subprocess.run([*MAXCORE, "reload", "--config", str(config)],
                                env={**os.environ, "MAXCORE_LOAD_PLUGINS": "greenapi"},
                                capture_output=True, text=True, timeout=60)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert reload.returncode == 0, reload.stderr
    assert "is not a maxcore worker here" in reload.stdout
    assert "docker compose kill -s HUP maxcore-worker" in reload.stdout
