"""The web chat page in a real Chromium, against a real `maxcore serve` process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from maxcore.testing.server import served_port

pytestmark = pytest.mark.slow  # real processes: seconds each

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MAXCORE = [sys.executable, "-m", "maxcore"]


def _need_chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required under CI (scripts/apt-packages.txt installs it)")
        pytest.skip("chromium is not installed")
    return CHROMIUM


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config, ignore=shutil.ignore_patterns("examples"))
    env = {**os.environ, "MAXCORE_DATA_DIR": str(tmp_path / "data")}
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    proc = subprocess.Popen([*MAXCORE, "serve", "--config", str(config), "--port", "0"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = ""
    try:
        deadline = time.monotonic() + 20
        while True:
            port = served_port(tmp_path / "data")
            url = f"http://127.0.0.1:{port}"
            try:
                if port and httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "serve.log").read_text())
            time.sleep(0.1)
        yield url, config, env
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_type_a_lead_in_the_browser_and_find_it_in_the_crm(server, tmp_path):
    chromium = _need_chromium()
    from playwright.sync_api import sync_playwright

    url, config, env = server
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        try:
            page = browser.new_page()
            page.goto(f"{url}/chat")
            assert page.url.endswith("/chat/demo")
            page.fill("#text", "Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, +33 6 12 34 56 78")
            page.keyboard.press("Enter")
            reply = page.locator(".msg.assistant").first
            reply.wait_for(timeout=15_000)
            assert "✅ Lead créé : Jean Dupont" in reply.inner_text()
            assert "Jean Dupont, BTP" in page.locator(".msg.user").first.inner_text()
            page.screenshot(path=str(tmp_path / "webchat.png"))
            # The conversation survives a reload (same signed session, replies kept).
            page.reload()
            page.locator(".msg.assistant").first.wait_for(timeout=15_000)
        finally:
            browser.close()
    leads = subprocess.run(
        [*MAXCORE, "leads", "--config", str(config), "--tenant", "demo", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )
    (lead,) = json.loads(leads.stdout)
    assert lead["phone"] == "+33612345678" and lead["industry"] == "Construction"
    assert lead["email"] == "jean@dupont.fr" and lead["status"] == "New"
