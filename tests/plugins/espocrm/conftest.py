"""One EspoCRM emulator for the whole directory, emptied before each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from maxcore_espocrm import EspoCRM, EspoCRMConfig

from maxcore.testing import context_for
from maxcore.testing.espocrm import ApiUser, EspoEmulator

API_KEY = "test-api-key-0123456789"
HMAC_KEY = "test-hmac-key-0123456789"
HMAC_SECRET = "test-hmac-secret-0123456789"


@pytest.fixture(scope="session")
def espo_server() -> Iterator[EspoEmulator]:
    with EspoEmulator() as emulator:
        emulator.add_api_user(ApiUser(api_key=API_KEY, id="api-user-1", user_name="max-api"))
        emulator.add_api_user(ApiUser(api_key=HMAC_KEY, secret_key=HMAC_SECRET, id="api-user-2",
                                      user_name="max-hmac"))
        emulator.add_assignable("user-sales", "Sales Rep")
        emulator.add_assignable("team-a", "Team A")
        yield emulator


@pytest.fixture
def espo(espo_server: EspoEmulator) -> EspoEmulator:
    espo_server.reset()
    return espo_server


@pytest.fixture
def make_espocrm(espo: EspoEmulator, tmp_path: Path) -> Callable[..., EspoCRM]:
    """``make_espocrm("tenant-a", url=..., auth="hmac", ...)`` → an unopened connector."""

    def make(tenant: str, **overrides: Any) -> EspoCRM:
        settings: dict[str, Any] = {"url": espo.url, "api_key": API_KEY, "timeout_s": 5.0}
        if overrides.get("auth") == "hmac":
            settings.update(api_key=HMAC_KEY, secret_key=HMAC_SECRET)
        settings.update(overrides)
        return EspoCRM(EspoCRMConfig(**settings), context_for(tenant, tmp_path))

    return make
