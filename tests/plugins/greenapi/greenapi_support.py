"""Constants and helpers shared by the Green-API tests (imported as ``greenapi_support``)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

INSTANCE = 7105000001  # the fixtures' instance
OTHER_INSTANCE = 7105000002
API_TOKEN = "apitok" + secrets.token_hex(20)
WEBHOOK_TOKEN = "whtok" + secrets.token_hex(16)
OTHER_API_TOKEN = "apitok" + secrets.token_hex(20)
OTHER_WEBHOOK_TOKEN = "whtok" + secrets.token_hex(16)
TOKENS = (API_TOKEN, WEBHOOK_TOKEN, OTHER_API_TOKEN, OTHER_WEBHOOK_TOKEN)

_REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(os.environ.get("MAXCORE_SHARED", _REPO.parent / "shared")) / "contracts" / "greenapi"


def fixtures_dir() -> Path:
    if not (FIXTURES / "expectations.json").is_file():
        reason = f"Green-API contract fixtures not found at {FIXTURES}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return FIXTURES


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((fixtures_dir() / name).read_text(encoding="utf-8"))


def expectations() -> dict[str, dict[str, Any]]:
    path = FIXTURES / "expectations.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def bearer(token: str = WEBHOOK_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
