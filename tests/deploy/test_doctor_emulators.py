"""``maxcore doctor`` against the four contract emulators, through the command line.

One tenant uses the four production connectors — Green-API (webhook mode, with
``server.public_url``), EspoCRM, Supabase (the PostgREST emulator on a real throwaway
PostgreSQL with the migrations applied) and OpenAI — each pointed at its emulator.
Set up as the deploy guide says, every line is ✓ and the exit status 0; then one
thing is broken at a time, and that line alone turns ✗ (exit 1) or ! (degraded,
exit 0), followed by the ``fix:`` to apply.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner, Result

from maxcore.cli import cli, plugins
from maxcore.testing.espocrm import ApiUser, EspoEmulator, default_custom_dir
from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.harness import write_config
from maxcore.testing.openai_emulator import OpenAIEmulator, openai_emulator
from maxcore.testing.postgres import PostgresCluster, postgres_cluster, prepare_supabase_database
from maxcore.testing.postgrest_emulator import PostgrestEmulator

from .conftest import REPO

__all__ = ["postgres_cluster"]  # the session fixture, re-exported for pytest

MIGRATIONS = REPO / "deploy" / "supabase" / "migrations"
PUBLIC_URL = "https://api.crm.example.com"
INSTANCE = 7105099001
GREENAPI_TOKEN = "gapitoken" + "5f0c1d2e3a4b5c6d7e8f9a0b1c2d3e4f"
WEBHOOK_TOKEN = "whtoken" + "9a8b7c6d5e4f3a2b1c0d"
ESPO_KEY = "espo-api-key-" + "c0ffee0123456789"
OPENAI_KEY = "sk-doctor-" + "0123456789abcdef"
JWT_SECRET = "doctor-jwt-secret-with-at-least-32-characters"
SECRETS = (GREENAPI_TOKEN, WEBHOOK_TOKEN, ESPO_KEY, OPENAI_KEY, JWT_SECRET)
REBUILD_FIX = "copy deploy/espocrm/custom into the EspoCRM container and run 'php command.php rebuild'"

TENANT_YAML = """
tenant: acme
channel:
  type: greenapi
  instance_id: {instance}
  api_token: {greenapi_token}
  webhook_token: {webhook_token}
  api_url: {greenapi_url}
  timeout_s: 5
crm:
  type: espocrm
  url: {espo_url}
  api_key: {espo_key}
  timeout_s: 5
memory:
  type: supabase
  url: {supabase_url}
  key: {supabase_key}
  timeout_s: 5
llm:
  type: openai
  base_url: {openai_url}
  api_key: {openai_key}
  model: {model}
  timeout_s: 5
assistant:
  language: fr
"""

SUBJECTS = ("acme · channel greenapi", "acme · crm espocrm", "acme · memory supabase", "acme · llm openai")


@attrs.define
class Stack:
    """The four emulators (plus a broken twin for EspoCRM and Supabase) for the module."""

    greenapi: GreenApiEmulator
    greenapi_url: str
    espo: EspoEmulator
    espo_not_rebuilt: EspoEmulator
    supabase: PostgrestEmulator
    supabase_no_migrations: PostgrestEmulator
    openai: OpenAIEmulator

    def tenant(self, **overrides: Any) -> str:
        values: dict[str, Any] = {
            "instance": INSTANCE, "greenapi_token": GREENAPI_TOKEN, "webhook_token": WEBHOOK_TOKEN,
            "greenapi_url": self.greenapi_url, "espo_url": self.espo.url, "espo_key": ESPO_KEY,
            "supabase_url": self.supabase.url, "supabase_key": self.supabase.service_key,
            "openai_url": self.openai.base_url, "openai_key": OPENAI_KEY, "model": "gpt-4o-mini",
        }
        values.update(overrides)
        return TENANT_YAML.format(**values)


def _custom_without_tenant_field(directory: Path) -> Path:
    """deploy/espocrm/custom with Lead's tenantId renamed away: the field EspoCRM would lack."""
    shutil.copytree(default_custom_dir(), directory)
    lead = directory / "Espo/Custom/Resources/metadata/entityDefs/Lead.json"
    lead.write_text(lead.read_text().replace('"tenantId"', '"tenantIdNotInstalled"'))
    return directory


@pytest.fixture(scope="module")
def stack(postgres_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prepare_supabase_database(postgres_cluster, "doctor_memory", MIGRATIONS)
    prepare_supabase_database(postgres_cluster, "doctor_no_migrations", None)
    greenapi = GreenApiEmulator()  # real rate limits: getStateInstance and getSettings 1/s
    espo = EspoEmulator()
    not_rebuilt = EspoEmulator(_custom_without_tenant_field(tmp_path_factory.mktemp("espo") / "custom"))
    for emulator in (espo, not_rebuilt):
        emulator.add_api_user(ApiUser(api_key=ESPO_KEY))
    supabase = PostgrestEmulator(postgres_cluster.dsn("doctor_memory", "authenticator"), JWT_SECRET)
    bare = PostgrestEmulator(postgres_cluster.dsn("doctor_no_migrations", "authenticator"), JWT_SECRET)
    with contextlib.ExitStack() as running:
        greenapi_server = running.enter_context(greenapi.serve())
        running.enter_context(espo)
        running.enter_context(not_rebuilt)
        running.enter_context(supabase.serve())
        running.enter_context(bare.serve())
        openai = running.enter_context(openai_emulator(api_key=OPENAI_KEY, models=("gpt-4o-mini",)))
        yield Stack(greenapi, greenapi_server.url, espo, not_rebuilt, supabase, bare, openai)


@pytest.fixture
def fresh(stack: Stack) -> Stack:
    """An authorised instance with no settings yet (as Green-API hands it over)."""
    stack.greenapi.reset()
    stack.greenapi.add_instance(INSTANCE, GREENAPI_TOKEN)
    return stack


def invoke(*args: str) -> Result:
    plugins().hooks.register_commands(cli)  # what `maxcore` (cli.main) does before parsing
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def doctor(config: Path) -> Result:
    result = invoke("doctor", "--config", str(config), "--timeout", "8")
    print(f"$ maxcore doctor  → exit {result.exit_code}\n{result.output}")  # shown when a test fails
    leaked = [secret for secret in SECRETS if secret in result.output]
    assert not leaked, f"secret(s) in the doctor's output:\n{result.output}"
    return result


def configure(stack: Stack, tmp_path: Path, **overrides: Any) -> Path:
    main = f"server:\n  public_url: {PUBLIC_URL}\n"
    return write_config(tmp_path / "config", {"acme": stack.tenant(**overrides)}, main=main,
                        data_dir=tmp_path / "data")


def setup_webhook(config: Path) -> None:
    """The deploy step the doctor checks: point the instance at server.public_url."""
    result = invoke("greenapi", "setup", "--config", str(config), "--tenant", "acme")
    assert result.exit_code == 0, result.output


def line_of(result: Result, subject: str) -> tuple[str, str]:
    """(the connector's line, the ``fix:`` line under it or "")."""
    lines = result.output.splitlines()
    index = next(i for i, line in enumerate(lines) if subject in line)
    following = lines[index + 1].strip() if index + 1 < len(lines) else ""
    return lines[index], following if following.startswith("fix:") else ""


def assert_only_broken(result: Result, broken: str, mark: str) -> tuple[str, str]:
    """``broken`` carries ``mark`` and a fix; every other connector line is ✓."""
    for subject in SUBJECTS:
        line, fix = line_of(result, subject)
        if subject == broken:
            assert line.startswith(f"{mark} "), result.output
            assert fix, f"no fix under {line!r}:\n{result.output}"
        else:
            assert line.startswith("✓ "), result.output
    return line_of(result, broken)


def test_set_up_as_documented_all_checks_pass(fresh: Stack, tmp_path: Path) -> None:
    config = configure(fresh, tmp_path)
    setup_webhook(config)
    result = doctor(config)
    assert result.exit_code == 0, result.output
    marks = [line[0] for line in result.output.splitlines() if line[:1] in "✓!✗"]
    assert set(marks) == {"✓"}, result.output
    assert re.search(r"^✓ all \d+ check\(s\) passed, 0 warning\(s\)$", result.output, re.M), result.output
    channel, _ = line_of(result, SUBJECTS[0])
    assert f"authorized, webhook {PUBLIC_URL}/webhooks/greenapi" in channel
    assert "Lead has tenantId" in line_of(result, SUBJECTS[1])[0]
    assert "schema v2" in line_of(result, SUBJECTS[2])[0]
    assert "model gpt-4o-mini available" in line_of(result, SUBJECTS[3])[0]


def test_webhook_never_set_up_is_a_warning_naming_the_setup_command(fresh: Stack, tmp_path: Path) -> None:
    result = doctor(configure(fresh, tmp_path))
    assert result.exit_code == 0, result.output  # degraded: reported, not fatal
    line, fix = assert_only_broken(result, SUBJECTS[0], "!")
    assert "no webhook URL" in line
    assert fix == f"fix: run maxcore greenapi setup --tenant acme --public-url {PUBLIC_URL}"


def test_webhook_pointing_elsewhere_is_a_warning(fresh: Stack, tmp_path: Path) -> None:
    config = configure(fresh, tmp_path)
    setup_webhook(config)
    fresh.greenapi.instances[INSTANCE].settings["webhookUrl"] = "https://old-server.example.com/hook"
    result = doctor(config)
    assert result.exit_code == 0, result.output
    line, fix = assert_only_broken(result, SUBJECTS[0], "!")
    assert "https://old-server.example.com/hook" in line and f"{PUBLIC_URL}/webhooks/greenapi" in line
    assert "maxcore greenapi setup --tenant acme" in fix


def test_instance_not_authorised_fails_with_the_qr_code_fix(fresh: Stack, tmp_path: Path) -> None:
    config = configure(fresh, tmp_path)
    setup_webhook(config)
    fresh.greenapi.set_state(INSTANCE, "notAuthorized")
    result = doctor(config)
    assert result.exit_code == 1, result.output
    line, fix = assert_only_broken(result, SUBJECTS[0], "✗")
    assert "notAuthorized" in line and fix.startswith("fix: scan the QR code in the Green-API console")


def test_espocrm_without_the_custom_fields_fails_with_the_rebuild_fix(fresh: Stack, tmp_path: Path) -> None:
    config = configure(fresh, tmp_path, espo_url=fresh.espo_not_rebuilt.url)
    setup_webhook(config)
    result = doctor(config)
    assert result.exit_code == 1, result.output
    line, fix = assert_only_broken(result, SUBJECTS[1], "✗")
    assert "Lead has no tenantId field" in line and REBUILD_FIX in fix


def test_espocrm_rejected_key_fails_naming_the_setting(fresh: Stack, tmp_path: Path) -> None:
    config = configure(fresh, tmp_path, espo_key="espo-wrong-key-000")
    setup_webhook(config)
    result = doctor(config)
    assert result.exit_code == 1, result.output
    line, fix = assert_only_broken(result, SUBJECTS[1], "✗")
    assert "401" in line and "set crm.api_key" in fix and "espo-wrong-key-000" not in result.output


def test_supabase_without_migrations_fails_with_the_migration_fix(fresh: Stack, tmp_path: Path) -> None:
    config = configure(fresh, tmp_path, supabase_url=fresh.supabase_no_migrations.url,
                       supabase_key=fresh.supabase_no_migrations.service_key)
    setup_webhook(config)
    result = doctor(config)
    assert result.exit_code == 1, result.output
    line, fix = assert_only_broken(result, SUBJECTS[2], "✗")
    assert "schema check" in line and fix.startswith("fix: apply deploy/supabase/migrations")


def test_supabase_wrong_key_fails_naming_the_setting(fresh: Stack, tmp_path: Path) -> None:
    config = configure(fresh, tmp_path, supabase_key="eyJ.not-the-project-key.x")
    setup_webhook(config)
    result = doctor(config)
    assert result.exit_code == 1, result.output
    _line, fix = assert_only_broken(result, SUBJECTS[2], "✗")
    assert "set memory.key to the project's service_role key" in fix


def test_openai_unknown_model_is_a_warning_listing_the_models(fresh: Stack, tmp_path: Path) -> None:
    config = configure(fresh, tmp_path, model="gpt-4o-typo")
    setup_webhook(config)
    result = doctor(config)
    assert result.exit_code == 0, result.output
    line, fix = assert_only_broken(result, SUBJECTS[3], "!")
    assert "gpt-4o-typo not listed" in line
    assert fix == "fix: set llm.model to a model this server lists (gpt-4o-mini)"


def test_openai_bad_key_fails_naming_the_setting(fresh: Stack, tmp_path: Path) -> None:
    config = configure(fresh, tmp_path, openai_key="sk-wrong-000000")
    setup_webhook(config)
    result = doctor(config)
    assert result.exit_code == 1, result.output
    line, fix = assert_only_broken(result, SUBJECTS[3], "✗")
    assert "rejected the API key" in line and fix.startswith("fix: set llm.api_key")
    assert "sk-wrong-000000" not in result.output


def test_a_fix_keeps_its_own_parentheses() -> None:
    from maxcore.doctor import split_fix

    assert split_fix("model x not listed — fix: set llm.model to one listed (a, b)") == (
        "model x not listed", "set llm.model to one listed (a, b)")
    assert split_fix("refused (fix: set crm.api_key)") == ("refused", "set crm.api_key")
