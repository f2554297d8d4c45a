"""The core knows no CRM's vocabulary: no EspoCRM option list, no synonym table, no
customer entity name. Those belong to the CRM plugins (plugins/espocrm declares
EspoCRM's; examples/maxcore-hubspot reads HubSpot's from its API).

``maxcore/testing/espocrm/`` is left out on purpose: it is the EspoCRM 8.3 emulator,
whose job is to reproduce EspoCRM's own metadata (core Lead options included) for the
espocrm plugin's tests; it is test support, not the core's vocabulary.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "maxcore"
EXCLUDED = (CORE / "testing" / "espocrm",)

FORBIDDEN = {
    "customer entity name": re.compile(r"DiagnosticIA|MissionMAX"),
    # Quoted option strings of EspoCRM's Lead status/source/industry lists.
    "EspoCRM option": re.compile(
        r"[\"'](Construction|Web Site|Real Estate|In Process|Existing Customer|Public Relations|"
        r"Apparel & Accessories|Recycled|Building Materials & Equipment)[\"']"),
    # A synonym table: a French word as a mapping key.
    "synonym table entry": re.compile(
        r"[\"'](btp|batiment|bâtiment|immobilier|maconnerie|renovation|site web|en cours|perdu)[\"']\s*:"),
}


def _core_files() -> list[Path]:
    files = [p for p in CORE.rglob("*") if p.is_file() and p.suffix in (".py", ".html", ".js", ".json",
                                                                         ".yaml", ".md", ".txt")]
    return sorted(p for p in files if not any(p.is_relative_to(e) for e in EXCLUDED))


def test_the_scan_sees_the_core() -> None:
    names = {p.relative_to(CORE).as_posix() for p in _core_files()}
    assert {"leads.py", "vocabulary.py", "builtin/sqlite_crm.py", "tools/builtin.py"} <= names
    assert not any(name.startswith("testing/espocrm/") for name in names)


@pytest.mark.parametrize("kind", sorted(FORBIDDEN))
def test_no_crm_vocabulary_in_the_core(kind: str) -> None:
    pattern = FORBIDDEN[kind]
    found = [f"{p.relative_to(CORE)}:{n}: {line.strip()}"
             for p in _core_files()
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if pattern.search(line)]
    assert found == [], f"{kind} in the core:\n" + "\n".join(found)


def test_the_patterns_would_catch_the_old_tables() -> None:
    assert FORBIDDEN["EspoCRM option"].search('STATUS = ("New", "Assigned", "In Process")')
    assert FORBIDDEN["synonym table entry"].search('{"btp": "Construction"}')
    assert FORBIDDEN["customer entity name"].search('entities = ("DiagnosticIA",)')
