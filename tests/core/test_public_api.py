"""Plugins import only the modules docs/plugins.md lists as maxcore's public API.

The plugins shipped under plugins/ and examples/, and the ones ``maxcore new-plugin``
generates, are read for their ``maxcore`` imports (lazy ones inside functions
included); a module missing from the page's "Public API" list, or a private name,
fails here, so the list stays true and plugins stay off the core's internals.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from maxcore.scaffold import KINDS, plugin_names, render

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


def documented() -> set[str]:
    """The modules of the page's "Public API" bullet list (``maxcore.x.*``: its submodules)."""
    start = PAGE.index("\n## Public API\n")
    end = PAGE.find("\n## ", start + 1)
    text = PAGE[start: end if end >= 0 else None]
    return set(re.findall(r"^- `(maxcore[\w.]*)`", text, re.MULTILINE)) | {
        f"{m}.*" for m in re.findall(r"its submodules `(maxcore[\w.]*)\.\*`", text)}


def allowed(module: str, public: set[str]) -> bool:
    return module in public or any(
        entry.endswith(".*") and module.startswith(entry[:-1]) for entry in public)


def maxcore_imports(source: str) -> Iterator[tuple[str, str | None, int]]:
    """(module, imported name or None, line) for every import of a maxcore module."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "maxcore" or alias.name.startswith("maxcore."):
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "maxcore" or node.module.startswith("maxcore.")):
            for alias in node.names:
                yield node.module, alias.name, node.lineno


def plugin_sources() -> Iterator[tuple[str, str]]:
    for folder in ("plugins", "examples"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "build" in parts or any(part.endswith(".egg-info") for part in parts):
                continue
            yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")
    for kind in KINDS:
        for relative, text in render(plugin_names("apicheck", kind)).items():
            if relative.endswith(".py"):
                yield f"new-plugin --kind {kind}: {relative}", text


def test_the_page_lists_the_public_modules() -> None:
    public = documented()
    assert {"maxcore", "maxcore.connectors", "maxcore.types", "maxcore.vocabulary", "maxcore.errors",
            "maxcore.config", "maxcore.testing", "maxcore.testing.*"} <= public
    for module in sorted(m for m in public if not m.endswith(".*")):
        importlib.import_module(module)


def test_plugins_import_only_the_public_api() -> None:
    public = documented()
    sources = list(plugin_sources())
    assert len(sources) > 20  # the shipped plugins, the example and the templates were read
    offending = [
        f"{where}:{line}: {module}{'.' + name if name else ''}"
        for where, text in sources
        for module, name, line in maxcore_imports(text)
        if not allowed(module, public) or (name is not None and name.startswith("_"))
    ]
    assert offending == [], "imports outside docs/plugins.md's Public API list:\n" + "\n".join(offending)


@pytest.mark.parametrize("module, public", [
    ("maxcore.runtime", False), ("maxcore.testing.espocrm", True), ("maxcore.testingx", False),
    ("maxcore.config.structure", False), ("maxcore.connectors", True),
])
def test_submodule_wildcards_are_exact(module: str, public: bool) -> None:
    assert allowed(module, documented()) is public
