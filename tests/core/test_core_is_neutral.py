"""The core knows no CRM's vocabulary and no provider's payload: no EspoCRM option list,
no synonym table, no customer entity name, no Green-API URL shape or message type. Those
belong to the plugins (plugins/espocrm declares EspoCRM's vocabulary, examples/maxcore-hubspot
reads HubSpot's from its API, plugins/greenapi maps Green-API's types and URL shape).

``maxcore/testing/espocrm/`` is left out on purpose: it is the EspoCRM 8.3 emulator,
whose job is to reproduce EspoCRM's own metadata (core Lead options included) for the
espocrm plugin's tests; it is test support, not the core's vocabulary. The Green-API
emulator is left out for the same reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "maxcore"
# Emulators reproduce their upstream on purpose: test support, not the core's knowledge.
EXCLUDED = (CORE / "testing" / "espocrm", CORE / "testing" / "greenapi_emulator.py")

FORBIDDEN = {
    "customer entity name": re.compile(r"DiagnosticIA|MissionMAX"),
    # Quoted option strings of EspoCRM's Lead status/source/industry lists.
    "EspoCRM option": re.compile(
        r"[\"'](Construction|Web Site|Real Estate|In Process|Existing Customer|Public Relations|"
        r"Apparel & Accessories|Recycled|Building Materials & Equipment)[\"']"),
    # A synonym table: a French word as a mapping key.
    "synonym table entry": re.compile(
        r"[\"'](btp|batiment|bâtiment|immobilier|maconnerie|renovation|site web|en cours|perdu)[\"']\s*:"),
    # Green-API's URL shape and payload vocabulary (the greenapi plugin's business).
    "Green-API URL shape": re.compile(r"waInstance"),
    "Green-API payload field": re.compile(r"typeMessage|typeWebhook|[\"']instanceData[\"']"),
    "Green-API message type": re.compile(
        r"(text|extendedText|image|video|audio|document|sticker|location|contact|reaction|edited|"
        r"deleted|quoted)Message\b"),
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
    assert FORBIDDEN["Green-API URL shape"].search(r'(/waInstance\d+/[A-Za-z]+/)')
    assert FORBIDDEN["Green-API message type"].search('kind.replace("Message", "") == "imageMessage"')
    assert FORBIDDEN["Green-API payload field"].search('data["messageData"]["typeMessage"]')
