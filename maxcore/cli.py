"""The ``maxcore`` command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from loguru import logger

from . import __version__
from .config import load_config, load_dotenv_files
from .errors import MaxcoreError, PluginError
from .logs import setup_logging
from .plugins import PluginSet, load_plugins

DEFAULT_CONFIG = "./config"
T = TypeVar("T")
_PLUGINS: PluginSet | None = None


def plugins() -> PluginSet:
    global _PLUGINS
    if _PLUGINS is None:
        _PLUGINS = load_plugins()
    return _PLUGINS


def config_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config", "config_dir", type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_CONFIG, envvar="MAXCORE_CONFIG", show_default=True, show_envvar=True,
        help="Configuration directory (maxcore.yaml and tenants/).",
    )(fn)


def fail(message: str, code: int = 1) -> None:
    click.secho(f"✗ {message}", fg="red", err=True)
    sys.exit(code)


def build_runtime(config_dir: Path, **kwargs: Any) -> Any:
    from .runtime import ConfigInvalid, Runtime, load_checked

    try:
        loaded = load_checked(config_dir, plugins())
    except ConfigInvalid as exc:
        for problem in exc.problems:
            click.secho(f"✗ {problem}", fg="red", err=True)
        fail(f"configuration in {config_dir} is invalid ({len(exc.problems)} problem(s)); "
             "nothing was started")
    try:
        return Runtime(loaded, plugins(), **kwargs)
    except MaxcoreError as exc:
        fail(loaded.mask(str(exc)))


def warn_failed_plugins() -> None:
    """One line per plugin that is not loaded (the others work without it)."""
    for info in plugins().failed:
        click.secho(f"! plugin {info.name} ({info.origin}) is not loaded: {info.error}",
                    fg="yellow", err=True)


def run_on(connector: Any, work: Callable[[Any], Awaitable[T]]) -> T:
    """Open ``connector``, run ``work(connector)``, close it; a MaxcoreError ends the command."""

    async def run() -> T:
        await connector.open()
        try:
            return await work(connector)
        finally:
            await connector.close()

    try:
        return asyncio.run(run())
    except MaxcoreError as exc:
        fail(str(exc))
        raise AssertionError("unreachable") from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="maxcore")
def cli() -> None:
    """maxcore: WhatsApp conversations turned into CRM work."""


@cli.command()
@config_option
@click.option("--host", default=None, help="Bind address (default: server.host, 0.0.0.0).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port (default: server.port, 3005; 0: any free port, the one bound is logged).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None)
@click.option("--log-level", default=None, help="TRACE, DEBUG, INFO, WARNING or ERROR.")
@click.option("--role", type=click.Choice(["all", "web", "worker"]), default="all",
              envvar="MAXCORE_ROLE", show_default=True, show_envvar=True,
              help="web: webhooks into the inbox; worker: process the inbox (no HTTP); "
                   "all: both. Run one web and one worker on the same data dir to use two cores.")
def serve(config_dir: Path, host: str | None, port: int | None, log_format: str | None,
          log_level: str | None, role: str) -> None:
    """Run the HTTP server (webhooks, /api/health, /chat)."""
    from .server import run_server

    setup_logging("INFO", log_format or "text")
    warn_failed_plugins()
    runtime = build_runtime(config_dir, role=role)
    logging_cfg = runtime.config.logging
    setup_logging(log_level or logging_cfg.level, log_format or logging_cfg.format)
    server = runtime.config.server
    asyncio.run(run_server(runtime, config_dir, host or server.host,
                           server.port if port is None else port))


@cli.command()
@config_option
def check(config_dir: Path) -> None:
    """Validate every configuration file; exit 1 listing every problem."""
    from .runtime import Runtime

    load_dotenv_files(config_dir)
    loaded = load_config(config_dir, plugins())
    problems = [str(p) for p in loaded.problems]
    if not problems:
        try:
            Runtime(loaded, plugins())
        except MaxcoreError as exc:
            problems.append(loaded.mask(str(exc)))
    warn_failed_plugins()
    if problems:
        for problem in problems:
            click.secho(f"✗ {problem}", fg="red")
        click.secho(f"{len(problems)} problem(s) in {config_dir}", fg="red")
        sys.exit(1)
    names = ", ".join(t.tenant for t in loaded.tenants)
    click.secho(f"✓ {config_dir}: valid, {len(loaded.tenants)} tenant(s): {names}", fg="green")


@cli.command("plugins")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(config_dir: Path, as_json: bool) -> None:
    """List the loaded plugins, what each provides and which tenants use it."""
    loaded_plugins = plugins()
    loaded_plugins.describe_commands()
    source = click.get_current_context().get_parameter_source("config_dir")
    if config_dir.is_dir():
        load_dotenv_files(config_dir)
        loaded = load_config(config_dir, loaded_plugins)
        loaded_plugins.describe_usage(loaded.tenants)
        if loaded.problems:
            click.secho(f"! {config_dir}: {len(loaded.problems)} configuration problem(s); "
                        "`maxcore check` lists them", fg="yellow", err=True)
    elif source not in (click.core.ParameterSource.DEFAULT, None):
        click.secho(f"! {config_dir}: configuration directory does not exist", fg="yellow", err=True)
    infos = sorted(loaded_plugins.infos.values(), key=lambda i: (not i.builtin, i.name))
    channels = {info.name: {name: _channel_traits(loaded_plugins.connector_class("channel", name))
                            for name in info.connectors.get("channel", [])} for info in infos}
    if as_json:
        click.echo(json.dumps([{**info.as_dict(), "channels": channels[info.name]} for info in infos],
                              indent=2))
        return
    for info in infos:
        version = f" {info.version}" if info.version else ""
        if info.error:
            click.secho(f"✗ {info.name}{version} ({info.origin}): {info.error}", fg="red")
            continue
        origin = "built-in" if info.builtin else (info.distribution or "external")
        provides = [f"{kind}: {', '.join(names)}" for kind, names in sorted(info.connectors.items())
                    if kind != "channel"]
        provides[:0] = [f"channel: {name} [{_channel_summary(traits)}]"
                        for name, traits in channels[info.name].items()]
        if info.tools:
            provides.append(f"tools: {', '.join(info.tools)}")
        if info.commands:
            provides.append(f"commands: {', '.join(info.commands)}")
        others = [h for h in info.hooks if not h.startswith("register_")]
        if "register_routes" in info.hooks:
            provides.append("http routes")
        if others:
            provides.append(f"hooks: {', '.join(others)}")
        if info.used_by:
            provides.append(f"used by: {', '.join(info.used_by)}")
        click.echo(f"✓ {info.name}{version} ({origin}) — {'; '.join(provides) or 'nothing registered'}")


def _channel_traits(cls: type | None) -> dict[str, Any]:
    """What ``maxcore plugins`` says of a channel class: where it routes, whether it
    reconciles interrupted sends (else they are sent again: at least once)."""
    from .routing import Routing

    routing = getattr(cls, "routing", None)
    return {
        "routing": ({"source": str(routing.source), "field": routing.field}
                    if isinstance(routing, Routing) else None),
        "reconciles_sends": getattr(cls, "can_reconcile", False) is True,
    }


def _channel_summary(traits: dict[str, Any]) -> str:
    routing = traits["routing"]
    where = "undeclared" if routing is None else (
        f"{routing['source']}: {routing['field']}" if routing["source"] == "custom"
        else f"{routing['source']} {routing['field']}".rstrip())
    return f"routing: {where}, reconciles sends: {'yes' if traits['reconciles_sends'] else 'no'}"


@cli.command()
@config_option
@click.option("--tenant", "tenant_id", required=True, help="Tenant id (its YAML 'tenant:').")
@click.option("-m", "--message", "text", default=None, help="Send one message, print the reply, exit.")
@click.option("--chat", "chat_id", default="console", show_default=True,
              help="Conversation id (memory is kept per conversation).")
@click.option("-v", "--verbose", is_flag=True, help="Show the pipeline's log lines.")
def chat(config_dir: Path, tenant_id: str, text: str | None, chat_id: str, verbose: bool) -> None:
    """Talk to a tenant's assistant from the terminal (replies come back here)."""
    from .builtin.console import ConsoleChannel, ConsoleConfig
    from .prompts import pack_of
    from .types import InboundMessage

    setup_logging("INFO" if verbose else "WARNING")
    runtime = build_runtime(
        config_dir, tenant_ids=[tenant_id],
        channel_factory=lambda ctx: ConsoleChannel(ConsoleConfig(), ctx),
    )

    async def talk() -> None:
        await runtime.open()
        try:
            lines = [text] if text is not None else None
            prompt = pack_of(runtime.tenant(tenant_id).config.assistant).texts["console_prompt"]
            while True:
                if lines is not None:
                    if not lines:
                        return
                    line = lines.pop(0)
                else:
                    try:
                        line = await asyncio.to_thread(input, prompt)
                    except (EOFError, KeyboardInterrupt):
                        click.echo()
                        return
                if not line.strip():
                    continue
                message = InboundMessage(
                    tenant=tenant_id, channel="console", chat_id=chat_id, text=line.strip()
                )
                await runtime.process_now(message)
        finally:
            await runtime.close()

    try:
        asyncio.run(talk())
    except MaxcoreError as exc:
        fail(str(exc))


@cli.command()
@config_option
@click.option("--tenant", "tenant_id", required=True)
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def leads(config_dir: Path, tenant_id: str, limit: int, as_json: bool) -> None:
    """List a tenant's leads from its CRM."""
    setup_logging("WARNING")
    runtime = build_runtime(config_dir, tenant_ids=[tenant_id])
    found = run_on(runtime.tenant(tenant_id).crm, lambda crm: crm.list_leads(limit=limit))
    if as_json:
        click.echo(json.dumps([lead.as_dict() for lead in found], indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo(f"No lead for tenant {tenant_id}.")
        return
    # Identity, then the CRM's own fields, in the order they first appear.
    extra = list(dict.fromkeys(name for lead in found for name in lead.fields))
    columns = ("id", "name", "phone", "email", "company", *extra)
    rows = [
        (lead.id or "", lead.full_name, lead.phone or "", lead.email or "", lead.company or "",
         *(str(lead.fields.get(name) or "") for name in extra))
        for lead in found
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    click.echo(f"{len(rows)} lead(s)")


@cli.command()
@config_option
def reload(config_dir: Path) -> None:
    """Ask the running server to reload its configuration (SIGHUP)."""
    load_dotenv_files(config_dir)
    loaded = load_config(config_dir, plugins())
    if not loaded.ok:
        for problem in loaded.problems:
            click.secho(f"✗ {problem}", fg="red")
        fail("configuration is invalid; the server keeps the one it has")
    pid_path = loaded.data_dir / "maxcore.pid"
    try:
        pid = int(pid_path.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        fail(f"no running server found (pid file {pid_path})")
    click.secho(f"✓ reload requested (pid {pid}); the server log says when it is done", fg="green")
    _reload_worker(loaded.data_dir / "maxcore-worker.pid")


def _reload_worker(pid_path: Path) -> None:
    """SIGHUP the ``--role worker`` process too, if this machine sees it.

    Only a process whose command line is a maxcore worker is signalled: in a compose
    stack the worker runs in another container, where its pid number names some other
    process (or none) of this one.
    """
    try:
        pid = int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return  # no worker process beside the server
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        command = []
    if b"serve" in command and b"worker" in command:
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError:
            pass
        else:
            click.secho(f"✓ reload requested from the worker too (pid {pid})", fg="green")
            return
    click.secho(f"! a worker process wrote {pid_path}, but pid {pid} is not a maxcore worker here "
                "(another container?): send it SIGHUP yourself, e.g. "
                "`docker compose kill -s HUP maxcore-worker`", fg="yellow")


def main() -> None:
    try:
        loaded = plugins()
    except PluginError as exc:
        fail(f"plugins: {exc}", code=2)
    loaded.hooks.register_commands(cli)
    logger.remove()
    cli()


if __name__ == "__main__":
    main()
