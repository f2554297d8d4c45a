"""The hook contract: every hook documented, typed, tested; loading rules."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import click
import pytest

from maxcore import InboundMessage, OutboundMessage, Veto, hookspecs
from maxcore.connectors import ConnectorContext
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


BASES = {
    "register_channels": "maxcore.builtin.webchat:WebchatChannel",
    "register_crms": "maxcore.builtin.sqlite_crm:SqliteCRM",
    "register_memories": "maxcore.builtin.sqlite_memory:SqliteMemory",
    "register_llms": "maxcore.builtin.offline_llm:OfflineLLM",
}


def _base(kind_hook: str) -> type:
    module, name = BASES[kind_hook].split(":")
    return getattr(importlib.import_module(module), name)


def _single(kind_hook: str, connector_name: str) -> object:
    """A plugin registering one connector: a built-in class under another name."""

    class Plugin:
        pass

    cls = type(f"C_{connector_name}", (_base(kind_hook),), {"name": connector_name})
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
from maxcore import hookimpl
from maxcore.builtin.sqlite_crm import SqliteCRM

class Thing(SqliteCRM):
    name = "{name}"

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
    assert plugins.infos["mc_broken"].error == "cannot be imported: ImportError: needs libfoo"
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


def test_misspelled_hook_disables_that_plugin_only(plugin_modules):
    eps = [
        plugin_modules("mc_typo", """
            from maxcore import hookimpl

            @hookimpl
            def register_crm():
                return []
        """),
        plugin_modules("mc_fine", GOOD.format(name="finecrm")),
    ]
    plugins = PluginSet().load(entry_points=eps)
    assert plugins.infos["mc_typo"].error == (
        "implements an unknown hook 'register_crm' (did you mean register_crms?)"
    )
    assert plugins.pm.get_plugin("mc_typo") is None
    assert plugins.connector_class("crm", "finecrm") is not None
    assert plugins.connector_class("crm", "sqlite") is not None
    plugins.pm.check_pending()  # what is left registered is valid


def test_hook_implementation_pluggy_refuses_disables_that_plugin(plugin_modules):
    ep = plugin_modules("mc_badargs", """
        from maxcore import hookimpl

        @hookimpl
        def message_received(msg, context):
            return None
    """)
    plugins = PluginSet().load(entry_points=[ep])
    error = plugins.infos["mc_badargs"].error
    assert error.startswith("has an invalid hook implementation") and "'msg'" in error
    assert plugins.connector_class("llm", "offline") is not None


def test_two_connectors_with_one_name_disable_the_second_plugin(plugin_modules):
    eps = [plugin_modules("mc_a", GOOD.format(name="samecrm")),
           plugin_modules("mc_b", GOOD.format(name="samecrm"))]
    plugins = PluginSet().load(entry_points=eps)
    assert plugins.infos["mc_a"].error is None
    assert plugins.infos["mc_b"].error == (
        "crm connector 'samecrm' is already provided by plugin 'mc_a' "
        "(block one with MAXCORE_BLOCK_PLUGINS)"
    )
    assert plugins.connector_class("crm", "samecrm").__maxcore_plugin__ == "mc_a"


def test_connector_without_config_class_is_reported(plugin_modules):
    ep = plugin_modules("mc_noconf", """
        from maxcore import hookimpl
        from maxcore.builtin.offline_llm import OfflineLLM

        class Bare(OfflineLLM):
            name = "bare"
            Config = None

        @hookimpl
        def register_llms():
            return [Bare]
    """)
    plugins = PluginSet().load(entry_points=[ep])
    assert plugins.infos["mc_noconf"].error == (
        "llm connector 'bare' (Bare) needs a frozen attrs class named Config"
    )
    assert plugins.connector_class("llm", "bare") is None


def test_connector_not_satisfying_its_protocol_is_reported(plugin_modules):
    ep = plugin_modules("mc_partial", """
        import attrs
        from maxcore import ConnectorBase, hookimpl
        from maxcore.builtin.offline_llm import OfflineLLM

        class NoComplete(ConnectorBase):
            name = "nocomplete"

        class SyncComplete(OfflineLLM):
            name = "synccomplete"
            def complete(self, request):
                return None

        @hookimpl
        def register_llms():
            return [NoComplete, SyncComplete]

        @hookimpl
        def register_tools():
            return []
    """)
    plugins = PluginSet().load(entry_points=[ep])
    assert plugins.infos["mc_partial"].error == (
        "llm connector 'nocomplete' (NoComplete) lacks complete() of the LLM protocol; "
        "llm connector 'synccomplete' (SyncComplete): complete() must be `async def`"
    )
    assert plugins.connector_class("llm", "synccomplete") is None  # the plugin is out whole


def test_register_hook_that_raises_is_reported(plugin_modules):
    ep = plugin_modules("mc_raises", """
        from maxcore import hookimpl

        @hookimpl
        def register_tools():
            raise RuntimeError("no API key configured")
    """)
    plugins = PluginSet().load(entry_points=[ep])
    assert plugins.infos["mc_raises"].error == (
        "a register hook raised RuntimeError: no API key configured"
    )
    assert "upsert_lead" in plugins.tools


# -- a real distribution on sys.path -------------------------------------------------------
TYPO_PLUGIN = '''
from maxcore import hookimpl
from maxcore.builtin.sqlite_crm import SqliteCRM


class TypoCRM(SqliteCRM):
    name = "typocrm"


@hookimpl
def register_crm():
    return [TypoCRM]
'''


@pytest.fixture
def installed_typo_plugin(tmp_path, monkeypatch):
    """A distribution as pip installs it (package + dist-info with an entry point),
    in a directory put on sys.path and PYTHONPATH."""
    site = tmp_path / "site"
    (site / "maxcore_typo").mkdir(parents=True)
    (site / "maxcore_typo" / "__init__.py").write_text(TYPO_PLUGIN)
    info = site / "maxcore_typo-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: maxcore-typo\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text("[maxcore]\ntypo = maxcore_typo\n")
    (info / "RECORD").write_text("")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    sys.modules.pop("maxcore_typo", None)
    importlib.invalidate_caches()
    yield site
    sys.modules.pop("maxcore_typo", None)


def test_installed_plugin_with_a_typo_is_reported_with_its_distribution(installed_typo_plugin):
    plugins = PluginSet().load()
    info = plugins.infos["typo"]
    assert (info.distribution, info.version, info.module) == ("maxcore-typo", "0.3.1", "maxcore_typo")
    assert info.error == "implements an unknown hook 'register_crm' (did you mean register_crms?)"
    assert info.origin == "distribution maxcore-typo 0.3.1, entry point typo = maxcore_typo"
    assert plugins.connector_class("crm", "sqlite") is not None


@pytest.mark.slow
def test_every_command_keeps_working_with_a_broken_plugin(installed_typo_plugin, tmp_path):
    from maxcore.testing.harness import write_config

    config = write_config(tmp_path / "config", {"acme": "tenant: acme\n"})
    maxcore = [sys.executable, "-m", "maxcore"]
    listed = subprocess.run([*maxcore, "plugins", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert ("✗ typo 0.3.1 (distribution maxcore-typo 0.3.1, entry point typo = maxcore_typo): "
            "implements an unknown hook 'register_crm' (did you mean register_crms?)") in listed.stdout
    assert "✓ sqlite" in listed.stdout
    checked = subprocess.run([*maxcore, "check", "--config", str(config)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "plugin typo (distribution maxcore-typo 0.3.1" in checked.stderr
    (config / "tenants" / "acme.yaml").write_text("tenant: acme\ncrm: {type: typocrm}\n")
    checked = subprocess.run([*maxcore, "check", "--config", str(config)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 1
    assert "unknown crm type 'typocrm'" in checked.stdout and "plugins not loaded: typo" in checked.stdout


# -- pluggy semantics through the facade --------------------------------------------------
MSG = InboundMessage(tenant="acme", channel="webchat", chat_id="c", text="hello")


async def test_an_implementation_may_take_a_subset_of_the_arguments():
    class OnlyMessage:
        @hookspecs.hookimpl
        def message_received(self, message):
            return attrs.evolve(message, text=message.text.upper())

        @hookspecs.hookimpl
        def tool_called(self, call):
            return Veto("no") if call.name == "upsert_lead" else None

        @hookspecs.hookimpl
        def extend_prompt(self):
            return "Be brief."

    plugins = PluginSet().load(extra=[("subset", OnlyMessage())])
    assert (await plugins.hooks.message_received(MSG, CTX)).text == "HELLO"
    assert await plugins.hooks.tool_called(call("upsert_lead", {}), {}, CTX) == Veto("no")
    assert await plugins.hooks.extend_prompt(MSG, CTX) == ["Be brief."]


async def test_wrapper_implementations_run_around_the_others():
    seen: list[Any] = []

    class Inner:
        @hookspecs.hookimpl
        def message_received(self, message):
            async def later():
                return attrs.evolve(message, text=message.text + " (inner)")
            return later()

    class Wrapper:
        @hookspecs.hookimpl(wrapper=True)
        def message_received(self, message, context):
            results = yield  # the others' raw results: awaitables are not awaited yet
            seen.append([inspect.isawaitable(r) for r in results])
            if "spam" in message.text:
                return [*results, Veto("wrapped veto")]

            async def shout(result):
                value = await result if inspect.isawaitable(result) else result
                return attrs.evolve(value, text=value.text.upper()) if value else value

            return [shout(r) for r in results]

    plugins = PluginSet().load(extra=[("inner", Inner()), ("wrapper", Wrapper())])
    out = await plugins.hooks.message_received(MSG, CTX)
    assert out.text == "HELLO (INNER)" and seen == [[True]]
    assert await plugins.hooks.message_received(attrs.evolve(MSG, text="spam"), CTX) == Veto("wrapped veto")


async def test_old_style_hookwrapper_sees_the_outcome():
    class Old:
        @hookspecs.hookimpl(hookwrapper=True)
        def extend_prompt(self, message, context):
            outcome = yield
            outcome.force_result([*outcome.get_result(), "added by a hookwrapper"])

    class Plain:
        @hookspecs.hookimpl
        def extend_prompt(self):
            return "plain"

    plugins = PluginSet().load(extra=[("plain", Plain()), ("old", Old())])
    assert await plugins.hooks.extend_prompt(MSG, CTX) == ["plain", "added by a hookwrapper"]


async def test_replacements_merge_and_the_first_called_wins_a_conflict():
    class Sender:
        @hookspecs.hookimpl
        def message_received(self, message):
            return attrs.evolve(message, sender_name="Jean", text="from sender")

    class Early:
        @hookspecs.hookimpl(tryfirst=True)
        def message_received(self, message):
            return attrs.evolve(message, text="from early", chat_id="other-chat")

    plugins = PluginSet().load(extra=[("early", Early()), ("sender", Sender())])
    out = await plugins.hooks.message_received(MSG, CTX)
    assert (out.text, out.sender_name, out.chat_id) == ("from early", "Jean", "c")


async def test_a_failing_awaitable_propagates_and_the_rest_are_closed():
    pending: list[Any] = []

    class Fails:
        @hookspecs.hookimpl(tryfirst=True)
        def extend_prompt(self):
            async def boom():
                raise ValueError("plugin bug")
            return boom()

    class After:
        @hookspecs.hookimpl
        def extend_prompt(self):
            async def never():
                return "x"
            pending.append(never())
            return pending[-1]

    plugins = PluginSet().load(extra=[("after", After()), ("fails", Fails())])
    with pytest.raises(ValueError, match="plugin bug"):
        await plugins.hooks.extend_prompt(MSG, CTX)
    assert inspect.getcoroutinestate(pending[0]) == inspect.CORO_CLOSED  # no "never awaited"


def test_tracing_prints_each_hook_call(monkeypatch, capsys):
    monkeypatch.setenv("MAXCORE_TRACE_PLUGINS", "1")
    plugins = PluginSet().load()
    capsys.readouterr()
    plugins.hooks.register_routes()
    err = capsys.readouterr().err
    assert "register_routes [hook]" in err and "finish register_routes -->" in err


def test_core_never_calls_pm_hook_directly():
    root = Path(__file__).resolve().parents[2] / "maxcore"
    offenders = [
        str(path.relative_to(root)) for path in root.rglob("*.py")
        if "pm.hook." in path.read_text() and path.name != "plugin_hooks.py"
    ]
    assert offenders == []
