"""Shared fixtures: a scripted LLM and recording hooks, registered as a real plugin."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from maxcore import ConnectorBase, LLMReply, LLMRequest, ToolCall, hookimpl
from maxcore.plugins import PluginSet

REPO = Path(__file__).resolve().parents[1]
# A folder beside the repository (a sibling of its checkout) is exactly what a clone elsewhere
# lacks; the system and temporary folders are not the repository's business.
_PARENT = str(REPO.parent)
_TEMP = str(Path(tempfile.gettempdir()).resolve())
_OUTSIDE_READS: list[str] = []


def _outside_repository(path: str) -> bool:
    resolved = os.path.realpath(path)
    if _PARENT == "/" or not resolved.startswith(_PARENT + os.sep):
        return False
    if resolved == str(REPO) or resolved.startswith(str(REPO) + os.sep):
        return False
    # A clone made straight in /tmp: tmp_path and mkdtemp folders are siblings, not inputs.
    first = resolved[len(_PARENT) + 1:].split(os.sep, 1)[0]
    return not (_PARENT == _TEMP and (first.startswith(("tmp", "pytest-of-"))))


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], str | Path):
        if _outside_repository(os.fspath(args[0])):
            _OUTSIDE_READS.append(os.fspath(args[0]))


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def _nothing_read_outside_the_repository() -> Iterator[None]:
    """Fail a test that reads beside the repository: a clone in an empty folder must pass."""
    start = len(_OUTSIDE_READS)
    yield
    if len(_OUTSIDE_READS) > start:
        paths = sorted(set(_OUTSIDE_READS[start:]))
        pytest.fail(f"the test read outside the repository ({REPO}): {', '.join(paths[:5])}")


# script name -> list of replies (or callables request -> reply), consumed in order
SCRIPTS: dict[str, list[Any]] = {}
REQUESTS: dict[str, list[LLMRequest]] = {}


@attrs.frozen
class ScriptedConfig:
    script: str = "default"


class ScriptedLLM(ConnectorBase):
    """An LLM whose replies the test writes in advance; it records every request."""

    name = "scripted"
    Config = ScriptedConfig

    async def complete(self, request: LLMRequest) -> LLMReply:
        REQUESTS.setdefault(self.config.script, []).append(request)
        queue = SCRIPTS.get(self.config.script) or []
        if not queue:
            return LLMReply(text="(script exhausted)")
        item = queue.pop(0)
        return item(request) if callable(item) else item


class RecordingPlugin:
    """Registers ScriptedLLM and records every event hook call."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.veto_tools: set[str] = set()
        self.extra_prompt: str | None = None
        self.reply_suffix: str | None = None

    @hookimpl
    def register_llms(self) -> list[type]:
        return [ScriptedLLM]

    @hookimpl
    def message_received(self, message: Any, context: Any) -> Any:
        self.events.append(("message_received", message.text))

    @hookimpl
    def tool_called(self, call: Any, arguments: dict[str, Any], context: Any) -> Any:
        from maxcore import Veto

        self.events.append(("tool_called", call.name))
        if call.name in self.veto_tools:
            return Veto(f"{call.name} is disabled by policy")
        return None

    @hookimpl
    def reply_sent(self, message: Any, context: Any) -> Any:
        self.events.append(("reply_sent", message.text))
        if self.reply_suffix:
            return attrs.evolve(message, text=message.text + self.reply_suffix)
        return None

    @hookimpl
    def extend_prompt(self, message: Any, context: Any) -> Any:
        async def extra() -> str | None:
            return self.extra_prompt

        return extra()


def call(name: str, arguments: Any, call_id: str | None = None) -> ToolCall:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(id=call_id or f"call_{name}_{len(raw)}", name=name, arguments=raw)


@pytest.fixture
def test_plugin() -> RecordingPlugin:
    return RecordingPlugin()


@pytest.fixture
def plugins(test_plugin: RecordingPlugin) -> PluginSet:
    SCRIPTS.clear()
    REQUESTS.clear()
    return PluginSet().load(extra=[("test_support", test_plugin)])


@pytest.fixture
def script() -> Callable[..., list[Any]]:
    def set_script(*replies: Any, name: str = "default") -> list[Any]:
        SCRIPTS[name] = list(replies)
        return SCRIPTS[name]

    return set_script


DEMO_TENANT = """
tenant: {tenant}
channel: {{type: webchat}}
crm: {{type: sqlite}}
memory: {{type: sqlite}}
llm: {{type: {llm}}}
assistant:
  language: {language}
  lead_defaults: {{status: New, source: Web Site}}
"""


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config dir with the given tenants (ids) using webchat + sqlite."""

    def make(*tenants: str, llm: str = "offline", language: str = "fr", extra: str = "",
             main: str = "") -> Path:
        from maxcore.testing.harness import write_config

        return write_config(
            tmp_path / "config",
            {t: DEMO_TENANT.format(tenant=t, llm=llm, language=language) + extra for t in tenants},
            main=main,
            data_dir=tmp_path / "data",
        )

    return make
