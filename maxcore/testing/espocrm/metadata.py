"""EspoCRM 8.3 metadata as the emulator knows it: core Lead + the custom folder.

The core part is copied from ``Modules/Crm/Resources/metadata/entityDefs/Lead.json``
at tag 8.3.6 of espocrm/espocrm. Everything else comes from the
customization files a deploy copies into ``custom/Espo/Custom`` — read here with the
same merge rules EspoCRM applies (recursive merge; an array replaces the core one
unless its first element is ``"__APPEND__"``), so the customization and the plugin
are tested together.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

APPEND = "__APPEND__"

CORE_INDUSTRY_OPTIONS: tuple[str, ...] = (
    "", "Advertising", "Aerospace", "Agriculture", "Apparel & Accessories", "Architecture",
    "Automotive", "Banking", "Biotechnology", "Building Materials & Equipment", "Chemical",
    "Construction", "Consulting", "Computer", "Culture", "Creative", "Defense", "Education",
    "Electronics", "Electric Power", "Energy", "Entertainment & Leisure", "Finance",
    "Food & Beverage", "Grocery", "Healthcare", "Hospitality", "Insurance", "Legal",
    "Manufacturing", "Mass Media", "Marketing", "Mining", "Music", "Publishing", "Petroleum",
    "Real Estate", "Retail", "Service", "Sports", "Software", "Support", "Shipping", "Travel",
    "Technology", "Telecommunications", "Television", "Transportation",
    "Testing, Inspection & Certification", "Venture Capital", "Wholesale", "Water",
)

_SYSTEM_FIELDS: dict[str, dict[str, Any]] = {
    "createdAt": {"type": "datetime", "readOnly": True},
    "modifiedAt": {"type": "datetime", "readOnly": True},
    "createdBy": {"type": "link", "readOnly": True},
    "modifiedBy": {"type": "link", "readOnly": True},
    "assignedUser": {"type": "link"},
    "teams": {"type": "linkMultiple"},
}

CORE_ENTITY_DEFS: dict[str, dict[str, Any]] = {
    "Lead": {
        "fields": {
            "name": {"type": "personName"},
            "salutationName": {"type": "enum", "options": ["", "Mr.", "Ms.", "Mrs.", "Dr."]},
            "firstName": {"type": "varchar", "maxLength": 100},
            "lastName": {"type": "varchar", "maxLength": 100},
            "title": {"type": "varchar", "maxLength": 100, "pattern": "$noBadCharacters"},
            "status": {
                "type": "enum", "default": "New",
                "options": ["New", "Assigned", "In Process", "Converted", "Recycled", "Dead"],
            },
            "source": {
                "type": "enum", "default": "",
                "options": ["", "Call", "Email", "Existing Customer", "Partner",
                            "Public Relations", "Web Site", "Campaign", "Other"],
            },
            "industry": {"type": "enum", "default": "", "options": list(CORE_INDUSTRY_OPTIONS)},
            "opportunityAmount": {"type": "currency", "min": 0},
            "website": {"type": "url"},
            "addressStreet": {"type": "text"},
            "addressCity": {"type": "varchar"},
            "addressState": {"type": "varchar"},
            "addressCountry": {"type": "varchar"},
            "addressPostalCode": {"type": "varchar"},
            "emailAddress": {"type": "email"},
            "phoneNumber": {"type": "phone"},
            "doNotCall": {"type": "bool"},
            "description": {"type": "text"},
            "convertedAt": {"type": "datetime", "readOnly": True},
            "accountName": {"type": "varchar", "maxLength": 255, "pattern": "$noBadCharacters"},
            "campaign": {"type": "link"},
            **_SYSTEM_FIELDS,
        },
        "collection": {"orderBy": "createdAt", "order": "desc"},
    },
}
# Lead: same first+last name, or a shared e-mail address (scopes/Lead.json).
DUPLICATE_CHECK_ENTITIES = ("Lead",)

# Attributes a client may send that EspoCRM ignores without error.
SYSTEM_ATTRIBUTES = frozenset({
    "id", "createdAt", "modifiedAt", "createdById", "modifiedById", "versionNumber", "deleted",
})


def merge(base: Any, custom: Any) -> Any:
    """EspoCRM's metadata merge: dicts recursively, arrays replace unless ``__APPEND__``."""
    if isinstance(base, dict) and isinstance(custom, dict):
        merged = dict(base)
        for key, value in custom.items():
            merged[key] = merge(base[key], value) if key in base else _strip_append(value)
        return merged
    if isinstance(custom, list) and custom and custom[0] == APPEND:
        return [*(base if isinstance(base, list) else []), *custom[1:]]
    return _strip_append(custom)


def _strip_append(value: Any) -> Any:
    if isinstance(value, list) and value and value[0] == APPEND:
        return list(value[1:])
    if isinstance(value, dict):
        return {k: _strip_append(v) for k, v in value.items()}
    return copy.deepcopy(value)


def field_attributes(field: str, definition: Mapping[str, Any]) -> tuple[str, ...]:
    """The attributes (what the REST API reads and writes) a field produces."""
    kind = definition.get("type")
    if kind == "link":
        return (f"{field}Id", f"{field}Name")
    if kind == "linkMultiple":
        return (f"{field}Ids", f"{field}Names")
    if kind == "currency":
        return (field, f"{field}Currency")
    if kind == "email":
        return (field, f"{field}Data", f"{field}IsOptedOut", f"{field}IsInvalid")
    if kind == "phone":
        return (field, f"{field}Data", f"{field}IsOptedOut", f"{field}IsInvalid")
    if kind == "personName":
        return (field,)
    return (field,)


@attrs.frozen
class EntityDefs:
    """One entity's merged definition."""

    name: str
    fields: dict[str, dict[str, Any]]
    collection: dict[str, Any]
    has_controller: bool

    @property
    def attributes(self) -> frozenset[str]:
        names = {"id"}
        for field, definition in self.fields.items():
            names.update(field_attributes(field, definition))
        return frozenset(names)

    def options(self, field: str) -> list[str]:
        return list(self.fields.get(field, {}).get("options", []))


class Metadata:
    """Entity definitions: core ones merged with ``custom_dir/Espo/Custom/Resources``."""

    def __init__(self, custom_dir: Path | None) -> None:
        self.custom_dir = custom_dir
        self.entities: dict[str, EntityDefs] = {}
        self.reload()

    @property
    def _root(self) -> Path | None:
        if self.custom_dir is None:
            return None
        return self.custom_dir / "Espo" / "Custom"

    def _read(self, relative: str) -> dict[str, Any] | None:
        root = self._root
        if root is None:
            return None
        path = root / relative
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def reload(self) -> None:
        """Re-read the custom folder (what ``php command.php rebuild`` does)."""
        entities: dict[str, EntityDefs] = {}
        for name, core in CORE_ENTITY_DEFS.items():
            custom = self._read(f"Resources/metadata/entityDefs/{name}.json") or {}
            merged = merge(core, custom)
            entities[name] = EntityDefs(name, merged.get("fields", {}),
                                        merged.get("collection", {}), has_controller=True)
        root = self._root
        scopes_dir = root / "Resources" / "metadata" / "scopes" if root else None
        if scopes_dir is not None and scopes_dir.is_dir():
            for scope_file in sorted(scopes_dir.glob("*.json")):
                name = scope_file.stem
                scope = json.loads(scope_file.read_text(encoding="utf-8"))
                if name in entities or not scope.get("entity"):
                    continue
                defs = self._read(f"Resources/metadata/entityDefs/{name}.json") or {}
                controller = root is not None and (root / "Controllers" / f"{name}.php").is_file()
                fields = merge(_SYSTEM_FIELDS, defs.get("fields", {}))
                entities[name] = EntityDefs(name, fields, defs.get("collection", {}), controller)
        self.entities = entities

    def entity(self, name: str) -> EntityDefs | None:
        return self.entities.get(name)
