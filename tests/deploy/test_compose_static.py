"""What can be proved about the stack without a Docker engine: the Compose file against
the Compose specification schema and the deploy invariants, the Dockerfiles, the
env example, shellcheck, deploy.sh's order of operations, and the production config."""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from maxcore.config import load_config
from maxcore.plugins import load_plugins

from .conftest import DEPLOY, REPO, require_binary
from .docker_engine import compose_binary

COMPOSE_FILE = DEPLOY / "docker-compose.yml"
SPLIT_FILE = DEPLOY / "docker-compose.split.yml"
FAKE_COMPOSE = Path(__file__).parent / "bin" / "fake-compose"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|API_KEY", re.I)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_config(tmp: Path, *files: Path, env_extra: str = "") -> dict[str, Any]:
    """``docker compose config`` (the real Compose v2, no engine needed) on the example env,
    run in deploy/ as an operator would; no ``files``: the ones COMPOSE_FILE names."""
    env_file = tmp / "env.production"
    env_file.write_text((DEPLOY / ".env.production.example").read_text().replace("CHANGE_ME", "x1")
                        + env_extra)
    (tmp / "maxcore.env").write_text((DEPLOY / "maxcore.env.example").read_text())
    file_args = [arg for file in files for arg in ("-f", str(file))]
    result = subprocess.run(
        [str(compose_binary()), *file_args, "--env-file", str(env_file), "config", "--format", "json"],
        env={"PATH": os.environ["PATH"], "MAXCORE_ENV_FILE": str(tmp / "maxcore.env")},
        cwd=DEPLOY, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return compose_config(tmp_path_factory.mktemp("compose-config"), COMPOSE_FILE)


def split_switch() -> str:
    """The two-process layout's line, as .env.production.example documents it (commented)."""
    example = (DEPLOY / ".env.production.example").read_text()
    found = re.findall(r"^# (COMPOSE_FILE=\S+)$", example, re.M)
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The split layout as a hand-run ``docker compose --env-file .env.production`` in
    deploy/ resolves it: the documented COMPOSE_FILE line selects both files."""
    return compose_config(tmp_path_factory.mktemp("compose-split"), env_extra=f"\n{split_switch()}\n")


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


def test_services_and_only_nginx_publishes_ports(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) == {"maxcore", "espocrm", "espocrm-daemon", "mariadb", "nginx"}
    publishing = {name for name, svc in services.items() if svc.get("ports")}
    assert publishing == {"nginx"}
    assert sorted((p["target"], p["published"], p.get("host_ip")) for p in services["nginx"]["ports"]) == [
        (80, "80", "0.0.0.0"), (443, "443", "0.0.0.0")]
    assert services["maxcore"]["expose"] == ["3005"]
    assert services["espocrm"]["expose"] == ["80"]


def test_locally_built_images_are_never_pulled(resolved: dict[str, Any]) -> None:
    for name, svc in resolved["services"].items():
        local = not svc["image"].startswith(("mariadb:", "nginx:"))
        assert ("build" in svc) == local, name
        if local:
            assert svc["pull_policy"] == "build", name
    assert resolved["services"]["espocrm-daemon"]["build"] == resolved["services"]["espocrm"]["build"]


def test_each_service_gets_only_its_secrets(resolved: dict[str, Any]) -> None:
    env = {name: set(svc.get("environment") or {}) for name, svc in resolved["services"].items()}
    secret = {name: {key for key in keys if SECRET_NAME.search(key)} for name, keys in env.items()}
    assert secret["nginx"] == set() and secret["espocrm-daemon"] == set()
    assert secret["mariadb"] == {"MARIADB_ROOT_PASSWORD", "MARIADB_PASSWORD"}
    assert secret["espocrm"] == {"ESPOCRM_DATABASE_PASSWORD", "ESPOCRM_ADMIN_PASSWORD",
                                 "ESPOCRM_CONFIG_SMTP_PASSWORD"}
    # maxcore: its own file (the tenants' secrets) and the EspoCRM API key, nothing of the stack.
    assert "MARIADB_ROOT_PASSWORD" not in env["maxcore"] and "ESPOCRM_ADMIN_PASSWORD" not in env["maxcore"]
    assert {"OPENAI_API_KEY", "SUPABASE_SERVICE_KEY", "ESPOCRM_API_KEY"} <= env["maxcore"]
    assert not any("RESTIC" in key for keys in env.values() for key in keys)


def test_nginx_follows_a_recreated_maxcore_and_grace_covers_the_drain(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert services["nginx"]["environment"]["DNS_RESOLVER"] == "127.0.0.11"
    assert not services["nginx"]["depends_on"]["maxcore"].get("restart")
    api = (DEPLOY / "nginx" / "templates" / "api.conf.template").read_text()
    assert "resolver ${DNS_RESOLVER}" in api and "proxy_pass $maxcore_upstream;" in api
    assert not re.search(r"^\s*upstream\s", api, re.M)  # a static upstream would keep the old IP
    main = yaml.safe_load((DEPLOY / "config" / "maxcore.yaml").read_text())
    grace = float(main["server"]["shutdown_grace_s"])
    # The inbox drains for grace seconds, then the server closes connections for as long.
    assert float(services["maxcore"]["stop_grace_period"].rstrip("s")) > 2 * grace
    assert services["maxcore"]["init"] is True
    assert services["espocrm"]["environment"]["ESPOCRM_CONFIG_IP_ADDRESS_SERVER_PARAM"] == "HTTP_X_REAL_IP"


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
    constraints = (DEPLOY / "maxcore" / "constraints.txt").read_text()
    pins = [line for line in constraints.splitlines() if line and not line.startswith("#")]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[^=\s]+", pin) for pin in pins), pins
    assert "--constraint constraints.txt" in (DEPLOY / "maxcore" / "Dockerfile").read_text()


def test_constraints_pin_every_dependency_of_the_image() -> None:
    """The image installs with --no-index from the constraints' wheels in the stack test,
    and pinned everywhere: a dependency added to a pyproject.toml needs its line here."""
    pins = {canonical(line.split("==")[0]) for line in
            (DEPLOY / "maxcore" / "constraints.txt").read_text().splitlines()
            if line and not line.startswith("#")}
    missing = set()
    for pyproject in [REPO / "pyproject.toml", *sorted((REPO / "plugins").glob("*/pyproject.toml"))]:
        for requirement in tomllib.loads(pyproject.read_text())["project"].get("dependencies", []):
            name = canonical(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])
            if not name.startswith("maxcore") and name not in pins:
                missing.add(f"{name} ({pyproject.relative_to(REPO)})")
    assert not missing, sorted(missing)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_no_secret_values_in_compose_or_examples(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        assert svc.get("env_file") in ("${MAXCORE_ENV_FILE:-maxcore.env}", None), name
        for key, value in (svc.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:[?-][^}]*)?\}", str(value)), f"{name}.{key} holds a value"
    assert [n for n, svc in compose["services"].items() if "env_file" in svc] == ["maxcore"]
    for example in (".env.production.example", "maxcore.env.example"):
        for line in (DEPLOY / example).read_text().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                if SECRET_NAME.search(key) and key not in ("ESPOCRM_API_KEY",):
                    assert "CHANGE_ME" in value or value == "", f"{key} in {example} is not a placeholder"
    for secret_file in ("deploy/.env.production", "deploy/maxcore.env"):
        ignored = subprocess.run(["git", "check-ignore", "-q", secret_file], cwd=REPO, check=False)
        assert ignored.returncode == 0, f"{secret_file} is not git-ignored"


def test_maxcore_runs_as_non_root_with_ca_certificates(compose: dict[str, Any]) -> None:
    svc = compose["services"]["maxcore"]
    assert svc["user"].split(":")[0] not in ("0", "root")
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
    assert "${MAXCORE_CONFIG_DIR:-./config}:/config:ro" in svc["volumes"]
    assert any(v.startswith("maxcore-data:") for v in svc["volumes"])
    dockerfile = (DEPLOY / "maxcore" / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert "ca-certificates" in dockerfile  # the slim base has them (a comment says so)
    assert re.search(r"^HEALTHCHECK .*\n.*api/health", dockerfile, re.M)
    assert dockerfile.count("FROM ") >= 2  # multi-stage
    assert "EXPOSE 3005" in dockerfile


def image_cmd() -> list[str]:
    found = re.search(r"^CMD (\[.*\])$", (DEPLOY / "maxcore" / "Dockerfile").read_text(), re.M)
    assert found, "the maxcore Dockerfile has no exec-form CMD"
    return list(json.loads(found.group(1)))


# What the worker shares with maxcore: the same process, hardened the same way, on the
# same config, data and secrets.
SHARED_WITH_WORKER = ("image", "environment", "volumes", "user", "read_only", "tmpfs", "cap_drop",
                      "security_opt", "init", "stop_grace_period", "restart", "networks", "logging")


def test_split_layout_runs_a_web_and_a_worker_on_the_same_data(
    split: dict[str, Any], resolved: dict[str, Any]
) -> None:
    services, single = split["services"], resolved["services"]
    assert set(services) == set(single) | {"maxcore-worker"}
    web, worker = services["maxcore"], services["maxcore-worker"]
    # The image's own command, with the role: nothing else of it changes.
    assert single["maxcore"].get("command") is None and single["maxcore"].get("entrypoint") is None
    assert web["command"] == [*image_cmd(), "--role", "web"]
    assert worker["command"] == [*image_cmd(), "--role", "worker"]
    assert web.get("entrypoint") is None and worker.get("entrypoint") is None
    # The web process keeps everything the single layout has: port, healthcheck, hardening.
    assert {k: v for k, v in web.items() if k != "command"} == {
        k: v for k, v in single["maxcore"].items() if k != "command"}
    for key in SHARED_WITH_WORKER:
        assert worker[key] == web[key], key
    assert any(v["source"] == "maxcore-data" and v["target"] == "/data" for v in worker["volumes"])
    assert any(v["target"] == "/config" and v["read_only"] for v in worker["volumes"])
    assert worker["user"] == "10001:10001" and worker["read_only"] is True and worker["init"] is True
    assert worker["cap_drop"] == ["ALL"] and worker["security_opt"] == ["no-new-privileges:true"]
    # No HTTP: nothing published or exposed; only nginx publishes, as in the single layout.
    assert "ports" not in worker and "expose" not in worker
    assert {name for name, svc in services.items() if svc.get("ports")} == {"nginx"}
    # maxcore's image, never built a second time nor pulled (it exists in no registry).
    assert "build" not in worker and worker["pull_policy"] == "never"
    # Started once the web process is healthy (so the `--role all` process it replaces
    # has stopped) and EspoCRM, which it calls.
    assert {name: dep["condition"] for name, dep in worker["depends_on"].items()} == {
        "maxcore": "service_healthy", "espocrm": "service_healthy"}
    assert not worker["depends_on"]["maxcore"].get("restart")
    check = " ".join(worker["healthcheck"]["test"])
    assert worker["healthcheck"]["test"][0] == "CMD" and "/data/maxcore-worker.pid" in check
    assert "api/health" not in check and worker["healthcheck"]["interval"]
    # The secrets are maxcore's: the worker holds exactly what the web process holds.
    assert "MARIADB_ROOT_PASSWORD" not in worker["environment"]


def test_split_layout_is_the_one_documented_line(tmp_path: Path) -> None:
    """The switch names the two files; both, given as -f, resolve to the same project."""
    switch = split_switch()
    assert switch == f"COMPOSE_FILE={COMPOSE_FILE.name}:{SPLIT_FILE.name}"
    by_files = compose_config(tmp_path, COMPOSE_FILE, SPLIT_FILE)
    by_switch = compose_config(tmp_path / "..", env_extra=f"\n{switch}\n")
    assert by_files["services"] == by_switch["services"]


def lib_layout(tmp_path: Path, env_line: str = "", **extra: str) -> subprocess.CompletedProcess[str]:
    """What lib.sh makes of the layout switch: its default COMPOSE and MAXCORE_SERVICES."""
    env_file = tmp_path / "env.production"
    env_file.write_text(f"API_HOST=api.test\n{env_line}\n")
    env = {key: value for key, value in os.environ.items() if key not in ("COMPOSE", "COMPOSE_FILE")}
    script = f'source {DEPLOY / "scripts" / "lib.sh"}; echo "$COMPOSE"; echo "${{MAXCORE_SERVICES[*]}}"'
    return subprocess.run(["bash", "-c", script], env={**env, "ENV_FILE": str(env_file), **extra},
                          capture_output=True, text=True, timeout=30, check=False)


def test_deploy_scripts_follow_the_layout_switch(tmp_path: Path) -> None:
    single = lib_layout(tmp_path)
    assert single.returncode == 0, single.stderr
    assert single.stdout.splitlines() == [
        f"docker compose --project-directory {DEPLOY} -f {COMPOSE_FILE} --env-file {tmp_path}/env.production",
        "maxcore"]
    split = lib_layout(tmp_path, split_switch())
    assert split.returncode == 0, split.stderr
    compose_line, services = split.stdout.splitlines()
    assert f" -f {COMPOSE_FILE} -f {SPLIT_FILE} --env-file " in compose_line
    assert services == "maxcore maxcore-worker"
    # The environment wins over the file, as it does for Compose itself.
    overridden = lib_layout(tmp_path, split_switch(), COMPOSE_FILE=COMPOSE_FILE.name)
    assert overridden.stdout.splitlines()[1] == "maxcore"
    missing = lib_layout(tmp_path, "COMPOSE_FILE=docker-compose.yml:docker-compose.spilt.yml")
    assert missing.returncode == 1 and "docker-compose.spilt.yml, which does not exist" in missing.stderr


@pytest.mark.slow
def test_worker_healthcheck_fails_once_the_worker_is_gone(tmp_path: Path) -> None:
    """The split file's healthcheck script, run here against a real ``--role worker``."""
    split_text = SPLIT_FILE.read_text().replace("!reset", "")  # Compose's merge tag
    test = yaml.safe_load(split_text)["services"]["maxcore-worker"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    data = tmp_path / "data"
    check = test[3].replace("/data/", f"{data}/")

    def healthy() -> bool:
        return subprocess.run([sys.executable, "-c", check], capture_output=True, timeout=30,
                              check=False).returncode == 0

    config = tmp_path / "config"
    (config / "tenants").mkdir(parents=True)
    (config / "maxcore.yaml").write_text(f"data_dir: {data}\n")
    (config / "tenants" / "acme.yaml").write_text(
        "tenant: acme\nchannel:\n  type: greenapi\n  instance_id: 7105000001\n"
        "  api_token: health-api-token-0123456789abcdef\n"
        "  webhook_token: health-webhook-token-0123456789abcdef\n  api_url: http://127.0.0.1:9\n"
        "assistant: {language: fr}\n")
    assert not healthy()  # not started: no pid file
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "maxcore", "serve", "--config", str(config), "--role", "worker"],
            env={**os.environ, "MAXCORE_LOAD_PLUGINS": "greenapi"}, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (data / "maxcore-worker.pid").exists():
            log_text = (tmp_path / "worker.log").read_text()
            assert worker.poll() is None and time.monotonic() < deadline, log_text
            time.sleep(0.05)
        assert healthy()
    finally:
        worker.kill()  # as the OOM killer would: the pid file stays behind
        worker.wait(30)
    assert (data / "maxcore-worker.pid").exists() and not healthy()
    # A later process under the file's pid (a new container reuses pid numbers) is not the
    # worker that wrote it.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "serve", "--role",
                           "worker"]) as later:
        try:
            (data / "maxcore-worker.pid").write_text(str(later.pid))
            os.utime(data / "maxcore-worker.pid", (time.time() - 60, time.time() - 60))
            assert not healthy()
            os.utime(data / "maxcore-worker.pid")
            assert healthy()  # the same file written after it started: that one is alive
        finally:
            later.kill()


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
               FAKE_COMPOSE, *sorted((Path(__file__).parent / "docker").rglob("*.sh")),
               Path(__file__).parent / "docker" / "espocrm-emulator" / "php"]
    result = subprocess.run([shellcheck, "-x", *map(str, scripts)], capture_output=True, text=True,
                            cwd=DEPLOY / "scripts", check=False, timeout=120)
    assert result.returncode == 0, result.stdout
    for script in scripts:
        text = script.read_text()
        if script.name in ("lib.sh", "espocrm_api.sh") or script.parent.parent.name == "docker":
            continue  # sourced by the others, which set the options; stand-ins: see their README
        strict = "set -eu" if text.startswith("#!/bin/sh") else "set -euo pipefail"
        assert f"\n{strict}\n" in text, script


def test_production_config_validates_with_the_plugins() -> None:
    example = (DEPLOY / ".env.production.example").read_text() + (DEPLOY / "maxcore.env.example").read_text()
    env = dict(line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#"))
    env["ACME_GREENAPI_INSTANCE_ID"] = "1101000001"
    env["ESPOCRM_API_KEY"] = "created-by-the-first-deploy"
    loaded = load_config(DEPLOY / "config", load_plugins(), env=env)
    assert loaded.ok, "\n".join(map(str, loaded.problems))
    assert [t.tenant for t in loaded.tenants] == ["acme"]
    assert loaded.main.server.port == 3005


def deploy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env_file = tmp_path / "env.production"
    env_file.write_text((DEPLOY / ".env.production.example").read_text().replace("CHANGE_ME", "x1")
                        .replace("ESPOCRM_API_KEY=\n", "ESPOCRM_API_KEY=k1\n"))
    maxcore_env = (DEPLOY / "maxcore.env.example").read_text().replace("CHANGE_ME", "x1")
    (tmp_path / "maxcore.env").write_text(maxcore_env)
    ssl = tmp_path / "ssl"
    ssl.mkdir(exist_ok=True)
    (ssl / "origin.pem").write_text("cert")
    (ssl / "origin.key").write_text("key")
    return {**os.environ, "COMPOSE": str(FAKE_COMPOSE), "FAKE_COMPOSE_EXEC": "log",
            "FAKE_COMPOSE_LOG": str(tmp_path / "calls.log"), "ENV_FILE": str(env_file),
            "MAXCORE_ENV_FILE": str(tmp_path / "maxcore.env"), "SSL_DIR": str(ssl), "CURL": "true",
            "PSQL": "true", "DOCKER": "true", **extra}


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
        "pull --ignore-buildable", "build --pull maxcore espocrm espocrm-daemon",
        "up -d --no-build --wait --wait-timeout 300 mariadb espocrm espocrm-daemon",
        "exec -T -u root espocrm maxcore-espocrm-sync",
        "exec -T -u www-data espocrm php command.php rebuild",
        "run --rm --no-deps -T maxcore maxcore check --config /config",
        "up -d --no-build --remove-orphans --wait", "exec -T maxcore maxcore doctor")]
    assert order == sorted(order)
    assert "Supabase migrations skipped: SUPABASE_DB_URL is empty" not in result.stderr  # set in the example


def test_deploy_refused_config_switches_nothing(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, "--skip-backup", FAKE_COMPOSE_FAIL="maxcore check")
    assert result.returncode == 1
    assert "refuses the configuration" in result.stderr and "maxcore was not switched" in result.stderr
    assert not any(call.startswith("up -d --no-build --remove-orphans") for call in calls)


def test_deploy_unhealthy_stack_prints_the_rollback(tmp_path: Path) -> None:
    result, _ = run_deploy(tmp_path, "--skip-backup", FAKE_COMPOSE_FAIL="up -d --no-build --remove-orphans")
    assert result.returncode == 1
    assert "did not become healthy" in result.stderr and "Rollback:" in result.stderr
    assert "--rollback" in result.stderr and "restore.sh --force" in result.stderr


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


def test_deploy_applies_the_supabase_migrations_in_order(tmp_path: Path) -> None:
    psql_log = tmp_path / "psql.log"
    psql = tmp_path / "psql"
    psql.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {psql_log}\n')
    psql.chmod(0o755)
    result, _ = run_deploy(tmp_path, "--skip-backup", PSQL=str(psql))
    assert result.returncode == 0, result.stderr
    files = [line.split(" -f ")[1] for line in psql_log.read_text().splitlines()]
    assert files == [str(p) for p in sorted((DEPLOY / "supabase" / "migrations").glob("*.sql"))]
    assert all("-v ON_ERROR_STOP=1" in line for line in psql_log.read_text().splitlines())


def test_a_locally_built_image_change_leaves_a_rollback_target(tmp_path: Path) -> None:
    result, _ = run_deploy(tmp_path, "--rollback", DOCKER="false")
    assert result.returncode == 1 and "nothing to roll back to" in result.stderr


def test_rollback_in_the_split_layout_recreates_the_worker_too(tmp_path: Path) -> None:
    env = deploy_env(tmp_path)
    with Path(env["ENV_FILE"]).open("a") as env_file:
        env_file.write(f"{split_switch()}\n")
    result = subprocess.run(["bash", str(DEPLOY / "scripts" / "deploy.sh"), "--rollback"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert "up -d --no-build --no-deps --wait --wait-timeout 300 maxcore maxcore-worker" in calls
