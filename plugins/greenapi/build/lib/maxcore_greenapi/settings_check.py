"""Does the instance's ``getSettings`` answer deliver notifications to this server?

A pure function over the answer, so the health check and its tests share one truth.
The findings name their remedy after ``fix:`` (the ``maxcore doctor`` convention):
``maxcore greenapi setup`` writes exactly the settings checked here.
"""

from __future__ import annotations

import hmac
from typing import Any

from maxcore.types import Health

from .config import GreenApiConfig


def webhook_url_for(public_url: str, channel: str) -> str:
    """Where Green-API must post: the core serves ``POST /webhooks/{channel}``."""
    return f"{public_url.rstrip('/')}/webhooks/{channel}"


def setup_fix(config: GreenApiConfig, tenant: str, public_url: str | None) -> str:
    """The doctor's ``fix:`` text: the setup command that writes the settings checked here."""
    command = f"fix: run maxcore greenapi setup --tenant {tenant}"
    if config.mode == "polling":
        return command + " (polling mode clears the webhook URL)"
    return f"{command} --public-url {public_url or 'https://YOUR_PUBLIC_HOST'}"


def check_settings(
    settings: dict[str, Any], config: GreenApiConfig, tenant: str, public_url: str | None, channel: str,
) -> Health | None:
    """The first problem found in ``settings`` as a degraded Health, or None when they fit.

    Degraded, not down: the instance and its token work (sending still does), only the
    delivery of incoming messages to this server is in doubt.
    """
    fix = setup_fix(config, tenant, public_url)
    actual = str(settings.get("webhookUrl") or "").strip()
    if config.mode == "polling" and actual:
        return Health.degraded(
            f"polling mode but the instance posts notifications to {actual} (Green-API queues "
            f"nothing for receiveNotification while a webhook URL is set) — {fix}")
    if config.mode == "webhook" and public_url:
        expected = webhook_url_for(public_url, channel)
        if not actual:
            return Health.degraded(
                f"the instance has no webhook URL (expected {expected}): no message reaches "
                f"this server — {fix}")
        if actual.rstrip("/") != expected:
            return Health.degraded(f"the instance's webhook URL is {actual}, expected {expected} — {fix}")
    token = settings.get("webhookUrlToken")
    # Compared only when the answer carries it; never quoted (it is a secret).
    if (config.mode == "webhook" and isinstance(token, str) and config.webhook_token
            and not hmac.compare_digest(token.encode(), config.webhook_token.encode())):
        return Health.degraded(
            "the instance's webhookUrlToken differs from channel.webhook_token: every "
            f"notification would be refused with 401 — {fix}")
    if settings.get("incomingWebhook") == "no":
        return Health.degraded(
            f"incoming message notifications are off on the instance (incomingWebhook: no) — {fix}")
    return None
