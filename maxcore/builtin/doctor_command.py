"""Registers ``maxcore doctor`` through the ``register_commands`` hook, like any plugin."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from .. import hookimpl


@click.command("doctor")
@click.option(
    "--config", "config_dir", type=click.Path(file_okay=False, path_type=Path), default="./config",
    envvar="MAXCORE_CONFIG", show_default=True, show_envvar=True,
    help="Configuration directory (maxcore.yaml and tenants/).",
)
@click.option("--tenant", "tenant_ids", multiple=True, help="Check only this tenant (repeatable).")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Seconds allowed to each connector's open() and health().")
def doctor(config_dir: Path, tenant_ids: tuple[str, ...], timeout: float) -> None:
    """Check config and every connector against the live services; exit 1 if anything is down."""
    # Imported here: the command line loads plugins before click parses arguments.
    from ..cli import plugins
    from ..doctor import Mark, run_doctor
    from ..logs import setup_logging

    setup_logging("ERROR")
    report = asyncio.run(run_doctor(config_dir, plugins(), tenant_ids or None, timeout))
    colours = {Mark.OK: "green", Mark.WARN: "yellow", Mark.FAIL: "red"}
    for check in report.checks:
        for index, line in enumerate(check.lines()):
            click.secho(line, fg=colours[check.mark] if index == 0 else None)
    summary = report.lines()[-1]
    click.secho(summary, fg="green" if report.ok else "red", bold=True)
    sys.exit(0 if report.ok else 1)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(doctor)
