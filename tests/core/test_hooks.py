"""The hook contract: every hook documented, typed, tested; loading rules."""

from __future__ import annotations

import importlib.metadata
import inspect
import sys
import textwrap
from pathlib import Path

import attrs
import click
import pytest

from maxcore import InboundMessage, OutboundMessage, Veto, hookspecs
from maxcore.connectors import ConnectorContext
from maxcore.errors import PluginError
from maxcore.plugins import PluginSet
from maxcore.runtime import Runtime
from tests.conftest import call

HOOKS = sorted(
    name for name, fn in vars(hookspecs).items()
    if inspect.isfunction(fn) and hasattr(fn, "maxcore_spec")
)


def test_every_hook_is_documented_typed_and_tested():
    assert len(HOOKS) >= 11
    tests = {name for name in globals() if name.startswith("test_hook_")}
    for name in HOOKS:
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and len(fn.__doc__.strip()) > 40, f"{name} has no real docstring"
        signature = inspect.signature(fn)
        assert signature.return_annotation is not inspect.Signature.empty, f"{name}: no return type"
        for param in signature.parameters.values():
            assert param.annotation is not inspect.Parameter.empty, f"{name}({param.name}) untyped"
        assert f"test_hook_{name}" in tests, f"hook {name} has no test_hook_{name}"


CTX = ConnectorContext(tenant="acme", data_dir=Path("."))


def _single(kind_hook: str, connector_name: str) -> object:
    class Plugin:
        pass

    cls = type(f"C_{connector_name}", (), {"name": connector_name,
                                           "Config": attrs.frozen(type("Config", (), {}))})
    impl = hookspecs.hookimpl(lambda: [cls])
    impl.__name__ = kind_hook
    setattr(Plugin, kind_hook, staticmethod(impl))
    return Plugin()


def _check_register(hook: str, kind: str) -> None:
    plugins = PluginSet().load(extra=[("p", _single(hook, "shiny"))])
    assert plugins.connector_class(kind, "shiny").name == "shiny"
    assert plugins.infos["p"].connectors == {kind: ["shiny"]}


def test_hook_register_channels():
    _check_register("register_channels", "channel")


def test_hook_register_crms():
    _check_register("register_crms", "crm")


def test_hook_register_memories():
    _check_register("register_memories", "memory")


def test_hook_register_llms():
    _check_register("register_llms", "llm")


def test_hook_register_tools(plugins):
    assert {"upsert_lead", "search_leads", "create_record", "send_message", "remember"} <= set(
        plugins.tools
    )
    assert plugins.tools["upsert_lead"].plugin == "core_tools"
    assert plugins.tools["upsert_lead"].side_effect
    assert not plugins.tools["search_leads"].side_effect


def test_hook_register_commands():
    class Plugin:
        @hookspecs.hookimpl
        def register_commands(self, cli: click.Group) -> None:
            @cli.command()
            def hello() -> None:
                click.echo("hi")

    plugins = PluginSet().load(extra=[("p", Plugin())])
    group = click.Group()
    plugins.hooks.register_commands(group)
    assert "hello" in group.commands


def test_hook_register_routes(plugins):
    paths = {route.path for route in plugins.hooks.register_routes()}
    assert {"/chat", "/chat/{tenant}", "/chat/{tenant}/session"} <= paths


async def test_hook_message_received():
    class Enrich:
        @hookspecs.hookimpl
        def message_received(self, message, context):
            async def run():
                # tries to move the message to another tenant: must be ignored
                return attrs.evolve(message, text=message.text + " [enriched]", tenant="evil")
            return run()

    class Block:
        @hookspecs.hookimpl
        def message_received(self, message, context):
            return Veto("spam") if "buy now" in message.text else None

    plugins = PluginSet().load(extra=[("enrich", Enrich()), ("block", Block())])
    msg = InboundMessage(tenant="acme", channel="webchat", chat_id="c", text="hello")
    out = await plugins.hooks.message_received(msg, CTX)
    assert out.text == "hello [enriched]" and out.tenant == "acme"
    assert await plugins.hooks.message_received(attrs.evolve(msg, text="buy now"), CTX) == Veto("spam")


async def test_hook_tool_called(plugins, test_plugin):
    test_plugin.veto_tools.add("upsert_lead")
    assert await plugins.hooks.tool_called(call("search_leads", {}), {}, CTX) is None
    veto = await plugins.hooks.tool_called(call("upsert_lead", {}), {}, CTX)
    assert isinstance(veto, Veto) and "disabled by policy" in veto.reason


async def test_hook_reply_sent(plugins, test_plugin):
    test_plugin.reply_suffix = " — MAX"
    out = await plugins.hooks.reply_sent(OutboundMessage(chat_id="c", text="Bonjour"), CTX)
    assert out.text == "Bonjour — MAX" and out.chat_id == "c"


async def test_hook_extend_prompt(plugins, test_plugin):
    test_plugin.extra_prompt = "Horaires : 9h-18h"
    msg = InboundMessage(tenant="acme", channel="webchat", chat_id="c", text="hello")
    assert await plugins.hooks.extend_prompt(msg, CTX) == ["Horaires : 9h-18h"]


async def test_event_hooks_run_inside_the_pipeline(make_config, plugins, test_plugin, script):
    from maxcore import LLMReply

    test_plugin.veto_tools.add("upsert_lead")
    test_plugin.extra_prompt = "Horaires : 9h-18h"
    test_plugin.reply_suffix = " ✔"
    script(LLMReply(tool_calls=(call("upsert_lead", {"first_name": "A", "email": "a@b.fr"}, "c1"),)),
           LLMReply(text="Refusé"))
    runtime = Runtime.from_directory(make_config("acme", llm="scripted"), plugins=plugins)
    await runtime.open()
    try:
        result = await runtime.handle(
            InboundMessage(tenant="acme", channel="webchat", chat_id="c", text="lead")
        )
    finally:
        await runtime.close()
    assert result.reply.text == "Refusé ✔"
    kinds = [e[0] for e in test_plugin.events]
    assert kinds == ["message_received", "tool_called", "reply_sent"]
    from tests.conftest import REQUESTS

    assert "Horaires : 9h-18h" in REQUESTS["default"][0].system
    assert "refused: upsert_lead is disabled by policy" in REQUESTS["default"][1].messages[-1].content


# -- loading -------------------------------------------------------------------------
@pytest.fixture
def plugin_modules(tmp_path, monkeypatch):
    """Write plugin modules to an importable directory; return an entry-point maker."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name: str, source: str) -> importlib.metadata.EntryPoint:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        sys.modules.pop(name, None)
        return importlib.metadata.EntryPoint(name=name, value=name, group="maxcore")

    return make


GOOD = """
import attrs
from maxcore import hookimpl, ConnectorBase

class Thing(ConnectorBase):
    name = "{name}"
    @attrs.frozen
    class Config:
        pass

@hookimpl
def register_crms():
    return [Thing]
"""


def test_broken_plugin_is_reported_and_others_load(plugin_modules):
    eps = [
        plugin_modules("mc_broken", "raise ImportError('needs libfoo')\n"),
        plugin_modules("mc_good", GOOD.format(name="goodcrm")),
    ]
    plugins = PluginSet().load(entry_points=eps)
    assert plugins.infos["mc_broken"].error == "ImportError: needs libfoo"
    assert plugins.connector_class("crm", "goodcrm") is not None
    assert plugins.connector_class("crm", "sqlite") is not None  # built-ins still there


def test_allow_and_block_lists(plugin_modules, monkeypatch):
    eps = [plugin_modules("mc_one", GOOD.format(name="one")),
           plugin_modules("mc_two", GOOD.format(name="two"))]
    monkeypatch.setenv("MAXCORE_LOAD_PLUGINS", "mc_one")
    assert set(PluginSet().load(entry_points=eps).connectors["crm"]) == {"sqlite", "one"}
    monkeypatch.delenv("MAXCORE_LOAD_PLUGINS")
    monkeypatch.setenv("MAXCORE_BLOCK_PLUGINS", "mc_one")
    assert set(PluginSet().load(entry_points=eps).connectors["crm"]) == {"sqlite", "two"}


def test_misspelled_hook_fails_at_start(plugin_modules):
    ep = plugin_modules("mc_typo", """
        from maxcore import hookimpl

        @hookimpl
        def register_crm():
            return []
    """)
    with pytest.raises(PluginError, match="register_crm"):
        PluginSet().load(entry_points=[ep])


def test_two_connectors_with_one_name_is_an_error(plugin_modules):
    eps = [plugin_modules("mc_a", GOOD.format(name="samecrm")),
           plugin_modules("mc_b", GOOD.format(name="samecrm"))]
    with pytest.raises(PluginError, match="two crm connectors are named 'samecrm'"):
        PluginSet().load(entry_points=eps)


def test_connector_without_config_class_is_an_error(plugin_modules):
    ep = plugin_modules("mc_noconf", """
        from maxcore import hookimpl

        class Bare:
            name = "bare"

        @hookimpl
        def register_llms():
            return [Bare]
    """)
    with pytest.raises(PluginError, match="frozen attrs class named Config"):
        PluginSet().load(entry_points=[ep])


def test_core_never_calls_pm_hook_directly():
    root = Path(__file__).resolve().parents[2] / "maxcore"
    offenders = [
        str(path.relative_to(root)) for path in root.rglob("*.py")
        if "pm.hook." in path.read_text() and path.name != "plugins.py"
    ]
    assert offenders == []
