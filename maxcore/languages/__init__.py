"""Languages as data: one pack of texts per language code.

A pack is a YAML file beside this module (``fr.yaml``, ``en.yaml``): the system prompt,
the labels used to render a message for the model, the fallback reply, the console
prompt. A tenant speaks any language that has a pack (``assistant.language``) and may
override any of its texts (``assistant.texts``); the core holds no text of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import attrs
import yaml

PACKS_DIR = Path(__file__).parent


class UnknownLanguageError(LookupError):
    pass


@attrs.frozen
class LanguagePack:
    """The texts of one language, by key; ``text(key, **values)`` fills ``{placeholders}``."""

    code: str
    name: str
    texts: Mapping[str, str]

    def text(self, key: str, **values: str) -> str:
        text = self.texts[key]
        # Plain replacement rather than str.format: a tenant's text may contain braces.
        for name, value in values.items():
            text = text.replace("{" + name + "}", value)
        return text

    def with_overrides(self, overrides: Mapping[str, str]) -> LanguagePack:
        """This pack with a tenant's texts in place of its own (unknown keys are refused)."""
        if not overrides:
            return self
        unknown = sorted(set(overrides) - set(self.texts))
        if unknown:
            raise KeyError(f"unknown text {unknown[0]!r}; expected one of: {', '.join(sorted(self.texts))}")
        return attrs.evolve(self, texts=MappingProxyType({**self.texts, **overrides}))


def _read_pack(path: Path) -> LanguagePack:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    texts = {str(key): str(value) for key, value in data["texts"].items()}
    return LanguagePack(code=str(data["code"]), name=str(data["name"]), texts=MappingProxyType(texts))


@functools.cache
def _packs() -> Mapping[str, LanguagePack]:
    packs = {pack.code: pack for pack in map(_read_pack, sorted(PACKS_DIR.glob("*.yaml")))}
    return MappingProxyType(packs)


def available_languages() -> tuple[str, ...]:
    """The codes a tenant may choose: one per shipped pack."""
    return tuple(sorted(_packs()))


def language_pack(code: str, overrides: Mapping[str, str] | None = None) -> LanguagePack:
    try:
        pack = _packs()[code]
    except KeyError:
        raise UnknownLanguageError(
            f"no language pack {code!r}; available: {', '.join(available_languages())}") from None
    return pack.with_overrides(overrides or {})
