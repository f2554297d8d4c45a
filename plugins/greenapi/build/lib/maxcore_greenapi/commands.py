"""``maxcore greenapi setup``: point a tenant's instance at this server's webhook."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from maxcore.config import load_config, load_dotenv_files
from maxcore.logs import REDACTOR

from .channel import GreenApiChannel
from .client import GreenApiClient
from .config import GreenApiConfig

WEBHOOK_PATH = "/webhooks/greenapi"


def webhook_settings(config: GreenApiConfig, public_url: str | None) -> dict[str, Any]:
    """The setSettings body: incoming messages on, the bot's own echoes off.

    Polling mode sets ``webhookUrl`` to "" (Green-API only queues notifications for
    receiveNotification when no webhook URL is set).
    """
    url = "" if config.mode == "polling" else public_url.rstrip("/") + WEBHOOK_PATH  # type: ignore[union-attr]
    settings: dict[str, Any] = {
        "webhookUrl": url,
        "webhookUrlToken": config.webhook_token or "",
        "incomingWebhook": "yes",
        "stateWebhook": "yes",
        "editedMessageWebhook": "yes",
        "deletedMessageWebhook": "yes",
        "incomingCallWebhook": "no",
        "outgoingWebhook": "no",
        "outgoingMessageWebhook": "no",
        "outgoingAPIMessageWebhook": "no",
    }
    if config.send_delay_ms is not None:
        settings["delaySendMessagesMilliseconds"] = config.send_delay_ms
    return settings


def _fail(message: str) -> None:
    click.secho(f"✗ {REDACTOR(message)}", fg="red", err=True)
    sys.exit(1)


def _tenant_channel_config(config_dir: Path, tenant_id: str) -> tuple[GreenApiConfig, str | None]:
    from maxcore.plugins import load_plugins

    load_dotenv_files(config_dir)
    loaded = load_config(config_dir, load_plugins())
    for secret in loaded.secrets:
        REDACTOR.add(secret)
    tenant = next((t for t in loaded.tenants if t.tenant == tenant_id), None)
    if tenant is None:
        problems = "; ".join(str(p) for p in loaded.problems)
        known = ", ".join(t.tenant for t in loaded.tenants) or "none"
        _fail(f"unknown or invalid tenant {tenant_id!r} (valid tenants: {known})"
              + (f"; problems: {problems}" if problems else ""))
    assert tenant is not None
    if tenant.channel.type != GreenApiChannel.name:
        _fail(f"tenant {tenant_id!r} uses the {tenant.channel.type!r} channel, not greenapi")
    config: GreenApiConfig = tenant.channel.config
    REDACTOR.add(config.api_token)
    if config.webhook_token:
        REDACTOR.add(config.webhook_token)
    return config, loaded.main.server.public_url


@click.group("greenapi")
def greenapi() -> None:
    """Green-API WhatsApp instances."""


@greenapi.command()
@click.option("--config", "config_dir", type=click.Path(file_okay=False, path_type=Path),
              default="./config", envvar="MAXCORE_CONFIG", show_default=True)
@click.option("--tenant", "tenant_id", required=True, help="Tenant id (its YAML 'tenant:').")
@click.option("--public-url", default=None,
              help="Public https URL of this server (default: server.public_url in maxcore.yaml); "
                   "the webhook is URL/webhooks/greenapi.")
def setup(config_dir: Path, tenant_id: str, public_url: str | None) -> None:
    """Configure the tenant's instance (setSettings): webhook URL, token and flags."""
    config, configured_url = _tenant_channel_config(config_dir, tenant_id)
    public_url = public_url or configured_url
    if config.mode == "webhook":
        if not public_url:
            _fail("--public-url is required in webhook mode (e.g. https://crm.example.com), "
                  "or set server.public_url in maxcore.yaml")
        assert public_url is not None
        if not public_url.startswith(("https://", "http://")):
            _fail(f"--public-url must start with https:// (got {public_url!r})")
    settings = webhook_settings(config, public_url)

    async def apply() -> bool:
        client = GreenApiClient(config, tenant_id)
        try:
            return await client.set_settings(settings)
        finally:
            await client.close()

    try:
        saved = asyncio.run(apply())
    except Exception as exc:  # noqa: BLE001 - shown to the operator, redacted
        _fail(f"setSettings failed: {exc}")
    if not saved:
        _fail("Green-API did not confirm the settings (saveSettings false)")
    target = settings["webhookUrl"] or "none (polling mode: receiveNotification)"
    click.secho(f"✓ instance {config.instance_id} of tenant {tenant_id}: webhook {target}", fg="green")
    click.secho("! Green-API restarts the instance to apply settings; it can take up to 5 minutes "
                "before notifications arrive.", fg="yellow")
