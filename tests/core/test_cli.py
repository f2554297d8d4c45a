"""The command line: chat, leads, plugins."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from maxcore import cli as cli_module
from maxcore import hookimpl
from maxcore.plugins import PluginSet, load_plugins
from maxcore.routing import Routing

DEMO = "Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, +33 6 12 34 56 78"


@pytest.fixture
def demo_config(make_config):
    return make_config("demo")


def run(*args: str):
    return CliRunner().invoke(cli_module.cli, list(args), catch_exceptions=False)


def test_chat_once_then_again_gives_one_lead(demo_config):
    first = run("chat", "--config", str(demo_config), "--tenant", "demo", "-m", DEMO)
    assert first.exit_code == 0, first.output
    assert "✅ Lead créé : Jean Dupont" in first.output
    second = run("chat", "--config", str(demo_config), "--tenant", "demo", "-m", DEMO)
    assert "✅ Lead mis à jour : Jean Dupont" in second.output
    listed = run("leads", "--config", str(demo_config), "--tenant", "demo", "--json")
    leads = json.loads(listed.output)
    assert len(leads) == 1
    # The embedded CRM's industry is free text: kept as the user wrote it.
    assert leads[0]["phone"] == "+33612345678" and leads[0]["industry"] == "BTP"
    table = run("leads", "--config", str(demo_config), "--tenant", "demo")
    assert "Jean Dupont" in table.output and "1 lead(s)" in table.output


def test_chat_asks_for_what_is_missing_then_completes(demo_config):
    asked = run("chat", "--config", str(demo_config), "--tenant", "demo", "--chat", "c1",
                "-m", "Nouveau lead : Paul Martin, immobilier")
    assert "il me manque : un téléphone ou un e-mail" in asked.output
    done = run("chat", "--config", str(demo_config), "--tenant", "demo", "--chat", "c1",
               "-m", "son mail : paul@martin.fr")
    assert "✅ Lead créé : Paul Martin" in done.output


def test_chat_interactive_reads_lines(demo_config):
    result = CliRunner().invoke(
        cli_module.cli, ["chat", "--config", str(demo_config), "--tenant", "demo"],
        input=f"bonjour\n{DEMO}\n",
    )
    assert result.exit_code == 0
    assert "Bonjour, je suis MAX" in result.output and "Lead créé" in result.output


def test_unknown_tenant(demo_config):
    result = run("chat", "--config", str(demo_config), "--tenant", "nope", "-m", "x")
    assert result.exit_code == 1 and "unknown tenant nope; configured: demo" in result.output


def test_plugins_lists_builtins(monkeypatch):
    monkeypatch.setattr(cli_module, "_PLUGINS", None)
    text = run("plugins").output
    assert "sqlite" in text and "crm: sqlite" in text and "llm: offline" in text
    assert "tools: upsert_lead, update_lead, search_leads, create_record, send_message, remember" in text
    data = json.loads(run("plugins", "--json").output)
    by_name = {p["name"]: p for p in data}
    assert by_name["webchat"]["connectors"] == {"channel": ["webchat"]}
    assert by_name["webchat"]["builtin"] is True


def test_plugins_shows_each_channels_routing_and_reconciliation(monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    from channel_examples import TelegramLikeChannel

    class HeaderRouted(TelegramLikeChannel):
        name = "header_routed"
        routing = Routing.header("X-Account-Id")
        can_reconcile = True

        async def find_sent(self, chat_id, text, since):
            return None

    class Channels:
        @hookimpl
        def register_channels(self):
            return [TelegramLikeChannel, HeaderRouted]

    monkeypatch.setattr(cli_module, "_PLUGINS", load_plugins(extra=[("routed_channels", Channels())]))
    lines = {line.split()[1]: line for line in run("plugins").output.splitlines()}
    assert ("channel: telegram_like [routing: path, reconciles sends: no]; "
            "channel: header_routed [routing: header x-account-id, reconciles sends: yes]") in lines[
        "routed_channels"]
    assert "channel: greenapi [routing: body instanceData.idInstance, reconciles sends: yes]" in lines[
        "greenapi"]
    assert "channel: webchat [routing: custom: the tenant named in the session token" in lines["webchat"]
    data = {p["name"]: p for p in json.loads(run("plugins", "--json").output)}
    assert data["routed_channels"]["channels"] == {
        "telegram_like": {"routing": {"source": "path", "field": ""}, "reconciles_sends": False},
        "header_routed": {"routing": {"source": "header", "field": "x-account-id"},
                          "reconciles_sends": True}}
    assert data["greenapi"]["channels"]["greenapi"] == {
        "routing": {"source": "body", "field": "instanceData.idInstance"}, "reconciles_sends": True}
    assert data["sqlite"]["channels"] == {}


def test_plugins_shows_import_failures(monkeypatch, tmp_path):
    (tmp_path / "mc_cli_broken.py").write_text("import does_not_exist_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mc_cli_broken", None)
    ep = importlib.metadata.EntryPoint(name="mc_cli_broken", value="mc_cli_broken", group="maxcore")
    monkeypatch.setattr(cli_module, "_PLUGINS", PluginSet().load(entry_points=[ep]))
    text = run("plugins").output
    assert "✗ mc_cli_broken" in text
    assert "ModuleNotFoundError: No module named 'does_not_exist_anywhere'" in text
    assert "✓ sqlite" in text


def _leaf_commands(group, prefix=()):
    import click

    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_command_takes_config():
    import click

    from maxcore.plugins import load_plugins

    group = click.Group(commands=dict(cli_module.cli.commands))
    load_plugins().hooks.register_commands(group)
    leaves = dict(_leaf_commands(group))
    assert {("check",), ("serve",), ("plugins",), ("chat",), ("leads",), ("reload",)} <= set(leaves)
    missing = [" ".join(path) for path, command in leaves.items()
               if "--config" not in {opt for p in command.params for opt in getattr(p, "opts", [])}]
    assert missing == []


def test_plugins_with_config_shows_which_tenants_use_each_plugin(monkeypatch, make_config):
    monkeypatch.setattr(cli_module, "_PLUGINS", None)
    config = make_config("acme", "beta")
    text = run("plugins", "--config", str(config)).output
    sqlite_line = next(line for line in text.splitlines() if line.startswith("✓ sqlite"))
    assert sqlite_line.endswith("used by: acme, beta")
    data = {p["name"]: p for p in json.loads(run("plugins", "--config", str(config), "--json").output)}
    assert data["webchat"]["used_by"] == ["acme", "beta"] and data["console"]["used_by"] == []


def test_plugins_with_a_missing_config_directory_still_lists(monkeypatch, tmp_path):
    monkeypatch.setattr(cli_module, "_PLUGINS", None)
    result = CliRunner().invoke(cli_module.cli, ["plugins", "--config", str(tmp_path / "nope")])
    assert result.exit_code == 0
    assert "configuration directory does not exist" in result.output and "✓ sqlite" in result.output
