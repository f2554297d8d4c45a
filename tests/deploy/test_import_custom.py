"""``maxcore espocrm import-custom``: an existing EspoCRM custom/ folder merged into a copy
of the shipped customization, conflicts reported, the shipped side kept."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from click.testing import CliRunner
from maxcore_espocrm.import_custom import espocrm as main

from .conftest import DEPLOY, maxcore_binary

LEAD = Path("Espo/Custom/Resources/metadata/entityDefs/Lead.json")


def test_import_merges_adds_and_reports_conflicts(tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    shutil.copytree(DEPLOY / "espocrm" / "custom", shipped)
    before = json.loads((shipped / LEAD).read_text())
    xampp = tmp_path / "htdocs" / "espocrm" / "custom"
    (xampp / LEAD).parent.mkdir(parents=True)
    first_field = next(iter(before["fields"]))
    (xampp / LEAD).write_text(json.dumps({"fields": {
        "cBudget": {"type": "currency"},                      # only the old install has it
        first_field: {**before["fields"][first_field], "maxLength": 999},  # a different value
    }}))
    (xampp / "Espo/Custom/Resources/layouts/Lead").mkdir(parents=True)
    (xampp / "Espo/Custom/Resources/layouts/Lead/detail.json").write_text("[]")
    shutil.copytree(shipped / "Espo/Custom/Controllers", xampp / "Espo/Custom/Controllers")
    (xampp / "Espo/Custom/Controllers/MissionMAX.php").write_text("<?php // an older controller\n")

    result = CliRunner().invoke(main, ["import-custom", str(xampp.parent), "--into", str(shipped)])
    assert result.exit_code == 1, result.output
    merged = json.loads((shipped / LEAD).read_text())
    assert merged["fields"]["cBudget"] == {"type": "currency"}
    assert merged["fields"][first_field] == before["fields"][first_field]  # shipped value kept
    assert (shipped / "Espo/Custom/Resources/layouts/Lead/detail.json").read_text() == "[]"
    assert "older controller" not in (shipped / "Espo/Custom/Controllers/MissionMAX.php").read_text()
    out = result.output
    assert "+ Espo/Custom/Resources/layouts/Lead/detail.json: added" in out
    assert f"! {LEAD} [fields.{first_field}.maxLength]" in out
    assert "! Espo/Custom/Controllers/MissionMAX.php: both have this file" in out
    assert "1 added, 1 merged, 2 conflict(s)" in out

    # Importing the result again changes nothing and reports nothing.
    again = CliRunner().invoke(main, ["import-custom", str(shipped), "--into", str(shipped)])
    assert again.exit_code == 0 and "0 added, 0 merged, 0 conflict(s)" in again.output


def test_a_folder_without_espo_custom_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["import-custom", str(tmp_path), "--into", str(tmp_path)])
    assert result.exit_code == 2 and "no Espo/Custom folder" in result.output


def test_the_command_is_registered_by_the_plugin() -> None:
    result = subprocess.run([maxcore_binary(), "espocrm", "import-custom", "--help"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0 and "custom/ folder" in result.stdout
