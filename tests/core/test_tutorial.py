"""docs/plugins.md's tutorial works as written: its files are built into a distribution,
pip-installed, and every command it shows is run, its output compared with the page's.

Files are the page's code blocks with a ``title="path"``; commands are the ``$`` lines of
the tutorial's ``console`` blocks, each followed by lines its output must contain (a
line ending in ``…`` is a prefix). The emulator the page starts on port 8099 is started
on a port of its own, and its address replaces 8099 in what follows.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent
SHOWN_URL = "http://127.0.0.1:8099"
_BLOCK_RE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@attrs.frozen
class Command:
    line: str
    expected: tuple[str, ...]


def section(title: str) -> str:
    start = PAGE.index(f"\n## {title}\n")
    end = PAGE.find("\n## ", start + 1)
    return PAGE[start: end if end >= 0 else None]


def files() -> dict[str, str]:
    found = {}
    for match in _BLOCK_RE.finditer(PAGE):
        title = re.search(r'title="([^"]+)"', match.group(2))
        if title:
            found[title.group(1)] = match.group(3)
    return found


def blocks(text: str, language: str) -> list[str]:
    return [m.group(3) for m in _BLOCK_RE.finditer(text) if m.group(1) == language]


def commands() -> list[Command]:
    out: list[Command] = []
    for block in blocks(section("Write a CRM plugin in 15 minutes"), "console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append(Command(line[2:], ()))
            elif line.strip():
                out[-1] = attrs.evolve(out[-1], expected=(*out[-1].expected, line.rstrip()))
    return out


def contains(output: str, expected: tuple[str, ...]) -> list[str]:
    """The expected lines missing from ``output``."""
    lines = [line.rstrip() for line in output.splitlines()]
    missing = []
    for want in expected:
        if want.endswith("…"):
            ok = any(line.startswith(want[:-1]) for line in lines)
        else:
            ok = want in lines
        if not ok:
            missing.append(want)
    return missing


def argv(line: str) -> list[str]:
    words = shlex.split(line)
    program = {"pip": [sys.executable, "-m", "pip"], "python": [sys.executable],
               "maxcore": [sys.executable, "-m", "maxcore"],
               "pytest": [str(BIN / "pytest"), "-p", "no:cacheprovider"]}[words[0]]
    return [*program, *words[1:]]


def test_the_page_holds_a_whole_plugin_and_its_commands() -> None:
    assert {"maxcore-leadbook/pyproject.toml", "maxcore-leadbook/maxcore_leadbook/crm.py",
            "maxcore-leadbook/maxcore_leadbook/plugin.py", "maxcore-leadbook/tests/test_crm.py",
            "config/tenants/acme.yaml"} <= set(files())
    run = [c.line.split()[0] + " " + c.line.split()[1] for c in commands()]
    assert {"pip install", "pytest -q", "maxcore plugins", "maxcore check",
            "maxcore chat", "maxcore leads"} <= set(run)


def test_the_pages_code_is_lint_clean(tmp_path: Path) -> None:
    for path, text in files().items():
        if path.endswith(".py"):
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text(text)
    lint = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "--line-length", "110",
                           "--select", "E,F,W,B,UP,RUF", "."], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("tutorial")
    for path, text in files().items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    try:
        yield root
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", "maxcore-leadbook"],
                       capture_output=True, timeout=120)


@pytest.mark.slow
def test_every_command_of_the_tutorial_works_as_shown(tutorial: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAXCORE_")}
    background: list[subprocess.Popen[str]] = []
    url = SHOWN_URL
    try:
        for command in commands():
            line = command.line.replace(SHOWN_URL, url)
            expected = tuple(e.replace(SHOWN_URL, url) for e in command.expected)
            if line.startswith("export "):
                env.update(word.split("=", 1) for word in shlex.split(line)[1:])
                continue
            if line.endswith("&"):
                process = subprocess.Popen(argv(line[:-1].replace("--port 8099", "--port 0")),
                                           cwd=tutorial, env=env, stdout=subprocess.PIPE, text=True)
                background.append(process)
                assert process.stdout is not None
                first = process.stdout.readline().rstrip()
                found = re.search(r"http://127\.0\.0\.1:\d+", first)
                assert found, first
                url = found.group(0)
                expected = tuple(e.replace(SHOWN_URL, url) for e in command.expected)
                assert contains(first, expected) == [], (first, expected)
                continue
            done = subprocess.run(argv(line), cwd=tutorial, env=env, capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, (command.line, done.stdout, done.stderr)
            assert contains(done.stdout, expected) == [], (command.line, done.stdout)
        check_what_breaks(tutorial, env)
    finally:
        for process in background:
            process.terminate()
            process.wait(timeout=10)


def check_what_breaks(root: Path, env: dict[str, str]) -> None:
    """The messages "When it breaks" shows are the ones maxcore prints."""
    shown = blocks(section("When it breaks"), "text")
    # A misspelt hook, in a copy of the package found before the installed one.
    shadow = root / "shadow"
    shutil.copytree(root / "maxcore-leadbook" / "maxcore_leadbook", shadow / "maxcore_leadbook")
    plugin = shadow / "maxcore_leadbook" / "plugin.py"
    plugin.write_text(plugin.read_text().replace("def register_crms", "def register_crm"))
    listed = subprocess.run(argv("maxcore plugins"), cwd=root, env={**env, "PYTHONPATH": str(shadow)},
                            capture_output=True, text=True, timeout=60)
    assert contains(listed.stdout, (shown[0].strip(),)) == [], listed.stdout
    # Configuration errors: every one, with its key path.
    bad = root / "config-bad"
    shutil.copytree(root / "config", bad)
    tenant = bad / "tenants" / "acme.yaml"
    tenant.write_text(tenant.read_text().replace("  token: ${LEADBOOK_TOKEN}\n",
                                                 "  tokne: ${LEADBOOK_TOKEN}\n  timeout_s: ten\n"))
    checked = subprocess.run(argv("maxcore check --config config-bad"), cwd=root, env=env,
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 1
    expected = tuple(line.replace("in config", "in config-bad") for line in shown[1].splitlines())
    assert contains(checked.stdout, expected) == [], checked.stdout
    traced = subprocess.run(argv("maxcore check --config config"), cwd=root,
                            env={**env, "MAXCORE_TRACE_PLUGINS": "1"}, capture_output=True, text=True,
                            timeout=60)
    assert contains(traced.stderr, tuple(shown[2].splitlines())) == [], traced.stderr[-2000:]
