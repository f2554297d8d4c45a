"""Lead normalisation every CRM shares: identity (phone, e-mail, names) and the CRM's fields.

The model writes what the user wrote ("06 12 34 56 78", "JEAN@Dupont.fr", "btp"). The
core turns the identity into canonical forms (E.164, lower-case e-mail, trimmed text)
and hands the other values to the CRM's declaration (:mod:`maxcore.vocabulary`), which
maps them onto its exact values or refuses with the allowed ones. Anything a given
CRM rejects beyond that (forbidden characters, lengths) is its connector's to clean.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs
import phonenumbers

from .errors import ToolError
from .types import Lead
from .vocabulary import IDENTITY_FIELDS, LeadSchema

_EMAIL_RE = re.compile(r"^[^@\s<>]{1,64}@[^@\s<>]{1,255}$")
_NOT_LEAD_FIELDS = frozenset({*IDENTITY_FIELDS, "name", "lead_id"})


def normalise_phone(raw: str, region: str = "FR") -> str:
    """Return the E.164 form of ``raw`` or raise a ToolError."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ToolError(f"phone {raw!r} is not a phone number ({exc})") from exc
    if not phonenumbers.is_possible_number(number):
        raise ToolError(f"phone {raw!r} is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str) -> str:
    email = raw.strip().lower()
    labels = email.rpartition("@")[2].split(".")
    # A pattern without nested repetition plus a split: linear in the length.
    if not _EMAIL_RE.match(email) or len(labels) < 2 or not all(labels) or len(labels[-1]) < 2:
        raise ToolError(f"email {raw!r} is not a valid e-mail address")
    return email


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def build_lead(
    arguments: Mapping[str, Any], *, schema: LeadSchema, region: str = "FR",
    require_identity: bool = True,
) -> Lead:
    """Turn tool arguments into a normalised Lead.

    Identity comes from ``first_name``/``last_name`` (or one ``name``), ``phone``,
    ``email``, ``company``; every other argument must be a field ``schema`` declares.
    ``require_identity``: a new lead needs a name or company and a phone or e-mail; an
    update by id does not.
    """
    values: dict[str, Any] = {key: _clean(arguments.get(key)) for key in IDENTITY_FIELDS}
    if not values["first_name"] and not values["last_name"] and arguments.get("name"):
        first, _, last = str(arguments["name"]).strip().partition(" ")
        values["first_name"], values["last_name"] = first or None, last.strip() or None
    if values["phone"]:
        values["phone"] = normalise_phone(values["phone"], region)
    if values["email"]:
        values["email"] = normalise_email(values["email"])
    fields = schema.normalise({k: v for k, v in arguments.items()
                               if k not in _NOT_LEAD_FIELDS and v not in (None, "")})
    if require_identity:
        if not values["phone"] and not values["email"]:
            raise ToolError("a lead needs a phone number or an e-mail address")
        if not values["first_name"] and not values["last_name"] and not values["company"]:
            raise ToolError("a lead needs a name (first_name/last_name) or a company")
    return Lead(**values, fields=fields)


def with_defaults(lead: Lead, defaults: Mapping[str, Any], schema: LeadSchema) -> Lead:
    """The lead about to be *created*: ``defaults`` fill the fields it leaves empty.

    Connectors call this on create only, so a value the user states on an update ("put
    it back to New") is written as stated, and a lead in progress is never reset.
    Raises ToolError when a field the CRM requires is still missing.
    """
    filled = {**schema.normalise({k: v for k, v in defaults.items() if lead.fields.get(k) in (None, "")}),
              **{k: v for k, v in lead.fields.items() if v not in (None, "")}}
    missing = schema.missing_required(filled)
    if missing:
        raise ToolError(f"a new lead needs {', '.join(missing)}")
    return attrs.evolve(lead, fields=filled)
