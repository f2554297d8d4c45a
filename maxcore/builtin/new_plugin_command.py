"""``maxcore new-plugin NAME --kind K``: a new plugin distribution that works as generated.

Registered through the ``register_commands`` hook, like any plugin's command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..hookspecs import hookimpl
from ..scaffold import KINDS, ScaffoldError, plugin_names, write_plugin


def _config_option(fn: Any) -> Any:
    from ..cli import config_option

    return config_option(fn)


@click.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(list(KINDS)), required=True,
              help="What the connector is: a CRM, a channel, a memory store or an LLM.")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="Where the new maxcore-NAME/ directory is created.")
@_config_option
def new_plugin(name: str, kind: str, parent: Path, config_dir: Path) -> None:
    """Create maxcore-NAME/: a distribution with a working KIND connector and its contract tests."""
    from ..cli import plugins  # the command line loads plugins before click parses arguments

    try:
        names = plugin_names(name, kind)
    except ScaffoldError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    taken = plugins().connector_class(kind, names.name)
    if taken is not None:
        owner = getattr(taken, "__maxcore_plugin__", "?")
        raise click.BadParameter(
            f"a {kind} connector named {names.name!r} already exists (plugin {owner}); "
            "tenants could not tell them apart: choose another name", param_hint="NAME")
    try:
        target = write_plugin(names, parent)
    except (ScaffoldError, OSError) as exc:
        click.secho(f"✗ {exc}", fg="red", err=True)
        sys.exit(1)
    click.secho(f"✓ created {target}: the {kind} connector {names.class_name} "
                f"(tenant YAML `{kind}: {{type: {names.name}}}`)", fg="green")
    click.echo(f"Next:\n  pip install -e '{target}[test]'\n  pytest {target}\n  maxcore plugins")
    # The configuration is only named in the next steps: nothing is read from it.
    click.echo(f"  then `{kind}: {{type: {names.name}}}` in a tenant of {config_dir / 'tenants'}/ and "
               f"`maxcore check --config {config_dir}`")


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(new_plugin)
