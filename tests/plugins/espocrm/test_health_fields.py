"""health(): the API key, then the tenant and custom fields on Lead, each failure with its fix."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from maxcore_espocrm import EspoCRM, EspoCRMConfig

from maxcore.testing import context_for
from maxcore.testing.espocrm import ApiUser, EspoEmulator, default_custom_dir
from maxcore.types import Health

from .conftest import API_KEY

LEAD_DEFS = "Espo/Custom/Resources/metadata/entityDefs/Lead.json"
FIX = "fix: copy deploy/espocrm/custom into the EspoCRM container and run 'php command.php rebuild'"


def custom_without(tmp_path: Path, field: str) -> Path:
    """A copy of deploy/espocrm/custom whose Lead lacks ``field`` (renamed away)."""
    target = tmp_path / "custom"
    shutil.copytree(default_custom_dir(), target)
    defs = target / LEAD_DEFS
    defs.write_text(defs.read_text().replace(f'"{field}"', f'"{field}Removed"'))
    return target


async def health_against(espo: EspoEmulator, tmp_path: Path, api_key: str = API_KEY) -> Health:
    crm = EspoCRM(EspoCRMConfig(url=espo.url, api_key=api_key, timeout_s=5.0),
                  context_for("tenant-a", tmp_path))
    await crm.open()
    try:
        return await crm.health()
    finally:
        await crm.close()


async def test_complete_customization_is_ok_and_writes_nothing(
    make_espocrm: Callable[..., EspoCRM], espo: EspoEmulator
) -> None:
    crm = make_espocrm("tenant-a")
    await crm.open()
    try:
        health = await crm.health()
    finally:
        await crm.close()
    assert health.status == "ok" and "Lead has tenantId" in health.reason, health
    assert {method for method, _path in espo.requests} == {"GET"}
    assert espo.records("Lead") == []


async def test_missing_tenant_field_is_down_with_the_rebuild_fix(tmp_path: Path) -> None:
    with EspoEmulator(custom_without(tmp_path, "tenantId")) as espo:
        espo.add_api_user(ApiUser(api_key=API_KEY))
        health = await health_against(espo, tmp_path)
    assert health.status == "down", health
    assert "Lead has no tenantId field" in health.reason and FIX in health.reason


async def test_missing_custom_field_is_degraded_with_the_rebuild_fix(tmp_path: Path) -> None:
    with EspoEmulator(custom_without(tmp_path, "aiSummary")) as espo:
        espo.add_api_user(ApiUser(api_key=API_KEY))
        health = await health_against(espo, tmp_path)
    assert health.status == "degraded", health
    assert "custom field aiSummary" in health.reason and FIX in health.reason


async def test_rebuild_after_restoring_the_files_heals_it(tmp_path: Path) -> None:
    custom = custom_without(tmp_path, "tenantId")
    with EspoEmulator(custom) as espo:
        espo.add_api_user(ApiUser(api_key=API_KEY))
        assert (await health_against(espo, tmp_path)).status == "down"
        shutil.copyfile(default_custom_dir() / LEAD_DEFS, custom / LEAD_DEFS)
        assert (await health_against(espo, tmp_path)).status == "down"  # files alone are not enough
        espo.rebuild()
        assert (await health_against(espo, tmp_path)).status == "ok"


async def test_rejected_key_is_down_naming_the_setting_not_the_value(
    make_espocrm: Callable[..., EspoCRM], espo: EspoEmulator
) -> None:
    crm = make_espocrm("tenant-a", api_key="wrong-key-123456")
    await crm.open()
    try:
        health = await crm.health()
    finally:
        await crm.close()
    assert health.status == "down" and "401" in health.reason
    assert "fix: set crm.api_key" in health.reason and "wrong-key-123456" not in health.reason


async def test_unreachable_server_names_the_url_setting(make_espocrm: Callable[..., EspoCRM]) -> None:
    crm = make_espocrm("tenant-a", url="http://127.0.0.1:9", timeout_s=2.0)
    await crm.open()
    try:
        health = await crm.health()
    finally:
        await crm.close()
    assert health.status == "down" and "fix: check crm.url" in health.reason
