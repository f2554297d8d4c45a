"""Lead field normalisation shared by every CRM: phones, emails, enum values.

The model writes what the user wrote ("BTP", "immobilier", "06 12 34 56 78"); CRMs
accept only exact option strings and E.164 numbers. This module maps one to the other
or refuses with the list of allowed values, so the model can correct itself.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import phonenumbers

from .errors import ToolError
from .types import Lead

# EspoCRM 8.3's Lead options (Modules/Crm/Resources/metadata/entityDefs/Lead.json),
# the reference the embedded CRM follows too.
STATUS_OPTIONS = ("New", "Assigned", "In Process", "Converted", "Recycled", "Dead")
SOURCE_OPTIONS = (
    "Call", "Email", "Existing Customer", "Partner", "Public Relations", "Web Site",
    "Campaign", "Other", "WhatsApp",
)
INDUSTRY_OPTIONS = (
    "Advertising", "Aerospace", "Agriculture", "Apparel & Accessories", "Architecture",
    "Automotive", "Banking", "Biotechnology", "Building Materials & Equipment", "Chemical",
    "Construction", "Consulting", "Computer", "Culture", "Creative", "Defense", "Education",
    "Electronics", "Electric Power", "Energy", "Entertainment & Leisure", "Finance",
    "Food & Beverage", "Grocery", "Healthcare", "Hospitality", "Insurance", "Legal",
    "Manufacturing", "Mass Media", "Marketing", "Mining", "Music", "Publishing", "Petroleum",
    "Real Estate", "Retail", "Service", "Sports", "Software", "Support", "Shipping", "Travel",
    "Technology", "Telecommunications", "Television", "Transportation",
    "Testing, Inspection & Certification", "Venture Capital", "Wholesale", "Water",
)
DEFAULT_OPTIONS: dict[str, tuple[str, ...]] = {
    "status": STATUS_OPTIONS,
    "source": SOURCE_OPTIONS,
    "industry": INDUSTRY_OPTIONS,
}

# French and English words people use, mapped to option strings. Keys are folded
# (lower-case, no accents); a synonym is used only when its target is an option of
# the tenant's CRM.
SYNONYMS: dict[str, dict[str, str]] = {
    "industry": {
        "btp": "Construction", "batiment": "Construction", "construction": "Construction",
        "travaux": "Construction", "renovation": "Construction", "maconnerie": "Construction",
        "immobilier": "Real Estate", "agence immobiliere": "Real Estate",
        "real estate": "Real Estate", "immo": "Real Estate",
        "informatique": "Computer", "it": "Computer", "logiciel": "Software",
        "saas": "Software", "editeur de logiciel": "Software", "tech": "Technology",
        "technologie": "Technology", "high tech": "Technology", "numerique": "Technology",
        "conseil": "Consulting", "consultant": "Consulting", "sante": "Healthcare",
        "medical": "Healthcare", "health": "Healthcare", "pharmacie": "Healthcare",
        "restauration": "Food & Beverage", "restaurant": "Food & Beverage",
        "food": "Food & Beverage", "agroalimentaire": "Food & Beverage",
        "hotellerie": "Hospitality", "hotel": "Hospitality", "commerce": "Retail",
        "boutique": "Retail", "vente au detail": "Retail", "retail": "Retail",
        "epicerie": "Grocery", "banque": "Banking", "finance": "Finance",
        "assurance": "Insurance", "juridique": "Legal", "avocat": "Legal", "droit": "Legal",
        "education": "Education", "formation": "Education", "enseignement": "Education",
        "transport": "Transportation", "logistique": "Transportation",
        "marketing": "Marketing", "publicite": "Advertising", "communication": "Marketing",
        "industrie": "Manufacturing", "manufacture": "Manufacturing", "usine": "Manufacturing",
        "energie": "Energy", "agriculture": "Agriculture", "automobile": "Automotive",
        "garage": "Automotive", "architecture": "Architecture", "architecte": "Architecture",
        "telecom": "Telecommunications", "telecoms": "Telecommunications",
        "voyage": "Travel", "tourisme": "Travel", "media": "Mass Media",
        "medias": "Mass Media", "presse": "Publishing", "edition": "Publishing",
        "musique": "Music", "sport": "Sports", "services": "Service",
        "culture": "Culture", "creation": "Creative", "design": "Creative",
        "defense": "Defense", "electronique": "Electronics", "chimie": "Chemical",
        "eau": "Water", "vin": "Food & Beverage", "television": "Television",
    },
    "status": {
        "nouveau": "New", "nouvelle": "New", "new": "New", "assigne": "Assigned",
        "attribue": "Assigned", "en cours": "In Process", "in progress": "In Process",
        "en traitement": "In Process", "converti": "Converted", "gagne": "Converted",
        "recycle": "Recycled", "perdu": "Dead", "mort": "Dead", "abandonne": "Dead",
    },
    "source": {
        "appel": "Call", "telephone": "Call", "phone": "Call", "e-mail": "Email",
        "mail": "Email", "courriel": "Email", "client existant": "Existing Customer",
        "partenaire": "Partner", "relations publiques": "Public Relations",
        "site web": "Web Site", "site internet": "Web Site", "web": "Web Site",
        "website": "Web Site", "campagne": "Campaign", "autre": "Other",
        "whatsapp": "WhatsApp", "wa": "WhatsApp",
    },
}

_EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]{2,}$")
_BAD_CHARS_RE = re.compile(r"[<>=]")


def fold(text: str) -> str:
    """Lower-case, accents removed, spaces squeezed: the key synonyms are looked up by."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[\s_]+", " ", stripped.casefold()).strip()


def normalise_option(field: str, value: str, options: Sequence[str]) -> str:
    """Map ``value`` to one of ``options`` or raise a ToolError listing them."""
    wanted = fold(value)
    for option in options:
        if fold(option) == wanted:
            return option
    target = SYNONYMS.get(field, {}).get(wanted)
    if target is not None and target in options:
        return target
    allowed = ", ".join(o for o in options if o)
    raise ToolError(f"{field} {value!r} is not allowed; allowed values: {allowed}")


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
    if not _EMAIL_RE.match(email):
        raise ToolError(f"email {raw!r} is not a valid e-mail address")
    return email


def strip_bad_characters(text: str) -> str:
    """Remove ``<``, ``>`` and ``=``, which EspoCRM rejects in names and titles."""
    return _BAD_CHARS_RE.sub("", text).strip()


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def build_lead(
    arguments: Mapping[str, Any],
    *,
    options: Mapping[str, Sequence[str]],
    defaults: Mapping[str, str] | None = None,
    region: str = "FR",
) -> Lead:
    """Turn tool arguments into a normalised Lead (defaults fill missing enum fields)."""
    values: dict[str, Any] = {key: _clean(arguments.get(key)) for key in (
        "first_name", "last_name", "phone", "email", "company", "industry", "source",
        "status", "description",
    )}
    if not values["first_name"] and not values["last_name"] and arguments.get("name"):
        first, _, last = str(arguments["name"]).strip().partition(" ")
        values["first_name"], values["last_name"] = first or None, last or None
    for key, default in (defaults or {}).items():
        if key in values and not values[key]:
            values[key] = default
    if values["phone"]:
        values["phone"] = normalise_phone(values["phone"], region)
    if values["email"]:
        values["email"] = normalise_email(values["email"])
    for field in ("status", "source", "industry"):
        if values[field]:
            values[field] = normalise_option(field, values[field], options.get(field, ()))
    for field in ("first_name", "last_name", "company"):
        if values[field]:
            values[field] = strip_bad_characters(values[field]) or None
    if not values["phone"] and not values["email"]:
        raise ToolError("a lead needs a phone number or an e-mail address")
    if not values["first_name"] and not values["last_name"] and not values["company"]:
        raise ToolError("a lead needs a name (first_name/last_name) or a company")
    return Lead(**values)
