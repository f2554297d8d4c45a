"""The web chat page in a real Chromium, against a real `maxcore serve` process."""

from __future__ import annotations

import json
import os
import re
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
    demo = config / "tenants" / "demo.yaml"
    demo.write_text(demo.read_text().replace("name: Démo MAX", f"name: {json.dumps(HOSTILE_NAME)}"))
    (config / "tenants" / "demo-en.yaml").write_text(
        demo.read_text().replace("tenant: demo", "tenant: demo-en").replace("language: fr", "language: en")
    )
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


# A tenant name that would end the page's script if it were pasted into it.
HOSTILE_NAME = 'Démo </script><script>document.title="pwned"</script>'
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LEAD = "Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, +33 6 12 34 56 78"


def _watch(page, problems: list[str]) -> None:
    """Collect what a broken page would show: script errors and CSP refusals."""
    def console(message) -> None:
        if message.location.get("url", "").endswith("/favicon.ico"):
            return
        if message.type == "error" or "Content Security Policy" in message.text:
            problems.append(f"console: {message.text}")

    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", console)


def test_type_a_lead_in_the_browser_and_find_it_in_the_crm(server, tmp_path):
    chromium = _need_chromium()
    from playwright.sync_api import sync_playwright

    url, config, env = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            problems: list[str] = []
            _watch(page, problems)
            page.goto(f"{url}/chat")
            page.click("a[href='/chat/demo']")
            page.wait_for_url(f"{url}/chat/demo")
            response = page.reload()
            # The page works under its own strict policy (no inline script or style)...
            assert "script-src 'self'" in response.headers["content-security-policy"]
            assert response.headers["x-frame-options"] == "DENY"
            # ...and the tenant's name is shown, not run.
            assert page.title().endswith(HOSTILE_NAME)
            assert page.inner_text("#title").endswith(HOSTILE_NAME)
            page.fill("#text", LEAD)
            page.keyboard.press("Enter")
            reply = page.locator(".msg.assistant").first
            reply.wait_for(timeout=15_000)
            assert "✅ Lead créé : Jean Dupont" in reply.inner_text()
            assert "Jean Dupont, BTP" in page.locator(".msg.user").first.inner_text()
            page.screenshot(path=str(tmp_path / "webchat.png"))
            # The conversation survives a reload (same signed session, replies kept).
            page.reload()
            page.locator(".msg.assistant").first.wait_for(timeout=15_000)
            assert problems == []
        finally:
            browser.close()
    leads = subprocess.run(
        [*MAXCORE, "leads", "--config", str(config), "--tenant", "demo", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )
    (lead,) = json.loads(leads.stdout)
    assert lead["phone"] == "+33612345678" and lead["industry"] == "BTP"  # free text in sqlite
    assert lead["email"] == "jean@dupont.fr" and lead["status"] == "New"


def test_a_message_typed_while_the_server_is_unreachable_waits_for_a_retry(server):
    chromium = _need_chromium()
    from playwright.sync_api import sync_playwright

    url, _config, _env = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            # A French tenant shows 24-hour times whatever the visitor's locale.
            page = browser.new_page(locale="en-US")
            page.goto(f"{url}/chat/demo")
            page.locator("#state").filter(has_text="en ligne").wait_for(timeout=15_000)
            page.route("**/webhooks/webchat", lambda route: route.abort("internetdisconnected"))
            page.fill("#text", LEAD)
            page.keyboard.press("Enter")
            unsent = page.locator(".msg.user.unsent")
            unsent.wait_for(timeout=10_000)
            assert "Non envoyé" in unsent.inner_text() and "Jean Dupont, BTP" in unsent.inner_text()
            assert page.locator(".msg.assistant").count() == 0
            page.unroute("**/webhooks/webchat")
            unsent.locator("button.retry").click()
            reply = page.locator(".msg.assistant").first
            reply.wait_for(timeout=15_000)
            assert "✅ Lead créé : Jean Dupont" in reply.inner_text()
            assert page.locator(".msg.unsent").count() == 0
            assert page.locator(".msg.user").count() == 1  # read back once, not twice
            assert re.fullmatch(r"\d{2}:\d{2}", reply.locator("time").inner_text())
            page.close()
            # An English tenant follows the visitor's English: 12-hour in the US...
            page = browser.new_page(locale="en-US")
            page.goto(f"{url}/chat/demo-en")
            page.fill("#text", "hello")
            page.keyboard.press("Enter")
            time_text = page.locator(".msg.assistant time").first
            time_text.wait_for(timeout=15_000)
            assert re.fullmatch(r"\d{2}:\d{2}\s?[AP]M", time_text.inner_text())
            page.close()
            # ...24-hour in Britain.
            page = browser.new_page(locale="en-GB")
            page.goto(f"{url}/chat/demo-en")
            page.fill("#text", "hello")
            page.keyboard.press("Enter")
            time_text = page.locator(".msg.assistant time").first
            time_text.wait_for(timeout=15_000)
            assert re.fullmatch(r"\d{2}:\d{2}", time_text.inner_text())
        finally:
            browser.close()
