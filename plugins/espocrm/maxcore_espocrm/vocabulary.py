"""The EspoCRM 8.3 Lead vocabulary this plugin declares, and EspoCRM's character rules.

Option lists are EspoCRM 8.3's (``Modules/Crm/Resources/metadata/entityDefs/Lead.json``)
plus what the customization in ``deploy/espocrm/custom`` appends (``WhatsApp`` in
source; a test compares them with the merged metadata). The synonyms are the French
and English words people use for them; a tenant adds its own in YAML
(``crm: {synonyms: {industry: {Construction: [gros œuvre]}}}``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from maxcore.vocabulary import Choice, FieldType, LeadField, LeadSchema

LEAD_STATUS = ("New", "Assigned", "In Process", "Converted", "Recycled", "Dead")
LEAD_SOURCE = (
    "Call", "Email", "Existing Customer", "Partner", "Public Relations", "Web Site",
    "Campaign", "Other", "WhatsApp",
)
LEAD_INDUSTRY = (
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
LEAD_OPTIONS: dict[str, tuple[str, ...]] = {
    "status": LEAD_STATUS, "source": LEAD_SOURCE, "industry": LEAD_INDUSTRY,
}

# Folded words (lower-case, no accents) → option, in French ("fr") and English ("en").
SYNONYMS: dict[str, dict[str, dict[str, str]]] = {
    "industry": {
        "fr": {
            "btp": "Construction", "batiment": "Construction", "travaux": "Construction",
            "renovation": "Construction", "maconnerie": "Construction",
            "immobilier": "Real Estate", "agence immobiliere": "Real Estate", "immo": "Real Estate",
            "informatique": "Computer", "logiciel": "Software", "editeur de logiciel": "Software",
            "technologie": "Technology", "high tech": "Technology", "numerique": "Technology",
            "conseil": "Consulting", "sante": "Healthcare", "medical": "Healthcare",
            "pharmacie": "Healthcare", "restauration": "Food & Beverage",
            "restaurant": "Food & Beverage", "agroalimentaire": "Food & Beverage",
            "vin": "Food & Beverage", "hotellerie": "Hospitality", "hotel": "Hospitality",
            "commerce": "Retail", "boutique": "Retail", "vente au detail": "Retail",
            "epicerie": "Grocery", "banque": "Banking", "assurance": "Insurance",
            "juridique": "Legal", "avocat": "Legal", "droit": "Legal", "formation": "Education",
            "enseignement": "Education", "logistique": "Transportation",
            "publicite": "Advertising", "communication": "Marketing",
            "industrie": "Manufacturing", "usine": "Manufacturing", "energie": "Energy",
            "garage": "Automotive", "architecte": "Architecture",
            "telecom": "Telecommunications", "telecoms": "Telecommunications",
            "voyage": "Travel", "tourisme": "Travel", "medias": "Mass Media",
            "presse": "Publishing", "edition": "Publishing", "musique": "Music",
            "services": "Service", "creation": "Creative", "electronique": "Electronics",
            "chimie": "Chemical", "eau": "Water", "consultant": "Consulting",
            "education": "Education", "transport": "Transportation", "marketing": "Marketing",
            "agriculture": "Agriculture", "automobile": "Automotive", "architecture": "Architecture",
            "media": "Mass Media", "sport": "Sports", "culture": "Culture", "design": "Creative",
            "defense": "Defense", "television": "Television", "finance": "Finance",
        },
        "en": {
            "it": "Computer", "saas": "Software", "tech": "Technology", "health": "Healthcare",
            "food": "Food & Beverage", "manufacture": "Manufacturing",
        },
    },
    "status": {
        "fr": {
            "nouveau": "New", "nouvelle": "New", "assigne": "Assigned", "attribue": "Assigned",
            "en cours": "In Process", "en traitement": "In Process", "converti": "Converted",
            "gagne": "Converted", "recycle": "Recycled", "perdu": "Dead", "mort": "Dead",
            "abandonne": "Dead",
        },
        "en": {"in progress": "In Process"},
    },
    "source": {
        "fr": {
            "appel": "Call", "telephone": "Call", "mail": "Email", "courriel": "Email",
            "client existant": "Existing Customer", "partenaire": "Partner",
            "relations publiques": "Public Relations", "site web": "Web Site",
            "site internet": "Web Site", "campagne": "Campaign", "autre": "Other",
        },
        "en": {"phone": "Call", "e-mail": "Email", "web": "Web Site", "website": "Web Site",
               "wa": "WhatsApp"},
    },
}

_LABELS = {"status": "Status", "source": "Source", "industry": "Industry"}
_DESCRIPTIONS = {
    "status": "where the lead stands",
    "source": "where the lead comes from",
    "industry": "the lead's line of business",
}


def _choices(field: str) -> tuple[Choice, ...]:
    by_language = SYNONYMS.get(field, {})
    return tuple(
        Choice(option, option, {language: tuple(w for w, target in words.items() if target == option)
                                for language, words in by_language.items()})
        for option in LEAD_OPTIONS[field]
    )


def lead_schema(extra_synonyms: Mapping[str, Mapping[str, tuple[str, ...]]] | None = None) -> LeadSchema:
    """The declaration: the three enumerations, the free-text fields the plugin writes."""
    schema = _shipped_schema()
    return schema.with_synonyms(extra_synonyms) if extra_synonyms else schema


@functools.cache
def _shipped_schema() -> LeadSchema:
    """Built once per process (it is immutable): each tenant's config and connector use it."""
    fields = [LeadField(name, FieldType.ENUM, _LABELS[name], _DESCRIPTIONS[name], choices=_choices(name))
              for name in ("status", "source", "industry")]
    fields += [
        LeadField("description", label="Description", description="free notes about the need"),
        LeadField("aiSummary", label="AI summary", description="one-line summary of the conversation"),
    ]
    return LeadSchema(tuple(fields))


# ``$noBadCharacters`` (8.3 pattern of names, account names, titles): <, > and = refused.
_BAD_CHARACTERS_RE = re.compile(r"[<>=]")


def strip_bad_characters(text: str) -> str:
    """Remove ``<``, ``>`` and ``=``, which EspoCRM rejects in names and titles."""
    return _BAD_CHARACTERS_RE.sub("", text).strip()
