"""What can be proved about the stack without a Docker engine: the Compose file against
the Compose specification schema and the deploy invariants, the Dockerfiles, the
env example, shellcheck, deploy.sh's order of operations, and the production config."""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from maxcore.config import load_config
from maxcore.plugins import load_plugins

from .conftest import DEPLOY, REPO, require_binary

COMPOSE_FILE = DEPLOY / "docker-compose.yml"
FAKE_COMPOSE = Path(__file__).parent / "bin" / "fake-compose"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|API_KEY", re.I)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_schema() -> dict[str, Any]:
    # The Compose specification schema as vendored by check-jsonschema (a test dependency).
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_validation_does_catch_mistakes(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    broken = json.loads(json.dumps(compose))
    broken["services"]["nginx"]["restart"] = ["always"]
    broken["services"]["maxcore"]["healthcheck"]["intervall"] = "5s"
    errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))
    assert len(errors) >= 2


def test_services_and_only_nginx_publishes_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"maxcore", "espocrm", "espocrm-daemon", "mariadb", "nginx"}
    publishing = {name for name, svc in services.items() if svc.get("ports")}
    assert publishing == {"nginx"}
    assert services["nginx"]["ports"] == ["80:80", "443:443"]
    assert services["maxcore"]["expose"] == ["3005"]
    assert services["espocrm"]["expose"] == ["80"]


def test_every_service_is_healthchecked_restarted_log_rotated(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        assert svc["healthcheck"]["test"], name
        assert svc["restart"] == "unless-stopped", name
        assert svc["logging"]["options"]["max-size"] and svc["logging"]["options"]["max-file"], name
        assert svc.get("networks"), name
    assert compose["networks"]["backend"]["internal"] is True
    assert compose["services"]["mariadb"]["networks"] == ["backend"]
    assert compose["services"]["mariadb"]["healthcheck"]["test"] == [
        "CMD", "healthcheck.sh", "--connect", "--innodb_initialized"]
    assert "localhost/api/v1/Settings" in " ".join(compose["services"]["espocrm"]["healthcheck"]["test"])
    assert "/api/health" in " ".join(compose["services"]["maxcore"]["healthcheck"]["test"])


def test_dependencies_wait_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, deps in (("espocrm", ["mariadb"]), ("espocrm-daemon", ["espocrm"]),
                       ("maxcore", ["espocrm"]), ("nginx", ["maxcore", "espocrm"])):
        for dep in deps:
            assert services[name]["depends_on"][dep]["condition"] == "service_healthy", (name, dep)


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        image = svc["image"]
        if "build" in svc:
            continue  # a local tag; its Dockerfile's FROM is pinned (below)
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image}"
    assert re.fullmatch(r"mariadb:(10\.11|11\.4)(\.\d+)?", compose["services"]["mariadb"]["image"])
    espo_dockerfile = (DEPLOY / "espocrm" / "Dockerfile").read_text()
    assert re.search(r"^FROM espocrm/espocrm:8\.3\.6$", espo_dockerfile, re.M)
    assert compose["services"]["espocrm-daemon"]["image"] == compose["services"]["espocrm"]["image"]
    assert compose["services"]["espocrm-daemon"]["entrypoint"] == "docker-daemon.sh"


def test_no_secret_values_in_compose_or_example(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        assert svc.get("env_file") in (".env.production", None), name
        for key, value in (svc.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]*)?\}", str(value)), f"{name}.{key} holds a value"
    assert "env_file" not in compose["services"]["nginx"]
    example = (DEPLOY / ".env.production.example").read_text()
    for line in example.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            if SECRET_NAME.search(key):
                assert "CHANGE_ME" in value, f"{key} in .env.production.example is not a placeholder"
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/.env.production"], cwd=REPO, check=False)
    assert ignored.returncode == 0, ".env.production is not git-ignored"


def test_maxcore_runs_as_non_root_with_ca_certificates(compose: dict[str, Any]) -> None:
    svc = compose["services"]["maxcore"]
    assert svc["user"].split(":")[0] not in ("0", "root")
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
    assert "./config:/config:ro" in svc["volumes"]
    assert any(v.startswith("maxcore-data:") for v in svc["volumes"])
    dockerfile = (DEPLOY / "maxcore" / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert "ca-certificates" in dockerfile
    assert re.search(r"^HEALTHCHECK .*\n.*api/health", dockerfile, re.M)
    assert dockerfile.count("FROM ") >= 2  # multi-stage
    assert "EXPOSE 3005" in dockerfile


def test_espocrm_custom_folder_is_never_mounted_read_only(compose: dict[str, Any]) -> None:
    for name in ("espocrm", "espocrm-daemon"):
        for volume in compose["services"][name]["volumes"]:
            parts = volume.split(":")
            assert not (len(parts) > 2 and "ro" in parts[2].split(",")), f"{name}: {volume}"
            assert "custom" not in volume, f"{name}: mount the volume, copy custom/ in: {volume}"
    lines = [line.split("#")[0] for line in COMPOSE_FILE.read_text().splitlines()]
    assert not any("8080" in line for line in lines)
    # The customization reaches the container by the derived image, and it exists.
    assert (DEPLOY / "espocrm" / "custom" / "Espo" / "Custom").is_dir()


def test_shell_scripts_are_shellcheck_clean() -> None:
    shellcheck = require_binary("shellcheck")
    scripts = [*sorted((DEPLOY / "scripts").glob("*.sh")), DEPLOY / "espocrm" / "maxcore-espocrm-sync.sh",
               FAKE_COMPOSE]
    result = subprocess.run([shellcheck, "-x", *map(str, scripts)], capture_output=True, text=True,
                            cwd=DEPLOY / "scripts", check=False, timeout=120)
    assert result.returncode == 0, result.stdout
    for script in scripts:
        text = script.read_text()
        if script.name == "lib.sh":
            continue  # sourced by the others, which set the options
        strict = "set -eu" if text.startswith("#!/bin/sh") else "set -euo pipefail"
        assert f"\n{strict}\n" in text, script


def test_production_config_validates_with_the_plugins() -> None:
    example = (DEPLOY / ".env.production.example").read_text()
    env = dict(line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#"))
    env["ACME_GREENAPI_INSTANCE_ID"] = "1101000001"
    loaded = load_config(DEPLOY / "config", load_plugins(), env=env)
    assert loaded.ok, "\n".join(map(str, loaded.problems))
    assert [t.tenant for t in loaded.tenants] == ["acme"]
    assert loaded.main.server.port == 3005


def deploy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env_file = tmp_path / "env.production"
    env_file.write_text((DEPLOY / ".env.production.example").read_text().replace("CHANGE_ME", "x1"))
    ssl = tmp_path / "ssl"
    ssl.mkdir(exist_ok=True)
    (ssl / "origin.pem").write_text("cert")
    (ssl / "origin.key").write_text("key")
    return {**os.environ, "COMPOSE": str(FAKE_COMPOSE), "FAKE_COMPOSE_EXEC": "log",
            "FAKE_COMPOSE_LOG": str(tmp_path / "calls.log"), "ENV_FILE": str(env_file),
            "SSL_DIR": str(ssl), "CURL": "true", **extra}


def run_deploy(
    tmp_path: Path, *args: str, **extra: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    result = subprocess.run(["bash", str(DEPLOY / "scripts" / "deploy.sh"), *args],
                            env=deploy_env(tmp_path, **extra), capture_output=True, text=True,
                            timeout=60, check=False)
    log = tmp_path / "calls.log"
    return result, log.read_text().splitlines() if log.exists() else []


def index_of(calls: list[str], needle: str) -> int:
    return next(i for i, call in enumerate(calls) if needle in call)


def test_deploy_checks_config_in_the_new_image_before_switching(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, "--skip-backup")
    assert result.returncode == 0, result.stderr
    order = [index_of(calls, step) for step in (
        "build --pull maxcore espocrm", "run --rm --no-deps -T maxcore maxcore check --config /config",
        "up -d --remove-orphans --wait", "exec -T -u root espocrm maxcore-espocrm-sync",
        "exec -T -u www-data espocrm php command.php rebuild", "exec -T maxcore maxcore doctor")]
    assert order == sorted(order)


def test_deploy_refused_config_switches_nothing(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, "--skip-backup", FAKE_COMPOSE_FAIL="maxcore check")
    assert result.returncode == 1
    assert "refuses the configuration" in result.stderr and "nothing was switched" in result.stderr
    assert not any(call.startswith("up ") for call in calls)


def test_deploy_unhealthy_stack_prints_the_rollback(tmp_path: Path) -> None:
    result, _ = run_deploy(tmp_path, "--skip-backup", FAKE_COMPOSE_FAIL="up -d")
    assert result.returncode == 1
    assert "did not become healthy" in result.stderr and "Rollback:" in result.stderr
    assert "restore.sh --force" in result.stderr


def test_deploy_preflight_refuses_placeholders_and_missing_certificate(tmp_path: Path) -> None:
    env = deploy_env(tmp_path)
    Path(env["ENV_FILE"]).write_text((DEPLOY / ".env.production.example").read_text())
    result = subprocess.run(["bash", str(DEPLOY / "scripts" / "deploy.sh")], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and "CHANGE_ME placeholders" in result.stderr
    env = deploy_env(tmp_path)
    (Path(env["SSL_DIR"]) / "origin.key").unlink()
    result = subprocess.run(["bash", str(DEPLOY / "scripts" / "deploy.sh")], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and "Origin Certificate" in result.stderr
    assert not (tmp_path / "calls.log").exists()


def test_deploy_dry_run_runs_nothing(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert calls == []
    assert "would run:" in result.stderr and "php command.php rebuild" in result.stderr
