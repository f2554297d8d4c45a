"""Entry point (group ``maxcore``): registers the ``espocrm`` CRM connector."""

from __future__ import annotations

from maxcore import hookimpl

from .crm import EspoCRM


@hookimpl
def register_crms() -> list[type]:
    return [EspoCRM]
