"""Field validation of EspoCRM 8.3 (``Classes/FieldValidators/*``): first failure only.

A failure is reported as EspoCRM does: 400, ``X-Status-Reason: Field validation
failure; entityType: Lead, field: status, type: valid.`` and a JSON body with
``messageTranslation``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import phonenumbers

from .metadata import EntityDefs

_PHONE_CHARS_RE = re.compile(r"^[0-9A-Za-z_@:#+().\- ]+$")
_EMAIL_RE = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[A-Za-z]{2,}$")
_URL_RE = re.compile(r"^(https?://)?[^\s/$.?#].[^\s]*$", re.IGNORECASE)
PATTERNS = {"$noBadCharacters": re.compile(r"^[^<>=]+$")}
_PHONE_MAX_LENGTH = 36
_VARCHAR_MAX_LENGTH = 255


class ValidationFailure(Exception):
    def __init__(self, entity: str, field: str, kind: str) -> None:
        super().__init__(
            f"Field validation failure; entityType: {entity}, field: {field}, type: {kind}."
        )
        self.entity = entity
        self.field = field
        self.kind = kind

    @property
    def body(self) -> dict[str, Any]:
        return {"messageTranslation": {
            "label": "validationFailure", "scope": None,
            "data": {"field": self.field, "type": self.kind},
        }}


def _phone_valid(value: str, international: bool) -> bool:
    if not _PHONE_CHARS_RE.match(value):
        return False
    if not international:
        return True
    # PhoneType.php: the value must be exactly what libphonenumber formats as E.164.
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return False
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return formatted == value and phonenumbers.is_possible_number(number)


def _phones(data: Mapping[str, Any], field: str) -> list[Any]:
    items = data.get(f"{field}Data")
    if isinstance(items, list):
        return [item.get(field) for item in items if isinstance(item, dict)]
    return [data[field]] if data.get(field) not in (None, "") else []


def _emails(data: Mapping[str, Any], field: str) -> list[Any]:
    items = data.get(f"{field}Data")
    if isinstance(items, list):
        return [item.get(field) for item in items if isinstance(item, dict)]
    return [data[field]] if data.get(field) not in (None, "") else []


def validate(
    entity: EntityDefs,
    data: Mapping[str, Any],
    *,
    creating: bool,
    phone_international: bool,
    currency_list: Sequence[str],
) -> None:
    """Raise :class:`ValidationFailure` for the first invalid field present in ``data``."""
    for field, definition in entity.fields.items():
        if definition.get("readOnly"):
            continue
        kind = definition.get("type")
        sent = field in data or any(
            key in data for key in (f"{field}Data", f"{field}Id", f"{field}Ids", f"{field}Currency")
        )
        if definition.get("required") and creating and not sent:
            raise ValidationFailure(entity.name, field, "required")
        if not sent:
            continue
        value = data.get(field)
        if definition.get("required") and value in (None, "") and kind not in ("link", "linkMultiple"):
            raise ValidationFailure(entity.name, field, "required")
        if kind == "enum":
            options = definition.get("options", [])
            # Exact and case-sensitive; "" and null only when "" is an option.
            if value is None and "" in options:
                continue
            if not isinstance(value, str) or value not in options:
                raise ValidationFailure(entity.name, field, "valid")
        elif kind == "phone":
            for number in _phones(data, field):
                if not isinstance(number, str):
                    raise ValidationFailure(entity.name, field, "valid")
                if len(number) > _PHONE_MAX_LENGTH:
                    raise ValidationFailure(entity.name, field, "maxLength")
                if not _phone_valid(number, phone_international):
                    raise ValidationFailure(entity.name, field, "valid")
        elif kind == "email":
            for address in _emails(data, field):
                if not isinstance(address, str) or not _EMAIL_RE.match(address):
                    raise ValidationFailure(entity.name, field, "emailAddress")
        elif kind == "varchar" and value is not None:
            if not isinstance(value, str):
                raise ValidationFailure(entity.name, field, "valid")
            if len(value) > int(definition.get("maxLength", _VARCHAR_MAX_LENGTH)):
                raise ValidationFailure(entity.name, field, "maxLength")
            pattern = PATTERNS.get(definition.get("pattern", ""))
            if pattern is not None and value != "" and not pattern.match(value):
                raise ValidationFailure(entity.name, field, "pattern")
        elif kind in ("int", "float") and value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValidationFailure(entity.name, field, "valid")
            if "min" in definition and value < definition["min"]:
                raise ValidationFailure(entity.name, field, "min")
            if "max" in definition and value > definition["max"]:
                raise ValidationFailure(entity.name, field, "max")
        elif kind == "currency":
            currency = data.get(f"{field}Currency")
            if currency is not None and currency not in currency_list:
                raise ValidationFailure(entity.name, field, "validCurrency")
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValidationFailure(entity.name, field, "valid")
        elif kind == "url" and value not in (None, ""):
            if not isinstance(value, str) or not _URL_RE.match(value):
                raise ValidationFailure(entity.name, field, "valid")
