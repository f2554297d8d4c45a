"""Deterministic extraction of lead fields from French and English messages.

Used by the ``offline`` LLM (and by the OpenAI emulator in ``maxcore.testing``) so
the whole pipeline can run with no model and no network. It reads messages such as
"Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, +33 6 12 34 56 78" or
"New lead: John Smith from Acme, real estate, john@acme.com".

It knows no CRM's vocabulary: the values of enumerated fields (and their synonyms)
are read from the ``upsert_lead`` tool's JSON schema, as a model would read them. A
part of the message it cannot place goes, as written, to an ``industry`` field when
the schema has a free-text one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..vocabulary import fold

# Every pattern runs in time linear in the input: quantifiers that could give a
# character back to a neighbour are possessive (``*+``, ``++``) and repetitions that
# could overlap are bounded, so no input makes the engine backtrack over itself
# (a 4,000-character word once cost 130 ms in the e-mail pattern alone).
MAX_INPUT_CHARS = 5000
EMAIL_RE = re.compile(
    r"(?<![\w.+-])[\w.+-]{1,64}+@[\w-]{1,63}+(?:\.[\w-]{1,63}+){1,8}+(?![\w-])"
)
PHONE_RE = re.compile(r"(?<![\w@])\+?\d[\d .\-()]{7,24}\d")
LEAD_MARKER_RE = re.compile(
    r"^\s*+(?:(?:nouveau|nouvelle|new|ajoute[rz]?|add|cr[ée]e[rz]?|create)\s++)?+"
    r"(?:(?:un|une|a)\s++)?+(?:lead|prospect|contact|client)\s*+[:\-–]\s*+",
    re.IGNORECASE,
)
_NAME_WORD = r"[A-ZÀ-Ý][\w'À-ÿ-]{1,40}+"
NAME_INTRO_RE = re.compile(
    r"(?:je m'appelle|je suis|moi c'est|mon nom est|my name is|i am|i'm|nom\s*+:|name\s*+:)\s++"
    rf"({_NAME_WORD}(?:\s++{_NAME_WORD}){{0,2}}+)",
    re.IGNORECASE,
)
_COMPANY_WORD = r"[A-Z0-9][\w&'.-]{0,60}+"
COMPANY_RE = re.compile(
    r"\b(?:soci[ée]t[ée]|entreprise|company|chez|from|de la soci[ée]t[ée]|at)\s++"
    rf"({_COMPANY_WORD}(?:\s++{_COMPANY_WORD}){{0,3}}+)"
)
SEARCH_RE = re.compile(
    r"^\s*+(?:cherche[rz]?|recherche[rz]?|trouve[rz]?|search|find|look up)\s++"
    r"(?:(?:le|la|les|un|a|the)\s++)?+(?:(?:leads?|prospects?)\s++)?+(.+)$",
    re.IGNORECASE,
)
REMEMBER_RE = re.compile(
    r"^\s*+(?:retiens que|souviens-toi que|note que|remember that)\s++(.+)$",
    re.IGNORECASE,
)
GREETING_RE = re.compile(r"^\s*+(?:bonjour|salut|hello|hi|hey|bonsoir|coucou)\b", re.IGNORECASE)


def enum_words(properties: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """{field: {folded word: value}} for the enumerated properties of a tool schema."""
    found: dict[str, dict[str, str]] = {}
    for name, prop in properties.items():
        values = prop.get("enum") if isinstance(prop, Mapping) else None
        if not isinstance(values, list):
            continue
        words = {fold(str(v)): str(v) for v in values}
        synonyms = prop.get("x-synonyms")
        if isinstance(synonyms, Mapping):
            for value, spellings in synonyms.items():
                for spelling in spellings if isinstance(spellings, list) else ():
                    words.setdefault(fold(str(spelling)), str(value))
        found[name] = words
    return found


def _enum_value(segment: str, enums: dict[str, dict[str, str]]) -> tuple[str, str] | None:
    folded = fold(segment)
    for name, words in enums.items():
        if folded in words:
            return name, words[folded]
    return None


def _looks_like_name(segment: str) -> bool:
    words = segment.split()
    return 1 <= len(words) <= 4 and all(re.match(r"^[A-ZÀ-Ý][\w'À-ÿ.-]*$", w) for w in words)


def extract_lead(text: str, properties: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the lead fields found in ``text`` (possibly empty).

    ``properties`` is the ``upsert_lead`` schema's: its enumerations are recognised.
    """
    properties = properties or {}
    enums = enum_words(properties)
    text = text[:MAX_INPUT_CHARS]
    fields: dict[str, Any] = {}
    email = EMAIL_RE.search(text)
    if email:
        fields["email"] = email.group(0)
    rest = EMAIL_RE.sub(" ", text)
    phone = PHONE_RE.search(rest)
    if phone and sum(c.isdigit() for c in phone.group(0)) >= 9:
        fields["phone"] = phone.group(0).strip()
        rest = rest.replace(phone.group(0), " ")
    company = COMPANY_RE.search(rest)
    if company:
        fields["company"] = company.group(1).strip(" .,")
    intro = NAME_INTRO_RE.search(rest)
    name: str | None = intro.group(1).strip() if intro else None
    body = LEAD_MARKER_RE.sub("", rest, count=1)
    marked = body != rest
    leftover: list[str] = []
    for segment in re.split(r"[,;\n]", body):
        segment = segment.strip(" .:-–")
        if not segment:
            continue
        matched = _enum_value(segment, enums)
        if matched is not None:
            fields.setdefault(matched[0], matched[1])
            continue
        if not marked:
            continue
        before_company = COMPANY_RE.split(segment)[0].strip(" .,")
        if name is None and before_company and _looks_like_name(before_company):
            name = before_company
        elif not COMPANY_RE.search(segment) and len(segment.split()) <= 4:
            leftover.append(segment)
    free_industry = isinstance(properties.get("industry"), Mapping) and "enum" not in properties["industry"]
    if leftover and free_industry and "industry" not in fields:
        fields["industry"] = leftover[0]
    if name:
        first, _, last = name.partition(" ")
        fields["first_name"] = first
        if last:
            fields["last_name"] = last
    return fields


def has_lead_intent(text: str) -> bool:
    text = text[:MAX_INPUT_CHARS]
    return bool(LEAD_MARKER_RE.search(text)) or bool(EMAIL_RE.search(text)) or bool(
        PHONE_RE.search(text)
    )
