"""A new plugin distribution generated from templates (``maxcore new-plugin``).

The templates are package data (``maxcore/builtin/plugin_templates``): ``common/``
holds what every kind shares (``pyproject.toml`` with the entry point, the package's
``__init__`` and ``plugin`` modules, a README), ``<kind>/`` the connector and its tests.
Paths and contents use ``{{token}}`` placeholders; a template naming an unknown token
is a bug of the template, reported as such rather than written out half-filled.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import attrs

from . import __version__

TEMPLATE_SUFFIX = ".tmpl"
MAX_NAME_LENGTH = 40
# A distribution name that is also a module name once "-" becomes "_": lower-case
# letters and digits, words joined by single "-" or "_".
_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
_TOKEN_RE = re.compile(r"\{\{(\w+)\}\}")
# Templates whose real name a package-data glob would skip (hidden files).
_RENAMES = {"gitignore": ".gitignore"}


@attrs.frozen
class Kind:
    hook: str         # the register_* hook returning the class
    suffix: str       # of the class name
    module: str       # the connector's module in the package
    protocol: str     # in maxcore.connectors


KINDS: dict[str, Kind] = {
    "crm": Kind("register_crms", "CRM", "crm", "CRM"),
    "channel": Kind("register_channels", "Channel", "channel", "Channel"),
    "memory": Kind("register_memories", "Memory", "memory", "Memory"),
    "llm": Kind("register_llms", "LLM", "llm", "LLM"),
}


class ScaffoldError(ValueError):
    """A name or a target directory that cannot be used; the text says why."""


@attrs.frozen
class PluginNames:
    """Every name the generated plugin uses, derived from the one the user gave."""

    name: str           # connector name: the tenant YAML ``type:`` and the entry point name
    kind: str
    distribution: str   # maxcore-<name>
    package: str        # maxcore_<name>
    class_name: str     # <Name><Suffix>

    @property
    def tokens(self) -> dict[str, str]:
        kind = KINDS[self.kind]
        return {
            "name": self.name, "kind": self.kind, "distribution": self.distribution,
            "package": self.package, "class": self.class_name, "hook": kind.hook,
            "module": kind.module, "protocol": kind.protocol, "maxcore_version": __version__,
        }


def plugin_names(raw: str, kind: str) -> PluginNames:
    """The names of plugin ``raw`` of ``kind``, or a ScaffoldError saying what is wrong."""
    if kind not in KINDS:
        raise ScaffoldError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    name = raw.strip()
    for prefix in ("maxcore-", "maxcore_"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if not _NAME_RE.match(name):
        raise ScaffoldError(
            f"{raw!r} is not a usable plugin name: lower-case letters and digits, starting with a "
            "letter, words joined by '-' or '_' (for example: pipebook, pipe-book)"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ScaffoldError(f"{raw!r} is longer than {MAX_NAME_LENGTH} characters")
    words = re.split(r"[-_]", name)
    return PluginNames(
        name="_".join(words), kind=kind, distribution="maxcore-" + "-".join(words),
        package="maxcore_" + "_".join(words),
        class_name="".join(w.capitalize() for w in words) + KINDS[kind].suffix,
    )


def _templates() -> Traversable:
    return resources.files("maxcore.builtin") / "plugin_templates"


def _walk(root: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    found: list[tuple[str, Traversable]] = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            found.extend(_walk(entry, f"{prefix}{entry.name}/"))
        elif entry.name.endswith(TEMPLATE_SUFFIX):
            found.append((prefix + entry.name[: -len(TEMPLATE_SUFFIX)], entry))
    return found


def fill(template: str, tokens: dict[str, str], where: str) -> str:
    def value(match: re.Match[str]) -> str:
        token = match.group(1)
        if token not in tokens:
            raise LookupError(f"template {where} uses an unknown token {{{{{token}}}}}")
        return tokens[token]

    return _TOKEN_RE.sub(value, template)


def render(names: PluginNames) -> dict[str, str]:
    """Relative path -> content of every file of the new distribution."""
    tokens = names.tokens
    files: dict[str, str] = {}
    root = _templates()
    for folder in ("common", names.kind):
        for relative, entry in _walk(root / folder):
            path = fill(_RENAMES.get(relative, relative), tokens, f"{folder}/{relative}")
            files[path] = fill(entry.read_text(encoding="utf-8"), tokens, f"{folder}/{relative}")
    return files


def write_plugin(names: PluginNames, parent: Path) -> Path:
    """Write the distribution into ``parent/<distribution>``, which must not exist."""
    target = parent / names.distribution
    if target.exists():
        raise ScaffoldError(f"{target} already exists: nothing was written (choose another --dir or name)")
    files = render(names)
    parent.mkdir(parents=True, exist_ok=True)
    target.mkdir()
    for relative, content in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return target
