"""health(): besides the instance state, getSettings must route notifications to this server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from greenapi_support import API_TOKEN, INSTANCE, TOKENS, WEBHOOK_TOKEN
from maxcore_greenapi.channel import GreenApiChannel
from maxcore_greenapi.commands import webhook_settings
from maxcore_greenapi.config import GreenApiConfig
from maxcore_greenapi.settings_check import check_settings, webhook_url_for

from maxcore.connectors import ConnectorContext
from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.types import Health

PUBLIC_URL = "https://crm.example.com"


@pytest.fixture
def make_public_channel(api_url: str, tmp_path: Path) -> Callable[..., GreenApiChannel]:
    """A channel whose server has ``server.public_url`` set (what the runtime passes on)."""

    def make(public_url: str | None = PUBLIC_URL, **overrides: Any) -> GreenApiChannel:
        settings: dict[str, Any] = {"instance_id": INSTANCE, "api_token": API_TOKEN,
                                    "webhook_token": WEBHOOK_TOKEN, "api_url": api_url}
        settings.update(overrides)
        context = ConnectorContext(tenant="acme", data_dir=tmp_path, public_url=public_url)
        return GreenApiChannel(GreenApiConfig(**settings), context)

    return make


async def health_of(channel: GreenApiChannel) -> Health:
    await channel.open()
    try:
        return await channel.health()
    finally:
        await channel.close()


def configure(emulator: GreenApiEmulator, **settings: Any) -> None:
    """What ``maxcore greenapi setup`` stores, with ``settings`` overriding it."""
    config = GreenApiConfig(instance_id=INSTANCE, api_token=API_TOKEN, webhook_token=WEBHOOK_TOKEN)
    emulator.instances[INSTANCE].settings.update({**webhook_settings(config, PUBLIC_URL), **settings})


async def test_set_up_instance_is_ok_and_names_its_webhook(
    emulator: GreenApiEmulator, make_public_channel: Callable[..., GreenApiChannel]
) -> None:
    configure(emulator)
    health = await health_of(make_public_channel())
    assert health.status == "ok", health
    assert "authorized" in health.reason and f"{PUBLIC_URL}/webhooks/greenapi" in health.reason


@pytest.mark.parametrize(("settings", "words"), [
    ({"webhookUrl": ""}, "has no webhook URL"),
    ({"webhookUrl": "https://old.example.com/webhooks/greenapi"}, "is https://old.example.com"),
    ({"webhookUrlToken": "not-the-configured-token"}, "webhookUrlToken differs"),
    ({"incomingWebhook": "no"}, "incomingWebhook: no"),
])
async def test_misrouted_notifications_are_degraded_with_the_setup_fix(
    settings: dict[str, Any], words: str, emulator: GreenApiEmulator,
    make_public_channel: Callable[..., GreenApiChannel],
) -> None:
    configure(emulator, **settings)
    health = await health_of(make_public_channel())
    assert health.status == "degraded" and words in health.reason, health
    assert f"fix: run maxcore greenapi setup --tenant acme --public-url {PUBLIC_URL}" in health.reason
    assert not any(token in health.reason for token in (*TOKENS, "not-the-configured-token"))


async def test_setup_command_heals_what_health_reported(
    emulator: GreenApiEmulator, make_public_channel: Callable[..., GreenApiChannel]
) -> None:
    """The fix is the truth: applying setup's settings turns the finding into ok."""
    # Two fresh channels in a row: lift getStateInstance's 1/s limit (tested elsewhere).
    emulator.rate_limits.pop("getStateInstance", None)
    configure(emulator, webhookUrl="https://old.example.com/hook")
    assert (await health_of(make_public_channel())).status == "degraded"
    configure(emulator)
    assert (await health_of(make_public_channel())).status == "ok"


async def test_unauthorised_instance_is_reported_before_settings(
    emulator: GreenApiEmulator, make_public_channel: Callable[..., GreenApiChannel]
) -> None:
    emulator.set_state(INSTANCE, "notAuthorized")
    health = await health_of(make_public_channel())
    assert health.status == "down" and "scan the QR code" in health.reason
    assert "getSettings" not in emulator.instances[INSTANCE].calls


async def test_settings_verdict_is_cached_under_the_rate_limit(
    emulator: GreenApiEmulator, make_public_channel: Callable[..., GreenApiChannel]
) -> None:
    configure(emulator)
    channel = make_public_channel()
    await channel.open()
    try:
        for _ in range(3):
            assert (await channel.health()).status == "ok"
    finally:
        await channel.close()
    assert emulator.instances[INSTANCE].calls.count("getSettings") == 1


async def test_get_settings_failure_is_degraded_not_a_crash(
    emulator: GreenApiEmulator, make_public_channel: Callable[..., GreenApiChannel]
) -> None:
    emulator.fail("getSettings", 500)
    health = await health_of(make_public_channel())
    assert health.status == "degraded" and "getSettings failed" in health.reason


async def test_without_public_url_only_what_can_be_known_is_checked(
    emulator: GreenApiEmulator, make_public_channel: Callable[..., GreenApiChannel]
) -> None:
    # No server.public_url: any webhook URL may be right (a proxy the server cannot see).
    configure(emulator, webhookUrl="https://elsewhere.example.com/webhooks/greenapi")
    assert (await health_of(make_public_channel(public_url=None))).status == "ok"


async def test_polling_mode_needs_an_empty_webhook_url(
    emulator: GreenApiEmulator, make_public_channel: Callable[..., GreenApiChannel]
) -> None:
    emulator.rate_limits.pop("getStateInstance", None)  # two fresh channels in a row
    configure(emulator)  # a webhook URL left from webhook mode
    health = await health_of(make_public_channel(mode="polling", webhook_token=None))
    assert health.status == "degraded" and "polling mode" in health.reason
    assert "fix: run maxcore greenapi setup --tenant acme" in health.reason
    emulator.instances[INSTANCE].settings["webhookUrl"] = ""
    assert (await health_of(make_public_channel(mode="polling", webhook_token=None))).status == "ok"


def test_trailing_slashes_do_not_make_a_difference() -> None:
    config = GreenApiConfig(instance_id=INSTANCE, api_token=API_TOKEN, webhook_token=WEBHOOK_TOKEN)
    settings = webhook_settings(config, PUBLIC_URL + "/")
    assert settings["webhookUrl"] == webhook_url_for(PUBLIC_URL + "/", "greenapi")
    assert check_settings(settings, config, "acme", PUBLIC_URL + "/", "greenapi") is None


async def test_health_waits_out_a_rate_limited_second_once(
    emulator: GreenApiEmulator, make_public_channel: Callable[..., GreenApiChannel]
) -> None:
    """Another caller (the server's /api/health) just used getStateInstance's 1 request/s."""
    configure(emulator)
    channel = make_public_channel()
    await channel.open()
    try:
        await channel.client.get_state()
        assert (await channel.health()).status == "ok"
    finally:
        await channel.close()
    assert emulator.instances[INSTANCE].calls.count("getStateInstance") == 3  # 200, 429, 200
