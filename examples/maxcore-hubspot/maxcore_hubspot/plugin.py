"""Entry point (group ``maxcore``): registers the ``hubspot`` CRM connector."""

from __future__ import annotations

from maxcore import hookimpl

from .crm import HubSpotCRM


@hookimpl
def register_crms() -> list[type]:
    return [HubSpotCRM]
