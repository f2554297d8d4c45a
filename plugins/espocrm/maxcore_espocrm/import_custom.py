"""``maxcore espocrm import-custom PATH``: merge an existing EspoCRM ``custom/`` folder
(e.g. a XAMPP install's ``htdocs/espocrm/custom``) into the customization shipped in
``deploy/espocrm/custom``, and report every conflict.

Rules, per file under ``Espo/Custom/``:

- only in the import: copied in (``added``);
- identical: nothing to do;
- JSON in both: merged key by key (EspoCRM merges metadata the same way): keys only the
  import has are added; a key both have with different values is a ``conflict`` and the
  shipped value stays. Arrays are values: they are compared whole (EspoCRM replaces
  arrays unless they start with ``"__APPEND__"``, so a merged array would change meaning);
- anything else in both, different: a ``conflict``, the shipped file stays.

The shipped side wins every conflict because the connectors depend on it (``tenantId``
on Lead, the Controllers); the report says what the import wanted instead.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import click

from maxcore.cli import config_option

CUSTOM_ROOT = Path("Espo") / "Custom"


@attrs.frozen
class Conflict:
    path: str
    key: str  # the JSON key path ("fields.status.options"), or "" for a whole file
    shipped: Any
    imported: Any


@attrs.define
class Report:
    added: list[str] = attrs.Factory(list)
    merged: list[str] = attrs.Factory(list)
    conflicts: list[Conflict] = attrs.Factory(list)

    def lines(self) -> Iterator[str]:
        for path in self.added:
            yield f"+ {path}: added"
        for path in self.merged:
            yield f"~ {path}: merged (keys only the import had were added)"
        for conflict in self.conflicts:
            where = f"{conflict.path} [{conflict.key}]" if conflict.key else conflict.path
            if conflict.key:
                yield (f"! {where}: kept the shipped {_short(conflict.shipped)}, "
                       f"the import has {_short(conflict.imported)}")
            else:
                yield f"! {where}: both have this file with different content; kept the shipped one"


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def custom_folder(path: Path) -> Path:
    """The folder holding ``Espo/Custom`` in PATH (PATH itself, or its ``custom/``)."""
    for candidate in (path, path / "custom"):
        if (candidate / CUSTOM_ROOT).is_dir():
            return candidate
    raise click.UsageError(f"{path}: no Espo/Custom folder here (give EspoCRM's custom/ folder)")


def merge_json(shipped: Any, imported: Any, path: str, key: str, conflicts: list[Conflict]) -> Any:
    if isinstance(shipped, dict) and isinstance(imported, dict):
        out = dict(shipped)
        for name, value in imported.items():
            if name not in shipped:
                out[name] = value
            else:
                inner = f"{key}.{name}" if key else name
                out[name] = merge_json(shipped[name], value, path, inner, conflicts)
        return out
    if shipped != imported:
        conflicts.append(Conflict(path, key or "(root)", shipped, imported))
    return shipped


def import_custom(source: Path, target: Path) -> Report:
    """Merge ``source/Espo/Custom`` into ``target/Espo/Custom`` (written in place)."""
    report = Report()
    src_root, dst_root = source / CUSTOM_ROOT, target / CUSTOM_ROOT
    for src in sorted(p for p in src_root.rglob("*") if p.is_file()):
        relative = src.relative_to(src_root)
        name = str(CUSTOM_ROOT / relative)
        dst = dst_root / relative
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            report.added.append(name)
            continue
        if src.read_bytes() == dst.read_bytes():
            continue
        if src.suffix == ".json":
            try:
                shipped, imported = json.loads(dst.read_text()), json.loads(src.read_text())
            except ValueError:
                report.conflicts.append(Conflict(name, "", None, None))
                continue
            found: list[Conflict] = []
            merged = merge_json(shipped, imported, name, "", found)
            report.conflicts.extend(found)
            if merged != shipped:
                dst.write_text(json.dumps(merged, indent=4, ensure_ascii=False) + "\n")
                report.merged.append(name)
            continue
        report.conflicts.append(Conflict(name, "", None, None))
    return report


def shipped_custom_dir() -> Path:
    """``deploy/espocrm/custom`` of the checkout maxcore runs from (the default target)."""
    return Path(__file__).resolve().parents[3] / "deploy" / "espocrm" / "custom"


@click.group()
def espocrm() -> None:
    """EspoCRM connector tools."""


@espocrm.command("import-custom")
@config_option
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--into", "target", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="the customization to merge into (default: deploy/espocrm/custom of this checkout)")
def import_custom_command(config_dir: Path, path: Path, target: Path | None) -> None:
    """Merge an existing EspoCRM custom/ folder (PATH) into the shipped customization.

    Exit status 1 when there were conflicts (the shipped side was kept for each). The
    merge reads no maxcore configuration (--config is accepted like by every command)."""
    into = target or shipped_custom_dir()
    if not (into / CUSTOM_ROOT).is_dir():
        raise click.UsageError(f"{into}: no Espo/Custom folder to merge into (use --into)")
    report = import_custom(custom_folder(path), into)
    for line in report.lines():
        click.echo(line)
    click.echo(f"{len(report.added)} added, {len(report.merged)} merged, {len(report.conflicts)} conflict(s)"
               f" in {into}; next: review `git diff`, then deploy/scripts/deploy.sh")
    if report.conflicts:
        raise SystemExit(1)
