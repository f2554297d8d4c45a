"""The customization files: valid JSON, what the plugin writes exists, 8.3 rules kept."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from maxcore_espocrm.options import (
    LEAD_CORE_ATTRIBUTES,
    LEAD_CUSTOM_ATTRIBUTES,
    LEAD_OPTIONS,
    RECORD_FIELDS,
)

from maxcore.testing.espocrm import Metadata, default_custom_dir, merge

CUSTOM = default_custom_dir()
ROOT = CUSTOM / "Espo" / "Custom" if CUSTOM else None
CUSTOM_ENTITIES = ("DiagnosticIA", "MissionMAX")
pytestmark = pytest.mark.skipif(ROOT is None, reason="deploy/espocrm/custom not in this checkout")


def _json_files() -> list[Path]:
    return sorted(ROOT.rglob("*.json")) if ROOT else []


@pytest.mark.parametrize("path", _json_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_json_file_parses(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict | list)


def test_lead_custom_fields_and_tenant_index() -> None:
    lead = json.loads((ROOT / "Resources/metadata/entityDefs/Lead.json").read_text())
    fields = lead["fields"]
    for name in ("tenantId", *LEAD_CUSTOM_ATTRIBUTES):
        assert name in fields, name
    assert fields["tenantId"]["type"] == "varchar"
    assert fields["tenantId"]["maxLength"] >= 63  # tenant ids are up to 63 characters
    assert lead["indexes"]["tenantId"]["columns"] == ["tenantId", "deleted"]
    # Options are appended, never replacing the core list.
    for field in ("status", "source", "salutationName"):
        options = fields.get(field, {}).get("options")
        if options is not None:
            assert options[0] == "__APPEND__", field


def test_plugin_options_match_the_merged_metadata() -> None:
    lead = Metadata(CUSTOM).entity("Lead")
    for field, options in LEAD_OPTIONS.items():
        assert tuple(o for o in lead.options(field) if o) == options, field
    assert "WhatsApp" in LEAD_OPTIONS["source"]


def test_attributes_the_plugin_writes_exist() -> None:
    metadata = Metadata(CUSTOM)
    lead = metadata.entity("Lead")
    for attribute in (*LEAD_CORE_ATTRIBUTES, *LEAD_CUSTOM_ATTRIBUTES, "tenantId"):
        assert attribute in lead.attributes, attribute
    for entity, fields in RECORD_FIELDS.items():
        defs = metadata.entity(entity)
        assert defs is not None and defs.has_controller, entity
        for attribute in (*fields, "tenantId", "assignedUserId", "teamsIds"):
            assert attribute in defs.attributes, f"{entity}.{attribute}"


@pytest.mark.parametrize("entity", CUSTOM_ENTITIES)
def test_custom_entity_is_complete(entity: str) -> None:
    base = ROOT / "Resources"
    scope = json.loads((base / f"metadata/scopes/{entity}.json").read_text())
    assert scope["entity"] and scope["object"] and scope["acl"]  # object: webhooks; acl: roles
    assert scope["isCustom"] and scope["module"] == "Custom"
    assert json.loads((base / f"metadata/clientDefs/{entity}.json").read_text())["controller"]
    defs = json.loads((base / f"metadata/entityDefs/{entity}.json").read_text())
    assert defs["fields"]["lead"]["type"] == "link"
    assert defs["links"]["lead"]["entity"] == "Lead"
    assert defs["indexes"]["tenantId"]["columns"] == ["tenantId", "deleted"]
    for layout in ("detail", "list"):
        names = json.dumps(json.loads((base / f"layouts/{entity}/{layout}.json").read_text()))
        for field in re.findall(r'"name": "([^"]+)"', names):
            assert field in defs["fields"], f"{entity} {layout} layout names unknown field {field}"
    for language in ("fr_FR", "en_US"):
        labels = json.loads((base / f"i18n/{language}/{entity}.json").read_text())
        for field in defs["fields"]:
            if field not in ("createdAt", "modifiedAt", "createdBy", "modifiedBy", "assignedUser", "teams"):
                assert field in labels["fields"], f"{language} {entity}.{field}"
        for field, definition in defs["fields"].items():
            for option in definition.get("options", []):
                assert option in labels["options"][field], f"{language} {entity}.{field}.{option}"
        global_labels = json.loads((base / f"i18n/{language}/Global.json").read_text())
        assert entity in global_labels["scopeNames"] and entity in global_labels["scopeNamesPlural"]
    # 8.3 answers 404 "Controller ... does not exist." without this class.
    php = (ROOT / "Controllers" / f"{entity}.php").read_text()
    assert "namespace Espo\\Custom\\Controllers;" in php
    assert re.search(rf"class {entity} extends \\Espo\\Core\\Templates\\Controllers\\Base", php)


def test_lead_labels_in_both_languages() -> None:
    for language in ("fr_FR", "en_US"):
        labels = json.loads((ROOT / f"Resources/i18n/{language}/Lead.json").read_text())
        for field in ("tenantId", *LEAD_CUSTOM_ATTRIBUTES):
            assert field in labels["fields"], f"{language} Lead.{field}"
        assert "WhatsApp" in labels["options"]["source"]


def test_no_ui_style_c_prefixes() -> None:
    """Names created in the admin UI get a c/C prefix; ours are file-defined and must not."""
    prefixed = re.compile(r"^c[A-Z]|^C[A-Z][a-z]")
    offenders = [p.name for p in ROOT.rglob("*") if prefixed.match(p.stem)]
    for path in (ROOT / "Resources/metadata/entityDefs").glob("*.json"):
        data = json.loads(path.read_text())
        offenders += [f"{path.stem}.{name}" for name in {**data.get("fields", {}), **data.get("links", {})}
                      if prefixed.match(name)]
    assert offenders == []


def test_merge_rules() -> None:
    assert merge({"a": [1, 2]}, {"a": ["__APPEND__", 3]}) == {"a": [1, 2, 3]}
    assert merge({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}
