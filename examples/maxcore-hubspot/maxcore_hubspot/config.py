"""The ``crm:`` block of a tenant using HubSpot, validated strictly at load."""

from __future__ import annotations

from typing import Any

import attrs

from maxcore.config.models import FieldValueError, http_url, in_range, non_empty

# Contact properties declared to the model by default: HubSpot's own.
DEFAULT_PROPERTIES = ("lifecyclestage", "hs_lead_status", "jobtitle", "industry", "message")


def _property_name(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value.replace("_", "").isalnum() or value.lower() != value:
        raise FieldValueError(attribute.name,
                              f"expected a HubSpot property name like maxcore_tenant, got {value!r}")


@attrs.frozen
class HubSpotConfig:
    """``crm: {type: hubspot, access_token, ...}``.

    ``access_token``: a private app's token (scopes ``crm.objects.contacts.read/write``
    and ``crm.schemas.contacts.read``). ``tenant_property``: a custom contact property
    (single-line text) created once per account; every contact written carries the
    tenant in it and every search filters on it. ``properties``: the contact properties
    the model may fill; their types and options are read from the account at start.
    ``synonyms`` adds words for enumeration values: ``{hs_lead_status: {NEW: [nouveau]}}``.
    """

    access_token: str = attrs.field(validator=non_empty)
    base_url: str = attrs.field(default="https://api.hubapi.com", validator=[non_empty, http_url])
    tenant_property: str = attrs.field(default="maxcore_tenant", validator=_property_name)
    properties: tuple[str, ...] = DEFAULT_PROPERTIES
    synonyms: dict[str, dict[str, tuple[str, ...]]] = attrs.field(factory=dict)
    phone_region: str = "FR"
    timeout_s: float = attrs.field(default=10.0, validator=in_range(0.1, 300))
