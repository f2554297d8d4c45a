"""``maxcore usage --tenant T --since 7d``: the tokens a tenant's model calls consumed.

The pipeline audits every model call as an ``llm_call`` entry whose details hold
``model``, ``prompt_tokens`` and ``completion_tokens``; this command reads them back
through the tenant's own memory connector (so it sees that tenant's rows only) and
sums them per model, which is what an operator multiplies by the price list.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import click

from ..hookspecs import hookimpl
from ..types import AuditEntry

# More rows than any sane period holds; reaching it is reported, not silently cut.
MAX_ROWS = 1_000_000
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_since(value: str, now: float | None = None) -> float:
    """``7d`` / ``24h`` / ``30m`` / ``2w`` ago, or an ISO date/time (UTC when naive)."""
    now = time.time() if now is None else now
    match = _DURATION_RE.match(value.lower())
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected a duration such as 7d, 24h, 30m, 2w or a date such as 2026-11-01"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@attrs.define
class ModelUsage:
    model: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "total_tokens": self.total_tokens}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def summarise(entries: Iterable[AuditEntry]) -> list[ModelUsage]:
    """``llm_call`` entries summed per model, most tokens first."""
    by_model: dict[str, ModelUsage] = {}
    for entry in entries:
        if entry.action != "llm_call":
            continue
        model = str(entry.details.get("model") or "unknown")
        usage = by_model.setdefault(model, ModelUsage(model))
        usage.calls += 1
        usage.prompt_tokens += _count(entry.details.get("prompt_tokens"))
        usage.completion_tokens += _count(entry.details.get("completion_tokens"))
    return sorted(by_model.values(), key=lambda u: (-u.total_tokens, u.model))


@click.command("usage")
@click.option("--config", "config_dir", type=click.Path(file_okay=False, path_type=Path),
              default="./config", envvar="MAXCORE_CONFIG", show_default=True, show_envvar=True,
              help="Configuration directory (maxcore.yaml and tenants/).")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id (its YAML 'tenant:').")
@click.option("--since", default="7d", show_default=True,
              help="Period start: 7d, 24h, 30m, 2w, or a date (2026-11-01).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def usage(config_dir: Path, tenant_id: str, since: str, as_json: bool) -> None:
    """Sum a tenant's model tokens (prompt, completion) per model since a moment."""
    # The CLI module imports the plugins, which import this module: import it late.
    from ..cli import build_runtime, run_on
    from ..logs import setup_logging

    setup_logging("WARNING")
    start = parse_since(since)
    runtime = build_runtime(config_dir, tenant_ids=[tenant_id])
    entries: list[AuditEntry] = run_on(
        runtime.tenant(tenant_id).memory,
        lambda memory: memory.audit_log(since=start, action="llm_call", limit=MAX_ROWS),
    )
    rows = summarise(entries)
    period = datetime.fromtimestamp(start, UTC).isoformat(timespec="seconds")
    if as_json:
        click.echo(json.dumps({
            "tenant": tenant_id, "since": period, "truncated": len(entries) >= MAX_ROWS,
            "models": [row.as_dict() for row in rows],
            "total": ModelUsage("all", sum(r.calls for r in rows), sum(r.prompt_tokens for r in rows),
                                sum(r.completion_tokens for r in rows)).as_dict(),
        }, indent=2))
        return
    if not rows:
        click.echo(f"No model call for tenant {tenant_id} since {period}.")
        return
    total = ModelUsage("TOTAL", sum(r.calls for r in rows), sum(r.prompt_tokens for r in rows),
                       sum(r.completion_tokens for r in rows))
    columns = ("MODEL", "CALLS", "PROMPT", "COMPLETION", "TOTAL")
    table = [(r.model, str(r.calls), str(r.prompt_tokens), str(r.completion_tokens), str(r.total_tokens))
             for r in [*rows, total]]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(columns)]
    click.echo(f"Tokens used by tenant {tenant_id} since {period}:")
    click.echo(_line(columns, widths))
    for values in table:
        click.echo(_line(values, widths))
    if len(entries) >= MAX_ROWS:
        click.secho(f"! only the first {MAX_ROWS} calls were counted; narrow --since", fg="yellow")


def _line(values: tuple[str, ...], widths: list[int]) -> str:
    # The model name left-aligned, the numbers right-aligned.
    cells = zip(values, widths, strict=True)
    return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(cells))


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(usage)
