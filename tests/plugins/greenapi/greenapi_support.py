"""Constants and helpers shared by the Green-API tests (imported as ``greenapi_support``)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

INSTANCE = 7105000001  # the fixtures' instance
OTHER_INSTANCE = 7105000002
API_TOKEN = "apitok" + secrets.token_hex(20)
WEBHOOK_TOKEN = "whtok" + secrets.token_hex(16)
OTHER_API_TOKEN = "apitok" + secrets.token_hex(20)
OTHER_WEBHOOK_TOKEN = "whtok" + secrets.token_hex(16)
TOKENS = (API_TOKEN, WEBHOOK_TOKEN, OTHER_API_TOKEN, OTHER_WEBHOOK_TOKEN)

# Copied from Green-API's documented payloads (see tests/fixtures/greenapi/INDEX.md);
# the repository carries them so a clone in any folder runs these tests.
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "greenapi"


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def expectations() -> dict[str, dict[str, Any]]:
    return json.loads((FIXTURES / "expectations.json").read_text(encoding="utf-8"))


def bearer(token: str = WEBHOOK_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
