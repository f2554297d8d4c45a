"""Entry point (group ``maxcore``): the ``espocrm`` CRM connector, ``maxcore espocrm`` commands."""

from __future__ import annotations

import click

from maxcore import hookimpl

from .crm import EspoCRM


@hookimpl
def register_crms() -> list[type]:
    return [EspoCRM]


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .import_custom import espocrm

    cli.add_command(espocrm)
