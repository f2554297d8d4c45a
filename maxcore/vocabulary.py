"""A CRM's own lead vocabulary: the fields it declares and the values it allows.

The core knows only a lead's identity (names, phone, e-mail, company). Everything
else — a status, a source, an industry, a lifecycle stage — is declared by the CRM
connector as a :class:`LeadSchema`: field names as the CRM spells them, their type,
and for enumerations the allowed values with a label and synonyms per language. The
``upsert_lead`` tool's JSON schema is generated from it, and what the model writes
("btp", "nouveau") is mapped onto the CRM's exact values here, or refused with the
list of allowed values so the model can correct itself.
"""

from __future__ import annotations

import enum
import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from .errors import ToolError

# What every CRM maps, whatever it calls them; a declaration may not reuse these names.
IDENTITY_FIELDS = ("first_name", "last_name", "phone", "email", "company")
# Tool arguments that are not lead fields.
RESERVED_NAMES = frozenset({*IDENTITY_FIELDS, "id", "lead_id", "name"})
# The language key of synonyms that apply whatever the conversation's language
# (those a tenant adds in its YAML).
ANY_LANGUAGE = "*"


# Ligatures NFKD leaves whole ("œuvre" is written "oeuvre" too).
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae"})


def fold(text: str) -> str:
    """Lower-case, accents removed, spaces squeezed: the key values are compared by."""
    if len(text) <= _FOLD_CACHED_CHARS:
        return _fold_cached(text)
    return _fold(text)


# Vocabulary words and short field values come back at every message; long texts do not.
_FOLD_CACHED_CHARS = 80


@functools.lru_cache(maxsize=8192)
def _fold_cached(text: str) -> str:
    return _fold(text)


def _fold(text: str) -> str:
    if text.isascii():  # nothing to decompose: casefold and squeeze only
        return _SPACES.sub(" ", text.casefold()).strip()
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACES.sub(" ", stripped.casefold()).strip()


_SPACES = re.compile(r"[\s_]+")


class FieldType(enum.StrEnum):
    TEXT = "text"
    ENUM = "enum"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"


def _synonym_map(value: Mapping[str, Iterable[str]] | None) -> dict[str, tuple[str, ...]]:
    return {language: tuple(words) for language, words in (value or {}).items()}


@attrs.frozen
class Choice:
    """One allowed value of an enumeration: what the CRM stores, what people say."""

    value: str
    label: str = ""
    synonyms: dict[str, tuple[str, ...]] = attrs.field(factory=dict, converter=_synonym_map)

    @property
    def display(self) -> str:
        return self.label or self.value

    def words(self) -> set[str]:
        """Every folded spelling that means this value."""
        spellings = {fold(self.value), fold(self.display)}
        for words in self.synonyms.values():
            spellings.update(fold(word) for word in words)
        spellings.discard("")
        return spellings


_JSON_TYPES = {
    FieldType.TEXT: "string", FieldType.ENUM: "string", FieldType.NUMBER: "number",
    FieldType.BOOLEAN: "boolean", FieldType.DATE: "string",
}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@attrs.frozen
class LeadField:
    """A lead field a CRM declares. ``required`` applies when a lead is created."""

    name: str
    type: FieldType = attrs.field(default=FieldType.TEXT, converter=FieldType)
    label: str = ""
    description: str = ""
    required: bool = False
    choices: tuple[Choice, ...] = ()
    max_length: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.name in RESERVED_NAMES:
            raise ValueError(f"lead field {self.name!r} is reserved for the core's identity fields")
        if (self.type is FieldType.ENUM) != bool(self.choices):
            raise ValueError(f"lead field {self.name!r}: choices go with type enum, and only with it")

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(choice.value for choice in self.choices)

    def allowed(self) -> str:
        return ", ".join(self.values)

    def normalise(self, value: Any) -> Any:
        """The CRM's form of ``value``, or a ToolError saying what is allowed."""
        if value is None:
            return None
        if self.type is FieldType.ENUM:
            wanted = fold(str(value))
            for choice in self.choices:
                if fold(choice.value) == wanted:
                    return choice.value
            for choice in self.choices:
                if wanted in choice.words():
                    return choice.value
            raise ToolError(f"{self.name} {value!r} is not allowed; allowed values: {self.allowed()}")
        if self.type is FieldType.NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float):
                try:
                    return float(str(value).replace(",", ".").strip())
                except ValueError:
                    raise ToolError(f"{self.name} {value!r} is not a number") from None
            return value
        if self.type is FieldType.BOOLEAN:
            if isinstance(value, bool):
                return value
            raise ToolError(f"{self.name} {value!r} is not true or false")
        text = str(value).strip()
        if self.type is FieldType.DATE and text and not _DATE_RE.match(text):
            raise ToolError(f"{self.name} {value!r} is not a date (YYYY-MM-DD)")
        if self.max_length is not None and len(text) > self.max_length:
            raise ToolError(f"{self.name} is longer than {self.max_length} characters")
        return text or None

    def json_schema(self, *, shown: bool) -> dict[str, Any]:
        """The property in the tool schema: ``shown`` to the model, or as checked.

        The model is shown the exact values; arguments are checked without ``enum``
        because a synonym ("btp") is accepted and mapped by :meth:`normalise`.
        """
        prop: dict[str, Any] = {"type": _JSON_TYPES[self.type]}
        words = [self.label or self.name]
        if self.description:
            words.append(self.description)
        if self.type is FieldType.DATE:
            words.append("format YYYY-MM-DD")
        if self.choices:
            if shown:
                prop["enum"] = list(self.values)
            if any(c.label and c.label != c.value for c in self.choices):
                words.append("values: " + ", ".join(f"{c.value} ({c.label})" for c in self.choices))
        prop["description"] = ". ".join(words)
        if shown and self.choices:
            synonyms = {c.value: sorted(set().union(*c.synonyms.values())) for c in self.choices
                        if c.synonyms and any(c.synonyms.values())}
            if synonyms:
                # An annotation (ignored by validators): words people use for each value.
                prop["x-synonyms"] = synonyms
        if self.max_length is not None and self.type is FieldType.TEXT:
            prop["maxLength"] = self.max_length
        return prop


def _field_tuple(value: Iterable[LeadField]) -> tuple[LeadField, ...]:
    fields = tuple(value)
    names = [f.name for f in fields]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"lead fields declared twice: {', '.join(duplicates)}")
    return fields


@attrs.frozen
class LeadSchema:
    """Every lead field a CRM declares, beyond the core's identity fields."""

    fields: tuple[LeadField, ...] = attrs.field(default=(), converter=_field_tuple)

    def field(self, name: str) -> LeadField | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def normalise(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Each value in the CRM's form; an unknown field is a ToolError naming the known ones."""
        clean: dict[str, Any] = {}
        for name, value in values.items():
            declared = self.field(name)
            if declared is None:
                known = ", ".join(self.names) or "none"
                raise ToolError(f"unknown lead field {name!r}; fields: {known}")
            normalised = declared.normalise(value)
            if normalised is not None:
                clean[name] = normalised
        return clean

    def missing_required(self, values: Mapping[str, Any]) -> list[str]:
        return [f.name for f in self.fields if f.required and values.get(f.name) in (None, "")]

    def problems(self, values: Mapping[str, Any], path: str) -> list[tuple[str, str]]:
        """(key path, message) for each value this CRM would refuse (config checks)."""
        found: list[tuple[str, str]] = []
        for name, value in values.items():
            where = f"{path}.{name}"
            declared = self.field(name)
            if declared is None:
                found.append((where, f"the CRM declares no lead field {name!r}; "
                                     f"fields: {', '.join(self.names) or 'none'}"))
                continue
            try:
                declared.normalise(value)
            except ToolError:
                shown = ", ".join(declared.values) if declared.choices else declared.type.value
                found.append((where, f"{value!r} is not one of {shown}"))
        return found

    def with_synonyms(self, extra: Mapping[str, Mapping[str, Sequence[str]]]) -> LeadSchema:
        """A copy where ``extra`` ({field: {value: [words]}}) adds synonyms in any language.

        Raises ValueError naming the field or value the declaration does not have.
        """
        fields = {f.name: f for f in self.fields}
        for name, by_value in extra.items():
            declared = fields.get(name)
            if declared is None or declared.type is not FieldType.ENUM:
                enums = ", ".join(f.name for f in self.fields if f.type is FieldType.ENUM) or "none"
                raise ValueError(f"{name}: not an enumerated lead field of this CRM; enumerations: {enums}")
            choices = list(declared.choices)
            for value, words in by_value.items():
                index = next((i for i, c in enumerate(choices) if c.value == value), None)
                if index is None:
                    raise ValueError(f"{name}.{value}: not a value of {name}; values: {declared.allowed()}")
                choice = choices[index]
                merged = {**choice.synonyms,
                          ANY_LANGUAGE: (*choice.synonyms.get(ANY_LANGUAGE, ()), *words)}
                choices[index] = attrs.evolve(choice, synonyms=merged)
            fields[name] = attrs.evolve(declared, choices=tuple(choices))
        return LeadSchema(tuple(fields[f.name] for f in self.fields))

    def properties(self, *, shown: bool) -> dict[str, Any]:
        return {f.name: f.json_schema(shown=shown) for f in self.fields}


def schema_problems(
    schema: LeadSchema, defaults: Mapping[str, Any], source: str, path: str = "assistant.lead_defaults"
) -> list[str]:
    """Messages like ``tenants/acme.yaml: assistant.lead_defaults.status: 'Banana' is not one of …``."""
    return [f"{source}: {where}: {message}" for where, message in schema.problems(defaults, path)]
