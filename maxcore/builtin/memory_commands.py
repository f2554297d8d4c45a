"""``maxcore memory export|forget``: a tenant's memory as JSON lines, and erasure of one contact.

Works with any memory connector (sqlite, supabase, ...): it opens only the tenant's
memory, never its channel, CRM or model. ``forget`` is the right to erasure for one
contact: its facts and conversation history go; the audit log is append-only, so the
erasure itself is audited with a *hashed* chat id (never the raw one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..hookspecs import hookimpl
from ..types import AuditEntry, hash_chat_id


def _memory_of(config_dir: Path, tenant_id: str) -> Any:
    from ..cli import build_runtime

    runtime = build_runtime(config_dir, tenant_ids=[tenant_id])
    return runtime.tenant(tenant_id).memory


def _run(memory: Any, work: Any) -> Any:
    from ..cli import run_on

    return run_on(memory, work)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from ..cli import config_option
    from ..logs import setup_logging

    @cli.group()
    def memory() -> None:
        """Export or erase what a tenant's memory store holds."""

    @memory.command("export")
    @config_option
    @click.option("--tenant", "tenant_id", required=True, help="Tenant id (its YAML 'tenant:').")
    @click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Write to this file instead of standard output.")
    def export_command(config_dir: Path, tenant_id: str, output: Path | None) -> None:
        """Every row the tenant owns, one JSON object per line (with a "table" key)."""
        setup_logging("WARNING")
        rows = _run(_memory_of(config_dir, tenant_id), lambda m: m.export())
        lines = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
        if output is None:
            click.echo(lines, nl=False)
        else:
            output.write_text(lines)
            click.secho(f"✓ {len(rows)} row(s) of tenant {tenant_id} written to {output}",
                        fg="green", err=True)

    @memory.command("forget")
    @config_option
    @click.option("--tenant", "tenant_id", required=True, help="Tenant id (its YAML 'tenant:').")
    @click.option("--chat", "chat_id", required=True, help="The contact's chat id (e.g. 33612345678@c.us).")
    def forget_command(config_dir: Path, tenant_id: str, chat_id: str) -> None:
        """Erase one contact's facts and conversation history (right to erasure)."""
        setup_logging("WARNING")

        async def work(memory: Any) -> int:
            removed = int(await memory.forget(chat_id))
            await memory.audit(AuditEntry(action="contact_forgotten", details={
                "chat_hash": hash_chat_id(chat_id), "rows_removed": removed, "via": "cli"}))
            return removed

        removed = _run(_memory_of(config_dir, tenant_id), work)
        click.secho(f"✓ tenant {tenant_id}: {removed} row(s) erased for {hash_chat_id(chat_id)}",
                    fg="green")
