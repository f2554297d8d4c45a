"""What EspoCRM does to an attribute map on create/update, and how it reads one back."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .metadata import SYSTEM_ATTRIBUTES, EntityDefs, field_attributes
from .store import new_id


def now_text() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def writable_input(entity: EntityDefs, body: Mapping[str, Any]) -> dict[str, Any]:
    """Drop what EspoCRM ignores silently (unknown, system and read-only attributes)
    and trim varchar strings (sanitizer ``StringTrim``)."""
    writable: set[str] = set()
    varchars: set[str] = set()
    for field, definition in entity.fields.items():
        if definition.get("readOnly") or definition.get("type") == "personName":
            continue
        writable.update(field_attributes(field, definition))
        if definition.get("type") in ("varchar", "phone", "email", "enum"):
            varchars.add(field)
    data = {}
    for key, value in body.items():
        if key in SYSTEM_ATTRIBUTES or key not in writable:
            continue
        if key in varchars and isinstance(value, str):
            value = value.strip()
        data[key] = value
    return data


def _address_data(field: str, value: Any, previous: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if value in (None, ""):
        return []
    kept = [dict(item, primary=False) for item in previous or []
            if str(item.get(field, "")).casefold() != str(value).casefold()]
    if field == "emailAddress":
        primary = {"emailAddress": value, "lower": str(value).lower(), "primary": True,
                   "optOut": False, "invalid": False}
    else:
        primary = {"phoneNumber": value, "type": "Mobile", "primary": True, "optOut": False,
                   "invalid": False}
    # Writing the primary attribute replaces the primary address; others stay.
    return [primary, *[item for item in kept if not item.get("primary")]] if previous else [primary]


def _sync_addresses(entity: EntityDefs, data: dict[str, Any], current: Mapping[str, Any]) -> None:
    for field, definition in entity.fields.items():
        if definition.get("type") not in ("email", "phone"):
            continue
        data_key = f"{field}Data"
        if isinstance(data.get(data_key), list):
            items = [dict(item) for item in data[data_key] if isinstance(item, dict)]
            primary = next((i for i in items if i.get("primary")), items[0] if items else None)
            data[field] = primary.get(field) if primary else None
            data[data_key] = items
        elif field in data:
            data[data_key] = _address_data(field, data[field], None)


def build_new(entity: EntityDefs, data: dict[str, Any], user_id: str) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for field, definition in entity.fields.items():
        if definition.get("type") == "personName":
            continue
        for attribute in field_attributes(field, definition):
            record[attribute] = None
        if "default" in definition:
            record[field] = definition["default"]
        if definition.get("type") in ("email", "phone"):
            record[f"{field}Data"] = []
            record[f"{field}IsOptedOut"] = False
            record[f"{field}IsInvalid"] = False
        if definition.get("type") == "linkMultiple":
            record[f"{field}Ids"] = []
            record[f"{field}Names"] = {}
        if definition.get("type") == "bool":
            record[field] = bool(definition.get("default", False))
    _sync_addresses(entity, data, {})
    record.update(data)
    stamp = now_text()
    record.update(id=new_id(), createdAt=stamp, modifiedAt=stamp, createdById=user_id,
                  modifiedById=user_id, deleted=False)
    return record


def apply_update(entity: EntityDefs, current: dict[str, Any], data: dict[str, Any],
                 user_id: str) -> dict[str, Any]:
    _sync_addresses(entity, data, current)
    updated = {**current, **data}
    updated.update(modifiedAt=now_text(), modifiedById=user_id)
    return updated


def render(entity: EntityDefs, record: Mapping[str, Any], user_names: Mapping[str, str],
           select: list[str] | None = None) -> dict[str, Any]:
    """The attribute map the API returns (names of links filled in)."""
    out = {k: v for k, v in record.items() if k != "deleted"}
    if "name" in entity.fields and entity.fields["name"].get("type") == "personName":
        out["name"] = " ".join(p for p in (record.get("firstName"), record.get("lastName")) if p) or None
    for field, definition in entity.fields.items():
        if definition.get("type") == "link":
            linked = record.get(f"{field}Id")
            out[f"{field}Name"] = user_names.get(linked) if linked else None
    if select is not None:
        wanted = {"id", *select}
        out = {k: v for k, v in out.items() if k in wanted}
    return out


def name_keys(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The key :func:`duplicates` compares names by (an index of candidates)."""
    return [(str(record.get("firstName") or "").casefold(), str(record.get("lastName") or "").casefold())]


def email_keys(record: Mapping[str, Any]) -> list[str]:
    """The keys :func:`duplicates` compares a stored record's addresses by."""
    return [str(item.get("emailAddress", "")).casefold() for item in record.get("emailAddressData") or []]


def duplicates(candidates: list[tuple[int, dict[str, Any]]], data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Lead rule: same first AND last name, or a shared e-mail address."""
    first = str(data.get("firstName") or "").casefold()
    last = str(data.get("lastName") or "").casefold()
    emails = {str(item.get("emailAddress", "")).casefold()
              for item in data.get("emailAddressData") or [] if item.get("emailAddress")}
    if data.get("emailAddress"):
        emails.add(str(data["emailAddress"]).casefold())
    found = []
    for _seq, record in candidates:
        same_name = (first or last) and (
            str(record.get("firstName") or "").casefold() == first
            and str(record.get("lastName") or "").casefold() == last
        )
        theirs = {str(item.get("emailAddress", "")).casefold()
                  for item in record.get("emailAddressData") or []}
        if same_name or (emails & theirs):
            found.append(record)
    return found
