"""The ``crm:`` block of a tenant using EspoCRM, validated strictly at load."""

from __future__ import annotations

from typing import Any

import attrs

from maxcore.config.models import FieldValueError, http_url, in_range, non_empty, one_of

from .vocabulary import lead_schema


def _synonyms(value: Any) -> dict[str, dict[str, tuple[str, ...]]]:
    if not isinstance(value, dict):
        raise FieldValueError("synonyms", f"expected {{field: {{value: [words]}}}}, got {value!r}")
    converted: dict[str, dict[str, tuple[str, ...]]] = {}
    for field, by_value in value.items():
        if not isinstance(by_value, dict):
            raise FieldValueError(f"synonyms.{field}", f"expected {{value: [words]}}, got {by_value!r}")
        converted[str(field)] = {}
        for option, words in by_value.items():
            if isinstance(words, str) or not all(isinstance(w, str) and w.strip() for w in words or ()):
                raise FieldValueError(f"synonyms.{field}.{option}",
                                      f"expected a list of words, got {words!r}")
            converted[str(field)][str(option)] = tuple(words)
    return converted


def _identifier(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value.isidentifier():
        raise FieldValueError(attribute.name, f"expected an attribute name like tenantId, got {value!r}")


@attrs.frozen
class EspoCRMConfig:
    """``crm: {type: espocrm, url, api_key, ...}``.

    ``url`` is the site URL (``https://crm.example.com``); the API is under ``/api/v1``.
    ``auth: hmac`` signs each request with ``secret_key`` (8.3: raw HMAC-SHA256 digest).
    ``phone_international`` mirrors EspoCRM's ``phoneNumberInternational`` setting (true
    on fresh 8.3 installs): numbers are sent in E.164, else in national format.
    ``synonyms`` adds words for the Lead options: ``{industry: {Construction: [gros œuvre]}}``.
    """

    url: str = attrs.field(validator=[non_empty, http_url])
    api_key: str = attrs.field(validator=non_empty)
    auth: str = attrs.field(default="api_key", validator=one_of("api_key", "hmac"))
    secret_key: str | None = attrs.field(default=None, validator=non_empty)
    tenant_field: str = attrs.field(default="tenantId", validator=_identifier)
    assigned_user_id: str | None = attrs.field(default=None, validator=non_empty)
    teams_ids: tuple[str, ...] = ()
    phone_international: bool = True
    phone_region: str = "FR"
    timeout_s: float = attrs.field(default=10.0, validator=in_range(0.1, 300))
    entities: tuple[str, ...] = ("DiagnosticIA", "MissionMAX")
    synonyms: dict[str, dict[str, tuple[str, ...]]] = attrs.field(factory=dict, converter=_synonyms)

    def __attrs_post_init__(self) -> None:
        if self.auth == "hmac" and not self.secret_key:
            raise FieldValueError("secret_key", "required when auth is hmac")
        try:
            lead_schema(self.synonyms)
        except ValueError as exc:
            field, _, message = str(exc).partition(": ")
            raise FieldValueError(f"synonyms.{field}", message) from None
