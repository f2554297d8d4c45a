"""Configuration errors are precise: file, key path, expected vs got."""

from __future__ import annotations

import asyncio
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from maxcore import cli as cli_module
from maxcore import hookimpl
from maxcore.config import load_config
from maxcore.plugins import PluginSet, load_plugins
from maxcore.testing.harness import write_config

PLUGINS = load_plugins()


def problems(config: Path, env: dict[str, str] | None = None) -> list[str]:
    return [str(p) for p in load_config(config, PLUGINS, env=env or {}).problems]


def tenant(body: str) -> dict[str, str]:
    return {"acme": body}


def test_minimal_files_are_valid(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\n"), main="server: {port: 4000}\n")
    loaded = load_config(config, PLUGINS, env={})
    assert loaded.ok, loaded.problems
    assert loaded.main.server.port == 4000 and loaded.main.server.host == "0.0.0.0"
    acme = loaded.tenants[0]
    assert (acme.channel.type, acme.crm.type, acme.memory.type, acme.llm.type) == (
        "webchat", "sqlite", "sqlite", "offline")
    assert acme.assistant.language == "fr" and acme.assistant.max_tool_rounds == 4


def test_sqlite_blocks_need_no_other_key(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\ncrm: {type: sqlite}\nmemory: {type: sqlite}\n"))
    assert problems(config) == []


def test_typo_is_an_unknown_key(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\nasistant: {language: fr}\n"
                                           "crm: {type: sqlite, pth: x.db}\n"))
    found = problems(config)
    assert any(p.startswith("tenants/acme.yaml: asistant: unknown key") and "assistant" in p
               for p in found), found
    assert any(p.startswith("tenants/acme.yaml: crm.pth: unknown key") and "path" in p
               for p in found), found


def test_wrong_types_name_the_key_expected_and_got(tmp_path):
    config = write_config(
        tmp_path,
        tenant("tenant: acme\nname: 42\nassistant: {max_tool_rounds: many, allowed_tools: [a, 3]}\n"),
        main="server: {port: '3005'}\n",
    )
    found = problems(config)
    assert "maxcore.yaml: server.port: expected an integer, got '3005' (string)" in found
    assert "tenants/acme.yaml: name: expected a string, got 42 (integer)" in found
    assert "tenants/acme.yaml: assistant.max_tool_rounds: expected an integer, got 'many' (string)" in found
    assert "tenants/acme.yaml: assistant.allowed_tools[1]: expected a string, got 3 (integer)" in found


def test_validator_failures_name_the_field(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\nassistant: {language: de}\n"),
                          main="server: {port: 70000}\n")
    found = problems(config)
    assert "maxcore.yaml: server.port: expected a number between 1 and 65535, got 70000" in found
    assert ("tenants/acme.yaml: assistant.language: expected a language with a pack (en, fr), "
            "got 'de'") in found


def test_missing_environment_variable(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\nname: ${ACME_NAME}\n"
                                           "assistant: {name: '${BOT:-MAX}'}\n"))
    assert problems(config) == [
        "tenants/acme.yaml: name: environment variable ACME_NAME is not set (referenced as ${ACME_NAME})"
    ]
    loaded = load_config(config, PLUGINS, env={"ACME_NAME": "Acme SA"})
    assert loaded.ok and loaded.tenants[0].name == "Acme SA"
    assert type(loaded.tenants[0].name) is str  # the FromEnv marker stays in the loader
    assert loaded.tenants[0].assistant.name == "MAX"


def test_unknown_connector_type_lists_the_available_ones(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\ncrm: {type: salesforce}\n"))
    (found,) = problems(config)
    assert found.startswith("tenants/acme.yaml: crm.type: unknown crm type 'salesforce'; available: ")
    assert "sqlite" in found


def test_invalid_yaml_names_file_and_line(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\ncrm: [type: sqlite\n"))
    (found,) = problems(config)
    assert found.startswith("tenants/acme.yaml: invalid YAML: line 3, column 1")


def test_bad_tenant_id_and_duplicates(tmp_path):
    config = write_config(tmp_path, {"a": "tenant: acme\n", "b": "tenant: acme\n",
                                     "c": "tenant: Bad Id\n"})
    found = problems(config)
    assert "tenants/b.yaml: tenant: tenant id 'acme' is already used by tenants/a.yaml" in found
    assert any(p.startswith("tenants/c.yaml: tenant: expected lower-case letters") for p in found)


def test_block_that_is_not_a_mapping(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\nllm: offline\n"))
    assert problems(config) == [
        "tenants/acme.yaml: llm: expected a mapping with a 'type' key, got 'offline'"
    ]


def test_every_problem_of_every_file_is_listed(tmp_path):
    config = write_config(tmp_path, {
        "a": "tenant: a\ncrm: {type: sqlite, nope: 1}\n",
        "b": "tenant: b\nllm: {type: gpt}\n",
    }, main="logging: {format: xml}\n")
    found = problems(config)
    assert len(found) == 3
    assert {p.split(":")[0] for p in found} == {"maxcore.yaml", "tenants/a.yaml", "tenants/b.yaml"}


def test_shipped_config_is_valid():
    root = Path(__file__).resolve().parents[2]
    assert problems(root / "config") == []


def test_check_command_exits_1_with_every_problem(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\ncrm: {type: sqlite, pth: x}\n"
                                           "name: ${NOPE_NOT_SET}\nllm: {type: gpt}\n"))
    result = CliRunner().invoke(cli_module.cli, ["check", "--config", str(config)])
    assert result.exit_code == 1
    assert "tenants/acme.yaml: crm.pth: unknown key" in result.output
    assert "environment variable NOPE_NOT_SET is not set" in result.output
    assert "crm.type" not in result.output  # sqlite is known
    assert "llm.type: unknown llm type 'gpt'" in result.output
    assert "3 problem(s)" in result.output


def test_check_command_ok(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\n"))
    result = CliRunner().invoke(cli_module.cli, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "valid, 1 tenant(s): acme" in result.output


def test_serve_refuses_to_start_on_invalid_config(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\ncrm: {type: sqlite, pth: x}\n"))
    result = CliRunner().invoke(cli_module.cli, ["serve", "--config", str(config)])
    assert result.exit_code == 1
    assert "crm.pth: unknown key" in result.output
    assert "nothing was started" in result.output


@pytest.mark.parametrize("missing", ["nowhere"])
def test_missing_config_directory(tmp_path, missing):
    assert problems(tmp_path / missing) == [f"{tmp_path / missing}: configuration directory does not exist"]


def test_missing_required_key_is_named_once(tmp_path):
    @attrs.frozen
    class NeedsKey:
        api_key: str

    class Plugin:
        @hookimpl
        def register_llms(self):
            from maxcore.builtin.offline_llm import OfflineLLM

            return [type("Keyed", (OfflineLLM,), {"name": "keyed", "Config": NeedsKey})]

    config = write_config(tmp_path, tenant("tenant: acme\nllm: {type: keyed}\n"))
    plugins = PluginSet().load(extra=[("needs_key", Plugin())])
    found = [str(p) for p in load_config(config, plugins, env={}).problems]
    assert found == ["tenants/acme.yaml: llm.api_key: required key is missing"]


def test_rate_limit_must_be_positive(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\nlimits: {messages_per_minute: 0}\n"))
    assert problems(config) == [
        "tenants/acme.yaml: limits.messages_per_minute: expected a positive integer or null, got 0"
    ]


# -- hostile YAML ---------------------------------------------------------------------
LAUGHS = "tenant: acme\nlol: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"l{i}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


def test_billion_laughs_is_refused_naming_the_file(tmp_path):
    assert len(LAUGHS.encode()) < 420  # expands to 9⁹ (387 million) values
    config = write_config(tmp_path, tenant(LAUGHS))
    (found,) = problems(config)
    assert found.startswith("tenants/acme.yaml: refused: line ")
    assert "aliases expand to more than 100,000 values" in found


def test_check_refuses_billion_laughs(tmp_path):
    config = write_config(tmp_path, tenant(LAUGHS))
    result = CliRunner().invoke(cli_module.cli, ["check", "--config", str(config)])
    assert result.exit_code == 1
    assert "tenants/acme.yaml: refused" in result.output


def test_anchors_and_merge_keys_still_work(tmp_path):
    config = write_config(tmp_path, tenant(
        "tenant: acme\nassistant: &base {name: Max, history_messages: 5}\n"
        "limits: {messages_per_minute: 10}\n"
    ) | {"beta": "tenant: beta\nbase: &b {name: Bea, language: en}\n"}
    )
    # `base` is not a key of a tenant file: the anchor itself is reported, not the alias size
    assert problems(config) == ["tenants/beta.yaml: base: unknown key; expected one of: "
                                "tenant, name, assistant, limits"]
    config = write_config(tmp_path / "m", tenant(
        "tenant: acme\nassistant:\n  <<: &b {name: Bea, language: en}\n  language: fr\n"
    ))
    loaded = load_config(config, PLUGINS, env={})
    assert loaded.ok, loaded.problems
    assert (loaded.tenants[0].assistant.name, loaded.tenants[0].assistant.language) == ("Bea", "fr")


@pytest.mark.parametrize("text", [
    "tenant: acme\nname: " + "[" * 5000 + "]" * 5000 + "\n",
    "tenant: acme\nname:\n" + "".join("  " * i + "k:\n" for i in range(1, 700)),
    "tenant: acme\nname: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
])
def test_deep_nesting_is_a_clean_error(tmp_path, text):
    config = write_config(tmp_path, tenant(text))
    (found,) = problems(config)
    assert found.startswith("tenants/acme.yaml: invalid YAML: line ")
    assert found.endswith("nesting deeper than 64 levels")


def test_recursive_alias_is_refused(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\nname: &a [1, *a]\n"))
    assert problems(config) == [
        "tenants/acme.yaml: refused: line 2: an alias refers to a value that contains it"
    ]


def test_duplicate_keys_name_the_path_and_lines(tmp_path):
    config = write_config(tmp_path, tenant(
        "tenant: acme\nassistant:\n  name: A\n  language: fr\n  name: B\ntenant: acme\n"
    ), main="server:\n  port: 4000\n  port: 4001\n")
    assert sorted(problems(config)) == [
        "maxcore.yaml: server.port: duplicate key (line 3; first defined on line 2)",
        "tenants/acme.yaml: assistant.name: duplicate key (line 5; first defined on line 3)",
        "tenants/acme.yaml: tenant: duplicate key (line 6; first defined on line 1)",
    ]


def test_oversized_file_is_refused(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\n# " + "x" * (1 << 20) + "\n"))
    (found,) = problems(config)
    assert found.startswith("tenants/acme.yaml: file is 1,048,5") and "limited to 1,048,576" in found


async def test_reload_refuses_billion_laughs_and_keeps_serving(make_config):
    from maxcore.testing.harness import running

    config = make_config("acme")
    async with running(config) as r:
        (config / "tenants" / "bomb.yaml").write_text(LAUGHS.replace("acme", "bomb"))
        reload = asyncio.create_task(r.runtime.reload(config))
        # The loop keeps serving while the files are read (off the event loop).
        assert (await r.client.post("/chat/acme/session")).status_code == 200
        found = await reload
        assert len(found) == 1 and found[0].startswith("tenants/bomb.yaml: refused: ")
        assert set(r.runtime.tenants.by_id) == {"acme"}


# -- strictness --------------------------------------------------------------------
def test_every_validator_failure_of_a_block_is_reported_at_once(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\n"), main=(
        "server: {port: 70000, body_limit_bytes: 1, shutdown_grace_s: -1, host: 3}\n"
        "inbox: {workers: 0, type: redis}\n"
    ))
    assert sorted(problems(config)) == [
        "maxcore.yaml: inbox.type: expected one of sqlite, memory, got 'redis'",
        "maxcore.yaml: inbox.workers: expected a number between 1 and 1024, got 0",
        "maxcore.yaml: server.body_limit_bytes: expected a number between 1024 and 67108864, got 1",
        "maxcore.yaml: server.host: expected a string, got 3 (integer)",
        "maxcore.yaml: server.port: expected a number between 1 and 65535, got 70000",
        "maxcore.yaml: server.shutdown_grace_s: expected a number between 0 and 600, got -1.0",
    ]


def test_a_string_where_a_list_is_expected_is_an_error(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\nassistant: {allowed_tools: upsert_lead}\n"))
    assert problems(config) == [
        "tenants/acme.yaml: assistant.allowed_tools: expected a list, got 'upsert_lead' (string)"
    ]


def test_unknown_tool_names_are_errors(tmp_path):
    config = write_config(tmp_path, tenant(
        "tenant: acme\nassistant: {allowed_tools: [search_leads, upsert_leads, launch_rocket]}\n"
    ))
    first, second = problems(config)
    assert first.startswith("tenants/acme.yaml: assistant.allowed_tools[1]: unknown tool "
                            "'upsert_leads' (did you mean upsert_lead?); available: ")
    assert "remember" in first
    assert second.startswith("tenants/acme.yaml: assistant.allowed_tools[2]: unknown tool "
                             "'launch_rocket'; available: ")


def test_phone_region_must_be_a_known_region(tmp_path):
    config = write_config(tmp_path, {"a": "tenant: a\nassistant: {phone_region: XX}\n",
                                     "b": "tenant: b\nassistant: {phone_region: be}\n",
                                     "c": "tenant: c\nassistant: {phone_region: CH}\n"})
    assert problems(config) == [
        "tenants/a.yaml: assistant.phone_region: expected a region code for phone numbers such "
        "as FR, BE, CH or US, got 'XX'",
        "tenants/b.yaml: assistant.phone_region: expected a region code for phone numbers such "
        "as FR, BE, CH or US, got 'be' (did you mean 'BE'?)",
    ]


def test_environment_values_take_the_field_type(tmp_path):
    config = write_config(tmp_path, tenant(
        "tenant: acme\nassistant: {max_tool_rounds: '${ROUNDS}'}\nlimits:\n  messages_per_minute: ${RATE}\n"
    ), main="server:\n  port: ${PORT}\n  shutdown_grace_s: ${GRACE:-2.5}\n")
    loaded = load_config(config, PLUGINS, env={"PORT": "3005", "ROUNDS": " 6 ", "RATE": "30"})
    assert loaded.ok, loaded.problems
    assert loaded.main.server.port == 3005 and loaded.main.server.shutdown_grace_s == 2.5
    assert loaded.tenants[0].assistant.max_tool_rounds == 6
    assert loaded.tenants[0].limits.messages_per_minute == 30
    found = [str(p) for p in load_config(config, PLUGINS, env={
        "PORT": "80a", "ROUNDS": "99", "RATE": "-1"}).problems]
    assert sorted(found) == [
        "maxcore.yaml: server.port: expected an integer, got '${PORT}' (string from the environment)",
        "tenants/acme.yaml: assistant.max_tool_rounds: expected a number between 1 and 20, got 99",
        "tenants/acme.yaml: limits.messages_per_minute: expected a positive integer or null, got -1",
    ]


def test_a_literal_string_is_not_converted(tmp_path):
    config = write_config(tmp_path, tenant("tenant: acme\n"), main="server: {port: '3005'}\n")
    assert problems(config) == ["maxcore.yaml: server.port: expected an integer, got '3005' (string)"]


# -- secrets never echoed ------------------------------------------------------------
SECRET = "sk-Live-4f9A8b7c6d5e"
MISPLACED = {
    "wrong type": ("tenant: acme\n", "server: {port: '${API_SECRET}'}\n"),
    "unknown enum": ("tenant: acme\nassistant: {language: '${API_SECRET}'}\n", ""),
    "connector type": ("tenant: acme\ncrm: {type: '${API_SECRET}'}\n", ""),
    "block not a mapping": ("tenant: acme\nllm: '${API_SECRET}'\n", ""),
    "tenant id": ("tenant: '${API_SECRET}'\n", ""),
    "url": ("tenant: acme\n", "server: {public_url: 'x${API_SECRET}'}\n"),
    "list": ("tenant: acme\nassistant: {allowed_tools: '${API_SECRET}'}\n", ""),
    "tool name": ("tenant: acme\nassistant: {allowed_tools: ['${API_SECRET}']}\n", ""),
    "region": ("tenant: acme\nassistant: {phone_region: 'Bearer ${API_SECRET}'}\n", ""),
    "plugin validator": ("tenant: acme\nchannel: {type: greenapi, instance_id: '${API_SECRET}', "
                         "api_token: '${API_SECRET}'}\n", ""),
}


@pytest.mark.parametrize("variant", sorted(MISPLACED))
def test_a_misplaced_secret_is_never_shown(tmp_path, monkeypatch, variant):
    tenant_text, main_text = MISPLACED[variant]
    config = write_config(tmp_path, tenant(tenant_text), main=main_text)
    monkeypatch.setenv("API_SECRET", SECRET)
    found = [str(p) for p in load_config(config, PLUGINS).problems]
    assert found and all(SECRET not in p for p in found), found
    assert any("${API_SECRET}" in p for p in found), found
    for command in ("check", "serve"):
        result = CliRunner().invoke(cli_module.cli, [command, "--config", str(config)])
        assert result.exit_code == 1, result.output
        assert SECRET not in result.output
        assert "${API_SECRET}" in result.output


def test_a_nested_class_check_keeps_the_full_key_path(tmp_path):
    config = write_config(tmp_path, tenant(
        "tenant: acme\nassistant: {texts: {no_such_text: x}, max_tool_rounds: 50}\n"
    ))
    found = problems(config)
    assert found == [
        "tenants/acme.yaml: assistant.max_tool_rounds: expected a number between 1 and 20, got 50"
    ]
    config = write_config(tmp_path / "b", tenant("tenant: acme\nassistant: {texts: {no_such_text: x}}\n"))
    (found,) = problems(config)
    assert found.startswith(
        "tenants/acme.yaml: assistant.texts.no_such_text: unknown text; expected one of: "
    )
