"""``maxcore doctor``: the operator's checklist, run against the live configured services.

The doctor does not know Green-API, EspoCRM, Supabase or OpenAI. It validates the
configuration, builds the runtime, opens every connector of every selected tenant and
reports each connector's own ``health()``: the deep checks (instance authorised,
webhook URL, custom fields on Lead, tables and RLS, model reachable) are written by
each plugin in its health reason. A reason may carry its own remedy after ``fix:``;
otherwise the doctor names a generic one pointing at the tenant's YAML block.

Every check gives one line: ``✓`` ok, ``!`` degraded (reported, not fatal), ``✗`` down
(exit status 1).
"""

from __future__ import annotations

import asyncio
import enum
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from .config import load_config, load_dotenv_files
from .errors import MaxcoreError
from .logs import REDACTOR
from .plugins import PluginSet
from .runtime import Runtime
from .types import Health, HealthStatus

DEFAULT_TIMEOUT_S = 10.0

# What to do when a connector of this kind is down and its reason names no remedy.
GENERIC_FIX = {
    "channel": "check the channel block (instance id, token, webhook URL) of {source}",
    "crm": "check the crm block (url, API key, custom fields rebuilt) of {source}",
    "memory": "check the memory block (url, service key, migrations applied) of {source}",
    "llm": "check the llm block (base_url, API key, model name) of {source}",
}


class Mark(enum.StrEnum):
    OK = "✓"
    WARN = "!"
    FAIL = "✗"


@attrs.frozen
class Check:
    """One line of the doctor's report."""

    mark: Mark
    subject: str
    detail: str = ""
    fix: str = ""

    def lines(self) -> list[str]:
        head = f"{self.mark} {self.subject}"
        if self.detail:
            head += f": {self.detail}"
        return [head, f"    fix: {self.fix}"] if self.fix else [head]


@attrs.define
class Report:
    checks: list[Check] = attrs.field(factory=list)

    def add(self, mark: Mark, subject: str, detail: str = "", fix: str = "") -> None:
        # Reasons come from connectors that talk to services with secrets: redact anyway.
        self.checks.append(Check(mark, subject, REDACTOR(detail), REDACTOR(fix)))

    @property
    def ok(self) -> bool:
        return not any(c.mark is Mark.FAIL for c in self.checks)

    def lines(self) -> list[str]:
        out = [line for check in self.checks for line in check.lines()]
        failed = sum(c.mark is Mark.FAIL for c in self.checks)
        warned = sum(c.mark is Mark.WARN for c in self.checks)
        if failed:
            out.append(f"✗ {failed} check(s) failed, {warned} warning(s)")
        else:
            out.append(f"✓ all {len(self.checks)} check(s) passed, {warned} warning(s)")
        return out


def split_fix(reason: str) -> tuple[str, str]:
    """``"401 from /Lead — fix: set crm.api_key"`` → (``"401 from /Lead"``, ``"set crm.api_key"``)."""
    lowered = reason.lower()
    at = lowered.find("fix:")
    if at < 0:
        return reason.strip(), ""
    detail = reason[:at].rstrip(" -—;,.(\n").strip()
    fix = reason[at + 4:].strip()
    # "... (fix: x)": drop the parenthesis that closed around the fix, not one of its own.
    if fix.endswith(")") and fix.count(")") > fix.count("("):
        fix = fix[:-1].strip()
    return detail, fix


def check_data_dir(report: Report, data_dir: Path) -> None:
    """The data directory must exist (or be creatable) and be writable by this user."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".doctor-", delete=True):
            pass
    except OSError as exc:
        report.add(
            Mark.FAIL, f"data directory {data_dir}", f"not writable ({exc.strerror or exc})",
            f"create it and give it to uid {os.getuid()} (in the container: the maxcore volume "
            "mounted on MAXCORE_DATA_DIR), or set data_dir in maxcore.yaml",
        )
        return
    report.add(Mark.OK, f"data directory {data_dir}", "writable")


async def _open_and_probe(connector: Any, timeout: float) -> tuple[Health, bool]:
    """Open then ask health; returns (health, opened)."""
    try:
        await asyncio.wait_for(connector.open(), timeout)
    except TimeoutError:
        return Health.down(f"open() timed out after {timeout:g}s"), False
    except Exception as exc:  # noqa: BLE001 - any failure is a finding, not a crash
        return Health.down(f"cannot open: {type(exc).__name__}: {exc}"), False
    try:
        return await asyncio.wait_for(connector.health(), timeout), True
    except TimeoutError:
        return Health.down(f"health check timed out after {timeout:g}s"), True
    except Exception as exc:  # noqa: BLE001
        return Health.down(f"health check raised {type(exc).__name__}: {exc}"), True


async def check_tenants(report: Report, runtime: Runtime, timeout: float) -> None:
    for tenant in runtime.tenants.by_id.values():
        source = tenant.config.source
        for kind, connector in tenant.connectors().items():
            subject = f"{tenant.id} · {kind} {type(connector).name}"
            health, opened = await _open_and_probe(connector, timeout)
            detail, fix = split_fix(health.reason)
            if health.status is HealthStatus.OK:
                report.add(Mark.OK, subject, detail or "ok")
            elif health.status is HealthStatus.DEGRADED:
                report.add(Mark.WARN, subject, f"degraded — {detail}", fix)
            else:
                report.add(
                    Mark.FAIL, subject, f"down — {detail}",
                    fix or GENERIC_FIX.get(kind, "check {source}").format(source=source),
                )
            if opened:
                try:
                    await connector.close()
                except Exception as exc:  # noqa: BLE001 - closing must not hide the findings
                    report.add(Mark.WARN, subject, f"close() failed: {exc}")


async def run_doctor(
    config_dir: Path,
    plugins: PluginSet,
    tenant_ids: Iterable[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Report:
    """Run every check and return the report (never raises for a finding)."""
    report = Report()
    config_dir = Path(config_dir)
    for info in plugins.failed:
        report.add(
            Mark.WARN, f"plugin {info.name}", f"failed to load: {info.error}",
            f"reinstall its distribution ({info.distribution or info.module}) or block it with "
            "MAXCORE_BLOCK_PLUGINS",
        )
    load_dotenv_files(config_dir)
    loaded = load_config(config_dir, plugins)
    if not loaded.ok:
        for problem in loaded.problems:
            report.add(Mark.FAIL, f"config {problem.file}", f"{problem.path}: {problem.message}"
                       if problem.path else problem.message,
                       f"edit {config_dir / problem.file} then run `maxcore check --config {config_dir}`")
        return report
    for secret in loaded.secrets:
        REDACTOR.add(secret)
    names = ", ".join(t.tenant for t in loaded.tenants)
    report.add(Mark.OK, f"config {config_dir}", f"valid, {len(loaded.tenants)} tenant(s): {names}")
    check_data_dir(report, loaded.data_dir)
    try:
        runtime = Runtime(loaded, plugins, tenant_ids=tenant_ids)
    except MaxcoreError as exc:
        report.add(Mark.FAIL, "runtime", str(exc),
                   "pick a configured tenant with --tenant, or fix the file named above")
        return report
    await check_tenants(report, runtime, timeout)
    return report
