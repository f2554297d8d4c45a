"""Deterministic extraction of lead fields from French and English messages.

Used by the ``offline`` LLM (and by the OpenAI emulator in ``maxcore.testing``) so
the whole pipeline can run with no model and no network. It reads messages such as
"Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, +33 6 12 34 56 78" or
"New lead: John Smith from Acme, real estate, john@acme.com".
"""

from __future__ import annotations

import re
from typing import Any

from ..leads import INDUSTRY_OPTIONS, SYNONYMS, fold

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


def find_industry(text: str) -> str | None:
    folded = fold(text)
    for option in INDUSTRY_OPTIONS:
        if re.search(rf"\b{re.escape(fold(option))}\b", folded):
            return option
    for word, option in SYNONYMS["industry"].items():
        if len(word) >= 3 and re.search(rf"\b{re.escape(word)}\b", folded):
            return option
    return None


def _is_industry(segment: str) -> bool:
    folded = fold(segment)
    return folded in SYNONYMS["industry"] or any(fold(o) == folded for o in INDUSTRY_OPTIONS)


def _looks_like_name(segment: str) -> bool:
    words = segment.split()
    return 1 <= len(words) <= 4 and all(re.match(r"^[A-ZÀ-Ý][\w'À-ÿ.-]*$", w) for w in words)


def extract_lead(text: str) -> dict[str, Any]:
    """Return the lead fields found in ``text`` (possibly empty)."""
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
    industry = find_industry(rest)
    if industry:
        fields["industry"] = industry
    company = COMPANY_RE.search(rest)
    if company:
        fields["company"] = company.group(1).strip(" .,")
    intro = NAME_INTRO_RE.search(rest)
    name: str | None = intro.group(1).strip() if intro else None
    body = LEAD_MARKER_RE.sub("", rest, count=1)
    if name is None and body != rest:
        for segment in re.split(r"[,;\n]", body):
            segment = segment.strip(" .:-–")
            if not segment or _is_industry(segment):
                continue
            segment = COMPANY_RE.split(segment)[0].strip(" .,")
            if segment and _looks_like_name(segment):
                name = segment
                break
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
