"""``maxcore memory export|forget``: a tenant's memory as JSON lines, and erasure of one contact.

Works with any memory connector (sqlite, supabase, ...): it opens only the tenant's
memory, never its channel, CRM or model. ``forget`` is the right to erasure for one
contact: its facts and conversation history go, and so do its messages' contents in the
inbox and their journals; the audit log is append-only, so the erasure itself is audited
with a *hashed* chat id (never the raw one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..hookspecs import hookimpl
from ..types import AuditEntry, hash_chat_id


def _runtime_of(config_dir: Path, tenant_id: str) -> Any:
    from ..cli import build_runtime

    return build_runtime(config_dir, tenant_ids=[tenant_id])


def _memory_of(config_dir: Path, tenant_id: str) -> Any:
    return _runtime_of(config_dir, tenant_id).tenant(tenant_id).memory


def forget_in_inbox(runtime: Any, tenant_id: str, chat_id: str) -> int:
    """Erase the contact from the inbox's stored messages and the journal (same file)."""
    from ..durable_inbox import connect, inbox_path
    from ..journal_sqlite import forget_contact

    config = runtime.config.inbox
    path = inbox_path(config, runtime.loaded.data_dir)
    if config.type != "sqlite" or not path.exists():
        return 0
    conn = connect(path, config.synchronous)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            removed = forget_contact(conn, tenant_id, chat_id)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return removed
    finally:
        conn.close()


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
        """Erase one contact's facts and conversation history, and the contact's traces in
        the inbox and the journal (right to erasure)."""
        setup_logging("WARNING")
        runtime = _runtime_of(config_dir, tenant_id)
        erased = forget_in_inbox(runtime, tenant_id, chat_id)

        async def work(memory: Any) -> int:
            removed = int(await memory.forget(chat_id)) + erased
            await memory.audit_batch([AuditEntry(action="contact_forgotten", details={
                "chat_hash": hash_chat_id(chat_id), "rows_removed": removed, "via": "cli"})])
            return removed

        removed = _run(runtime.tenant(tenant_id).memory, work)
        click.secho(f"✓ tenant {tenant_id}: {removed} row(s) erased for {hash_chat_id(chat_id)}",
                    fg="green")
