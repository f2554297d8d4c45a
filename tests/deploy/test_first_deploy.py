"""deploy.sh's first deploy against the EspoCRM emulator: the API user is created through
EspoCRM's own REST API with the admin account, its key written to .env.production, and
a second run reuses it. Compose is bin/fake-compose: only the ``exec espocrm sh -c`` of
the admin calls runs (here, against the emulator), every other stack command is logged.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from maxcore.testing.espocrm import EspoEmulator
from maxcore.testing.espocrm.admin import Admin

from .conftest import DEPLOY, require_binary

FAKE_COMPOSE = Path(__file__).parent / "bin" / "fake-compose"
ADMIN, PASSWORD = "admin", 'pa"ss\\word with spaces'


@pytest.fixture
def espo() -> Iterator[EspoEmulator]:
    require_binary("curl")
    with EspoEmulator(admin=Admin(ADMIN, PASSWORD)) as emulator:
        yield emulator


def first_deploy(tmp_path: Path, espo: EspoEmulator,
                 password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "env.production"
    if not env_file.exists():
        env_file.write_text((DEPLOY / ".env.production.example").read_text().replace("CHANGE_ME", "x1"))
        env_file.chmod(0o600)
        (tmp_path / "maxcore.env").write_text((DEPLOY / "maxcore.env.example").read_text()
                                              .replace("CHANGE_ME", "x1"))
        (tmp_path / "ssl").mkdir()
        (tmp_path / "ssl" / "origin.pem").write_text("cert")
        (tmp_path / "ssl" / "origin.key").write_text("key")
    env = {**os.environ, "COMPOSE": str(FAKE_COMPOSE), "FAKE_COMPOSE_EXEC": "match:espocrm sh -c",
           "FAKE_COMPOSE_LOG": str(tmp_path / "calls.log"), "ENV_FILE": str(env_file),
           "MAXCORE_ENV_FILE": str(tmp_path / "maxcore.env"), "SSL_DIR": str(tmp_path / "ssl"),
           "CURL": "true", "PSQL": "true", "DOCKER": "true", "ESPOCRM_LOCAL_URL": espo.url,
           # What the espocrm container's environment holds (docker-compose.yml).
           "ESPOCRM_ADMIN_USERNAME": ADMIN, "ESPOCRM_ADMIN_PASSWORD": password}
    return subprocess.run(["bash", str(DEPLOY / "scripts" / "deploy.sh"), "--skip-backup"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def env_value(tmp_path: Path, name: str) -> str:
    lines = (tmp_path / "env.production").read_text().splitlines()
    return [line for line in lines if line.startswith(f"{name}=")][-1].split("=", 1)[1]


def test_first_deploy_creates_the_api_user_and_stores_its_key(tmp_path: Path, espo: EspoEmulator) -> None:
    result = first_deploy(tmp_path, espo)
    assert result.returncode == 0, result.stderr
    key = env_value(tmp_path, "ESPOCRM_API_KEY")
    assert len(key) == 32 and "ESPOCRM_API_KEY written to" in result.stderr
    assert oct((tmp_path / "env.production").stat().st_mode & 0o777) == "0o600"
    assert key not in result.stderr + result.stdout  # the key is never printed
    me = httpx.get(f"{espo.url}/api/v1/App/user", headers={"X-Api-Key": key}).json()
    assert me["user"]["userName"] == "maxcore-api" and me["user"]["type"] == "api"
    assert me["acl"]["table"]["Lead"] == {"create": "yes", "read": "all", "edit": "all", "delete": "no"}
    assert me["acl"]["table"]["DiagnosticIA"]["create"] == "yes"
    # The key was created before maxcore's config check, which needs it.
    calls = (tmp_path / "calls.log").read_text().splitlines()
    admin_calls = [i for i, c in enumerate(calls) if c.startswith("exec -T espocrm sh -c")]
    check = next(i for i, c in enumerate(calls) if "maxcore check" in c)
    assert admin_calls and max(admin_calls) < check


def test_a_rerun_with_the_key_lost_reuses_the_user(tmp_path: Path, espo: EspoEmulator) -> None:
    assert first_deploy(tmp_path, espo).returncode == 0
    key = env_value(tmp_path, "ESPOCRM_API_KEY")
    env_file = tmp_path / "env.production"
    env_file.write_text(env_file.read_text().replace(f"ESPOCRM_API_KEY={key}", "ESPOCRM_API_KEY="))
    result = first_deploy(tmp_path, espo)
    assert result.returncode == 0, result.stderr
    assert env_value(tmp_path, "ESPOCRM_API_KEY") == key
    assert len(espo.directory.users) == 1 and len(espo.directory.roles) == 1
    # With the key present, EspoCRM is not asked again.
    (tmp_path / "calls.log").unlink()
    assert first_deploy(tmp_path, espo).returncode == 0
    assert not any("espocrm sh -c" in c for c in (tmp_path / "calls.log").read_text().splitlines())


def test_a_wrong_admin_password_stops_with_a_clear_message(tmp_path: Path, espo: EspoEmulator) -> None:
    result = first_deploy(tmp_path, espo, password="not-the-install-password")
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr and "ESPOCRM_ADMIN_PASSWORD" in result.stderr
    assert env_value(tmp_path, "ESPOCRM_API_KEY") == ""
    assert "not-the-install-password" not in result.stderr
