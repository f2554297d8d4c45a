"""``maxcore inbox``: look into the durable inbox, replay dead letters, purge old rows.

Works on the SQLite file named by ``inbox.path`` in maxcore.yaml (under the data
directory), whether or not the server runs: a running server picks up messages put back
by ``retry`` within ``inbox.poll_interval_s``; a stopped one resumes them on start.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ..cli import config_option, fail, plugins
from ..config import load_config, load_dotenv_files
from ..durable_inbox import STATES, connect, inbox_path
from ..hookspecs import hookimpl

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w`` → seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise click.BadParameter(f"expected a duration like 7d, 12h, 30m; got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def open_inbox(config_dir: Path, must_exist: bool = True) -> sqlite3.Connection:
    load_dotenv_files(config_dir)
    loaded = load_config(config_dir, plugins())
    main_problems = [p for p in loaded.problems if p.file == "maxcore.yaml" or not p.file.endswith(".yaml")]
    if main_problems:
        for problem in main_problems:
            click.secho(f"✗ {problem}", fg="red", err=True)
        fail(f"cannot read the inbox settings in {config_dir}")
    config = loaded.main.inbox
    if config.type != "sqlite":
        fail(f"inbox.type is {config.type!r}: messages are not stored, there is nothing to show")
    path = inbox_path(config, loaded.data_dir)
    if must_exist and not path.exists():
        fail(f"no inbox database at {path} yet (the server creates it on the first message)")
    return connect(path, config.synchronous)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(columns: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _short(text: str | None, width: int = 60) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


@click.group("inbox", invoke_without_command=True)
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def inbox(ctx: click.Context, config_dir: Path, as_json: bool) -> None:
    """Messages by state and tenant (subcommands: list, show, retry, purge)."""
    ctx.obj = config_dir
    if ctx.invoked_subcommand is not None:
        return
    conn = open_inbox(config_dir, must_exist=False)
    counts: dict[str, dict[str, int]] = {}
    for row in conn.execute("SELECT tenant, state, COUNT(*) AS n FROM inbox GROUP BY tenant, state"):
        counts.setdefault(row["tenant"], dict.fromkeys(STATES, 0))[row["state"]] = row["n"]
    conn.close()
    if as_json:
        click.echo(json.dumps(counts, indent=2))
        return
    rows = [[tenant, *(str(by_state[s]) for s in STATES)] for tenant, by_state in sorted(counts.items())]
    totals = [sum(by_state[s] for by_state in counts.values()) for s in STATES]
    rows.append(["(all)", *(str(t) for t in totals)])
    _table(["TENANT", *(s.upper() for s in STATES)], rows)


def _config_dir(ctx: click.Context, config_dir: Path | None) -> Path:
    # Accept --config before or after the subcommand name.
    return config_dir if config_dir is not None else ctx.obj


def _sub_config(fn: Any) -> Any:
    return click.option(
        "--config", "config_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Configuration directory (default: the one given to `maxcore inbox`).",
    )(fn)


@inbox.command("list")
@click.option("--state", type=click.Choice(STATES), required=True)
@click.option("--tenant", "tenant_id", default=None, help="Only this tenant's messages.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_sub_config
@click.pass_context
def list_command(
    ctx: click.Context, state: str, tenant_id: str | None, limit: int, as_json: bool, config_dir: Path | None
) -> None:
    """Messages in one state, oldest first."""
    conn = open_inbox(_config_dir(ctx, config_dir), must_exist=False)
    sql = "SELECT id, tenant, channel, chat_id, message_id, state, attempts, last_error, received_at, " \
          "updated_at FROM inbox WHERE state = ?"
    params: list[Any] = [state]
    if tenant_id:
        sql += " AND tenant = ?"
        params.append(tenant_id)
    rows = conn.execute(sql + " ORDER BY id LIMIT ?", [*params, limit]).fetchall()
    conn.close()
    if as_json:
        click.echo(json.dumps([dict(r) for r in rows], indent=2, ensure_ascii=False))
        return
    _table(
        ["ID", "TENANT", "CHANNEL", "CHAT", "MESSAGE", "ATTEMPTS", "RECEIVED", "LAST ERROR"],
        [[str(r["id"]), r["tenant"], r["channel"], _short(r["chat_id"], 24), _short(r["message_id"], 24),
          str(r["attempts"]), _when(r["received_at"]), _short(r["last_error"])] for r in rows],
    )
    click.echo(f"{len(rows)} {state} message(s)")


@inbox.command("show")
@click.argument("message_id", type=int)
@_sub_config
@click.pass_context
def show_command(ctx: click.Context, message_id: int, config_dir: Path | None) -> None:
    """Everything stored about one message (ID as printed by `list`)."""
    conn = open_inbox(_config_dir(ctx, config_dir))
    row = conn.execute("SELECT * FROM inbox WHERE id = ?", (message_id,)).fetchone()
    conn.close()
    if row is None:
        fail(f"no message with id {message_id}")
    data = dict(row)
    data["payload"] = json.loads(data["payload"])
    data["received_at"] = _when(data["received_at"])
    data["updated_at"] = _when(data["updated_at"])
    data.pop("retry_requested", None)
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@inbox.command("retry")
@click.argument("message_id", type=int, required=False)
@click.option("--all-dead", is_flag=True, help="Every dead message (of --tenant, if given).")
@click.option("--tenant", "tenant_id", default=None)
@_sub_config
@click.pass_context
def retry_command(
    ctx: click.Context, message_id: int | None, all_dead: bool, tenant_id: str | None, config_dir: Path | None
) -> None:
    """Put dead messages back to pending, with a fresh attempt budget."""
    if (message_id is None) == (not all_dead):
        fail("give either a message ID or --all-dead")
    conn = open_inbox(_config_dir(ctx, config_dir))
    now = time.time()
    update = ("UPDATE inbox SET state = 'pending', attempts = 0, crashes = 0, retry_requested = 1, "
              "updated_at = ?")
    if message_id is not None:
        row = conn.execute("SELECT state FROM inbox WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            fail(f"no message with id {message_id}")
        if row["state"] != "dead":
            fail(f"message {message_id} is {row['state']}; only dead messages are retried")
        count = conn.execute(update + " WHERE id = ? AND state = 'dead'", (now, message_id)).rowcount
    else:
        sql = update + " WHERE state = 'dead'"
        params: list[Any] = [now]
        if tenant_id:
            sql += " AND tenant = ?"
            params.append(tenant_id)
        count = conn.execute(sql, params).rowcount
    conn.close()
    click.secho(f"✓ {count} message(s) put back to pending; a running server picks them up "
                "within inbox.poll_interval_s, a stopped one on its next start", fg="green")


@inbox.command("purge")
@click.option("--done-older-than", "older_than", required=True, metavar="DURATION",
              help="Delete done messages last updated before this (7d, 12h, 30m).")
@_sub_config
@click.pass_context
def purge_command(ctx: click.Context, older_than: str, config_dir: Path | None) -> None:
    """Delete old done messages. Keep them longer than the provider redelivers (24 h for Green-API)."""
    seconds = parse_duration(older_than)
    conn = open_inbox(_config_dir(ctx, config_dir), must_exist=False)
    count = conn.execute(
        "DELETE FROM inbox WHERE state = 'done' AND updated_at < ?", (time.time() - seconds,)
    ).rowcount
    conn.close()
    click.secho(f"✓ {count} done message(s) older than {older_than} deleted", fg="green")


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(inbox)
