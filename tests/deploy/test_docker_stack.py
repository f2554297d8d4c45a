"""The production stack on a real Docker engine, driven by the shipped scripts.

A private dockerd (docker_engine.py), stand-in base images under the pinned names, the
EspoCRM contract emulator in place of EspoCRM (an override file), the Green-API
emulator on the host's bridge address. ``deploy.sh`` runs for real: the first deploy
creates the EspoCRM API user itself; a webhook goes through nginx TLS → maxcore →
EspoCRM → a WhatsApp reply; an update recreates maxcore while webhooks keep flowing
(503 + Retry-After at worst, never 502; health back within 10 s); ``backup.sh`` under
load; ``restore.sh``; ``deploy.sh --rollback``; then the same stack switched to the
two-process layout (docker-compose.split.yml): the web process accepts, the worker
answers. The tests run in file order on one stack.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import yaml

from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.server import ServerThread

from .conftest import DEPLOY, REPO, require_binary
from .docker_engine import BRIDGE_IP, CACHE, STANDINS, Engine, ensure_standin_images, start_engine
from .nginx_stack import make_certificate

pytestmark = pytest.mark.slow

API, CRM = "api.test", "crm.test"
INSTANCE, API_TOKEN, WEBHOOK_TOKEN = 7105000001, "test-api-token", "test-webhook-token"
HEALTH_TOKEN = "test-health-token"
PROJECT = "maxcore-test"
# Every secret of the stack and the services allowed to hold it.
SECRET_OWNERS = {
    "MARIADB_ROOT_PASSWORD": {"mariadb"}, "MARIADB_PASSWORD": {"mariadb"},
    "ESPOCRM_DATABASE_PASSWORD": {"espocrm"}, "ESPOCRM_ADMIN_PASSWORD": {"espocrm"},
    "ESPOCRM_CONFIG_SMTP_PASSWORD": {"espocrm"}, "ESPOCRM_API_KEY": {"maxcore"},
    "ACME_GREENAPI_API_TOKEN": {"maxcore"}, "ACME_GREENAPI_WEBHOOK_TOKEN": {"maxcore"},
    "OPENAI_API_KEY": {"maxcore"}, "SUPABASE_SERVICE_KEY": {"maxcore"},
    "MAXCORE_HEALTH_TOKEN": {"maxcore"}, "RESTIC_PASSWORD": set(),
}


class WheelServer:
    """The maxcore image's Python packages, served to its build on the bridge address."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer((BRIDGE_IP, 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{BRIDGE_IP}:{self.httpd.server_address[1]}/"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def wheelhouse() -> Path:
    """The constraints' wheels (and the build backend), downloaded once per lock file."""
    constraints = DEPLOY / "maxcore" / "constraints.txt"
    import hashlib

    target = CACHE / (
        "wheels-" + hashlib.sha256(constraints.read_bytes()).hexdigest()[:16])
    if not (target / ".complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "pip", "download", "--quiet",
                        "--dest", str(target), "-r", str(constraints)], check=True, timeout=600,
                       capture_output=True)
        (target / ".complete").write_text("ok")
    return target


@attrs.define
class Stack:
    engine: Engine
    root: Path
    greenapi: GreenApiEmulator
    wheels: WheelServer
    release: int = 1
    split: bool = False  # the two-process layout (docker-compose.split.yml)

    @property
    def env_file(self) -> Path:
        return self.root / "env.production"

    def compose_cmd(self) -> str:
        split = f"-f {DEPLOY / 'docker-compose.split.yml'} " if self.split else ""
        return (f"docker compose -p {PROJECT} --project-directory {DEPLOY} "
                f"-f {DEPLOY / 'docker-compose.yml'} {split}-f {self.root / 'override.yml'} "
                f"--env-file {self.env_file}")

    def use_split_layout(self) -> None:
        """The switch as an operator sets it (what the scripts read), and its files here."""
        with self.env_file.open("a") as env_file:
            env_file.write("\nCOMPOSE_FILE=docker-compose.yml:docker-compose.split.yml\n")
        self.split = True

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.strip()

    def log_records(self, service: str) -> list[dict[str, Any]]:
        """The service's JSON log records (maxcore logs one JSON object per line)."""
        records = []
        for line in self.compose("logs", "--no-color", "--no-log-prefix", service).stdout.splitlines():
            try:
                records.append(dict(json.loads(line)))
            except ValueError:
                continue  # the text lines written before the configuration was read
        return records

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.engine.env, "COMPOSE": self.compose_cmd(), "ENV_FILE": str(self.env_file),
                "MAXCORE_ENV_FILE": str(self.root / "maxcore.env"),
                "MAXCORE_CONFIG_DIR": str(self.root / "config"),
                "SSL_DIR": str(self.root / "ssl"), "BACKUP_STAGING": str(self.root),
                "TEST_RELEASE": str(self.release), "PIP_WHEELS_URL": self.wheels.url, **extra}

    def script(self, name: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """A shipped script; on failure its stderr ends with the services' recent logs."""
        result = subprocess.run(["bash", str(DEPLOY / "scripts" / name), *args], env=self.env(),
                                capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            logs = self.compose("logs", "--no-color", "--tail", "40", check=False)
            result.stderr += f"\n--- compose logs ---\n{logs.stdout}{logs.stderr}"
        return result

    def compose(self, *args: str, check: bool = True,
                timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.compose_cmd().split(), *args], env=self.env(), capture_output=True,
                                text=True, timeout=timeout, check=False)
        if check:
            assert result.returncode == 0, f"compose {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def https_port(self) -> int:
        return int(self.compose("port", "nginx", "443").stdout.strip().rsplit(":", 1)[1])

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"https://127.0.0.1:{self.https_port()}", verify=False, timeout=30)

    def env_value(self, name: str) -> str:
        lines = [line for line in self.env_file.read_text().splitlines() if line.startswith(f"{name}=")]
        return lines[-1].split("=", 1)[1] if lines else ""


def write_files(root: Path, greenapi_url: str) -> None:
    root.chmod(0o755)
    example = (DEPLOY / ".env.production.example").read_text()
    env = example.replace("CHANGE_ME", "t1").replace("api.example.com", API).replace("crm.example.com", CRM)
    env = env.replace("RESTIC_REPOSITORY=/var/backups/maxcore-restic", f"RESTIC_REPOSITORY={root / 'restic'}")
    env = env.replace("RESTIC_OFFSITE_REPOSITORY=", f"RESTIC_OFFSITE_REPOSITORY={root / 'restic-offsite'}")
    env = env.replace("RESTIC_OFFSITE_PASSWORD=", "RESTIC_OFFSITE_PASSWORD=offsite-t1")
    env = "\n".join(line for line in env.splitlines() if not line.startswith("SUPABASE_DB_URL="))
    (root / "env.production").write_text(env + "\nSMTP_PASSWORD=smtp-t1\n")
    (root / "maxcore.env").write_text(
        f"ACME_GREENAPI_INSTANCE_ID={INSTANCE}\nACME_GREENAPI_API_TOKEN={API_TOKEN}\n"
        f"ACME_GREENAPI_WEBHOOK_TOKEN={WEBHOOK_TOKEN}\nMAXCORE_HEALTH_TOKEN={HEALTH_TOKEN}\n"
        "OPENAI_API_KEY=sk-unused\nSUPABASE_SERVICE_KEY=unused\n")
    config = root / "config"
    (config / "tenants").mkdir(parents=True)
    shutil.copy(DEPLOY / "config" / "maxcore.yaml", config / "maxcore.yaml")
    tenant = yaml.safe_load((DEPLOY / "config" / "tenants" / "acme.yaml").read_text())
    tenant["channel"]["api_url"] = greenapi_url
    tenant["memory"] = {"type": "sqlite"}
    tenant["llm"] = {"type": "offline"}
    (config / "tenants" / "acme.yaml").write_text(yaml.safe_dump(tenant, allow_unicode=True))
    for path in config.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    config.chmod(0o755)
    (root / "ssl").mkdir()
    make_certificate(root / "ssl", [API, CRM])
    (root / "ssl").chmod(0o755)
    (root / "ssl" / "origin.key").chmod(0o644)  # nginx's stand-in reads it as root anyway
    override = {
        "services": {
            "maxcore": {"build": {"args": {"PIP_FIND_LINKS": "${PIP_WHEELS_URL}", "PIP_NO_INDEX": "1",
                                           "PIP_TRUSTED_HOST": BRIDGE_IP},
                                  "labels": {"maxcore.test.release": "${TEST_RELEASE}"}}},
            "espocrm": {"build": "!reset", "image": "maxcore-test-espocrm:local", "pull_policy": "never"},
            "espocrm-daemon": {"build": "!reset", "image": "maxcore-test-espocrm:local",
                               "pull_policy": "never"},
            "nginx": {"ports": "!override"},
        },
    }
    text = yaml.safe_dump(override, sort_keys=False)
    text = text.replace("build: '!reset'", "build: !reset null")
    text = text.replace("ports: '!override'", "ports: !override\n    - 127.0.0.1::80\n    - 127.0.0.1::443")
    (root / "override.yml").write_text(text)


def build_emulator_image(stack: Stack) -> None:
    """maxcore-app first (the emulator image is built on it), then the EspoCRM stand-in."""
    stack.compose("build", "maxcore", timeout=900)
    context = stack.root / "espocrm-emulator"
    shutil.copytree(STANDINS / "espocrm-emulator", context)
    shutil.copytree(DEPLOY / "espocrm" / "custom", context / "custom")
    shutil.copy(DEPLOY / "espocrm" / "maxcore-espocrm-sync.sh", context / "maxcore-espocrm-sync.sh")
    stack.engine.docker("build", "-t", "maxcore-test-espocrm:local", str(context))


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_binary("restic")
    engine = start_engine()
    root = Path(tempfile.mkdtemp(prefix="maxcore-stack-"))
    greenapi = GreenApiEmulator()
    greenapi.add_instance(INSTANCE, api_token=API_TOKEN, webhook_token=WEBHOOK_TOKEN)
    green_server = ServerThread(greenapi.app, host=BRIDGE_IP).start()
    wheels = WheelServer(wheelhouse())
    s = Stack(engine, root, greenapi, wheels)
    try:
        ensure_standin_images(engine)
        write_files(root, green_server.url)
        s.compose("down", "-v", "--remove-orphans", "-t", "0")  # a previous run's leftovers
        build_emulator_image(s)
        yield s
    finally:
        try:
            s.compose("down", "-v", "--remove-orphans", "-t", "5", check=False, timeout=300)
            # Untagged images of earlier builds: the cache stays the size of one stack.
            engine.docker("image", "prune", "-f", check=False)
        finally:
            wheels.stop()
            green_server.stop()
            engine.stop()
            shutil.rmtree(root, ignore_errors=True)


def webhook(chat: str, text: str, message_id: str | None = None) -> dict[str, Any]:
    body = json.loads((REPO / "tests" / "fixtures" / "greenapi" / "incoming_text.json").read_text())
    body["idMessage"] = message_id or uuid.uuid4().hex[:20].upper()
    body["senderData"].update(chatId=chat, sender=chat)
    body["messageData"]["textMessageData"]["textMessage"] = text
    return dict(body)


async def post_webhook(client: httpx.AsyncClient, body: dict[str, Any]) -> int:
    response = await client.post("/webhooks/greenapi", json=body, headers={
        "Host": API, "Authorization": f"Bearer {WEBHOOK_TOKEN}"}, extensions={"sni_hostname": API})
    return response.status_code


@attrs.define
class Load:
    """Green-API's side while something happens: webhooks at a steady pace, each one
    redelivered until it gets a 200 (as Green-API does), every status recorded."""

    stack: Stack
    statuses: list[int] = attrs.field(factory=list)
    chats: list[str] = attrs.field(factory=list)
    stop: asyncio.Event = attrs.field(factory=asyncio.Event)

    async def run(self) -> None:
        async with self.stack.client() as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                chat = f"3361{uuid.uuid4().int % 10**7:07d}@c.us"
                body = webhook(chat, "Bonjour")
                self.chats.append(chat)
                while True:
                    try:
                        status = await post_webhook(client, body)
                    except httpx.TransportError:
                        status = 0
                    self.statuses.append(status)
                    if status == 200:
                        break
                    await asyncio.sleep(0.5)
                await asyncio.sleep(0.2)


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.2)


def replied(stack: Stack, chats: list[str]) -> bool:
    return all(stack.greenapi.sent_to(chat) for chat in chats)


def test_first_deploy_creates_the_api_user_and_ends_green(stack: Stack) -> None:
    assert stack.env_value("ESPOCRM_API_KEY") == ""
    result = stack.script("deploy.sh", "--skip-pull", "--skip-backup")
    assert result.returncode == 0, result.stderr
    assert "creating maxcore's EspoCRM API user" in result.stderr and "deployed:" in result.stderr
    key = stack.env_value("ESPOCRM_API_KEY")
    assert len(key) == 32
    # The key works through nginx on the CRM host, and its Role grants Lead.
    with httpx.Client(verify=False) as client:
        response = client.get(f"https://127.0.0.1:{stack.https_port()}/api/v1/App/user",
                              headers={"Host": CRM, "X-Api-Key": key}, extensions={"sni_hostname": CRM})
    assert response.status_code == 200, response.text
    assert response.json()["acl"]["table"]["Lead"]["create"] == "yes"


def test_each_container_holds_only_the_secrets_it_uses(stack: Stack) -> None:
    for service in ("maxcore", "espocrm", "espocrm-daemon", "mariadb", "nginx"):
        container = stack.compose("ps", "-q", service).stdout.split()[0]
        env = json.loads(stack.engine.docker("inspect", "-f", "{{json .Config.Env}}", container).stdout)
        names = {item.split("=", 1)[0] for item in env}
        held = {name for name in names if name in SECRET_OWNERS}
        assert all(service in SECRET_OWNERS[name] for name in held), (service, sorted(held))
    mariadb = stack.compose("ps", "-q", "mariadb").stdout.split()[0]
    env = stack.engine.docker("inspect", "-f", "{{json .Config.Env}}", mariadb).stdout
    assert "ESPOCRM_API_KEY" not in env and "ACME_GREENAPI" not in env


def test_locally_built_images_are_never_pulled(stack: Stack) -> None:
    """`compose pull` (what deploy.sh runs without --skip-pull) skips maxcore's image
    (pull_policy: build; the EspoCRM stand-in here has pull_policy: never). Only the
    registry images are tried, and fail: no registry is reachable from this machine."""
    result = stack.compose("--dry-run", "pull", check=False)
    lines = (result.stdout + result.stderr).splitlines()
    for service in ("maxcore", "espocrm", "espocrm-daemon"):
        assert any(line.split()[-2:] == [service, "Skipped"] for line in lines), lines
    pulled = {line.split()[-2] for line in lines if line.rstrip().endswith("Pulling")}
    assert pulled <= {"nginx", "mariadb"}, lines


async def test_a_webhook_goes_through_nginx_maxcore_and_espocrm_to_a_reply(stack: Stack) -> None:
    chat = "33612345678@c.us"
    text = "Bonjour, je suis Marie Curie de Radium SARL, secteur santé, 06 12 34 56 78, marie@radium.fr"
    async with stack.client() as client:
        assert await post_webhook(client, webhook(chat, text)) == 200
    await wait_until(lambda: replied(stack, [chat]), 60, "the WhatsApp reply")
    key = stack.env_value("ESPOCRM_API_KEY")
    async with stack.client() as client:
        leads = await client.get("/api/v1/Lead", headers={"Host": CRM, "X-Api-Key": key},
                                 extensions={"sni_hostname": CRM})
    assert leads.status_code == 200
    found = [lead for lead in leads.json()["list"] if lead.get("emailAddress") == "marie@radium.fr"]
    assert found and found[0]["tenantId"] == "acme"


async def test_an_update_recreates_maxcore_while_webhooks_keep_flowing(stack: Stack) -> None:
    before = stack.compose("ps", "-q", "maxcore").stdout.strip()
    load = Load(stack)
    sender = asyncio.create_task(load.run())
    await wait_until(lambda: len(load.statuses) >= 3, 30, "webhooks before the update")
    stack.release = 2  # a new maxcore image (its label changes)
    result = await asyncio.to_thread(stack.script, "deploy.sh", "--skip-pull", "--skip-backup")
    recreated = time.monotonic()
    assert result.returncode == 0, result.stderr
    assert stack.compose("ps", "-q", "maxcore").stdout.strip() != before
    # nginx reaches the new container within 10 s of its recreation, without a restart.
    async with stack.client() as client:
        while True:
            response = await client.get("/api/health", headers={"Host": API},
                                        extensions={"sni_hostname": API})
            if response.status_code == 200:
                break
            assert time.monotonic() - recreated < 10, response.status_code
            await asyncio.sleep(0.2)
    await asyncio.sleep(2)
    load.stop.set()
    await sender
    assert 502 not in load.statuses and set(load.statuses) <= {200, 503}, sorted(set(load.statuses))
    await wait_until(lambda: replied(stack, load.chats), 90, "a reply to every webhook of the update")


async def test_backup_under_load_then_restore(stack: Stack) -> None:
    load = Load(stack)
    sender = asyncio.create_task(load.run())
    await wait_until(lambda: len(load.statuses) >= 3, 30, "webhooks before the backup")
    rows_at_start = inbox_rows(stack)
    result = await asyncio.to_thread(stack.script, "backup.sh")
    load.stop.set()
    await sender
    assert result.returncode == 0, result.stderr
    snapshot = result.stdout.strip().splitlines()[-1]
    await wait_until(lambda: replied(stack, load.chats), 60, "replies during the backup")
    rows_at_end = inbox_rows(stack)

    # Something happens after the backup; the restore takes it back.
    late_chat = "33699999999@c.us"
    async with stack.client() as client:
        assert await post_webhook(client, webhook(late_chat, "après la sauvegarde")) == 200
    await wait_until(lambda: inbox_rows(stack, late_chat) == 1, 30, "the post-backup message")
    result = await asyncio.to_thread(stack.script, "restore.sh", "--force", snapshot)
    assert result.returncode == 0, result.stderr
    assert "stopping nginx, maxcore, espocrm-daemon and espocrm" in result.stderr
    # The inbox as the backup saw it: consistent (SQLite online backup), taken during the run.
    assert inbox_rows(stack, late_chat) == 0
    assert rows_at_start <= inbox_rows(stack) <= rows_at_end
    # The stack is whole again: the API key (users live in the restored volume) works.
    async with stack.client() as client:
        chat = "33611111111@c.us"
        assert await post_webhook(client, webhook(chat, "Bonjour après la restauration")) == 200
    await wait_until(lambda: replied(stack, [chat]), 60, "a reply after the restore")


COUNT_INBOX = ("import sys, sqlite3; db = sqlite3.connect('/data/inbox.sqlite3'); "
               "chat = ['%' + a.split('@')[0] + '%' for a in sys.argv[1:]]; "
               "print(db.execute('select count(*) from inbox' + (' where chat_id like ?' if chat else ''), "
               "chat).fetchone()[0])")


def inbox_rows(stack: Stack, chat: str | None = None) -> int:
    """Rows of maxcore's durable inbox (data_dir /data, inbox.path default), of one chat."""
    args = [chat] if chat else []
    return int(stack.compose("exec", "-T", "maxcore", "python", "-c", COUNT_INBOX, *args).stdout.strip())


def test_rollback_runs_the_previous_image_again(stack: Stack) -> None:
    current = stack.compose("images", "-q", "maxcore").stdout.split()[0]
    result = stack.script("deploy.sh", "--rollback")
    assert result.returncode == 0, result.stderr
    after = stack.compose("images", "-q", "maxcore").stdout.split()[0]
    assert after != current
    assert stack.engine.image_label("maxcore-app:local", "maxcore.test.release") == "1"


async def test_split_layout_web_accepts_and_the_worker_answers(stack: Stack) -> None:
    """The same stack switched to two processes: its images are built, so only maxcore is
    recreated (as `--role web`) and maxcore-worker added; the worker does the processing."""
    others = {service: stack.container(service) for service in ("espocrm", "espocrm-daemon", "mariadb",
                                                                   "nginx")}
    web_before = stack.container("maxcore")
    stack.use_split_layout()
    stack.compose("up", "-d", "--no-build", "--remove-orphans", "--wait", "--wait-timeout", "180",
                  timeout=300)
    assert stack.container("maxcore") != web_before
    assert {service: stack.container(service) for service in others} == others
    web, worker = stack.container("maxcore"), stack.container("maxcore-worker")
    inspect = stack.engine.docker("inspect", "-f", "{{json .Config.Cmd}} {{.State.Health.Status}}", web,
                                  worker).stdout.splitlines()
    assert inspect == [
        '["maxcore","serve","--config","/config","--log-format","json","--role","web"] healthy',
        '["maxcore","serve","--config","/config","--log-format","json","--role","worker"] healthy']

    chat, message_id = "33677777777@c.us", "SPLIT" + uuid.uuid4().hex[:15].upper()
    async with stack.client() as client:
        assert await post_webhook(client, webhook(chat, "Bonjour, deux processus", message_id)) == 200
    await wait_until(lambda: replied(stack, [chat]), 60, "the reply from the worker")

    def records(service: str) -> list[str]:
        return [str(r.get("message")) for r in stack.log_records(service)
                if message_id in str(r.get("message_id"))]

    # "reply sent" is logged once Green-API has answered: wait for the line, not the send.
    await wait_until(lambda: any("[PIPELINE] reply sent" in m for m in records("maxcore-worker")), 30,
                     "the worker's 'reply sent' line")
    web_lines = records("maxcore")
    assert any("[PIPELINE] message accepted" in m for m in web_lines), web_lines
    assert not any("[PIPELINE] reply sent" in m for m in web_lines), web_lines
    health = stack.engine.docker("inspect", "-f", "{{.State.Health.Status}}", worker).stdout.strip()
    assert health == "healthy"
