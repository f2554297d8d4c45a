"""The tenant YAML block of the Green-API channel (``channel: {type: greenapi, ...}``)."""

from __future__ import annotations

from typing import Any

import attrs
from attrs.validators import optional

from maxcore.config import FieldValueError, http_url, in_range, non_empty, one_of

DEFAULT_API_URL = "https://api.green-api.com"


def _instance_id(value: Any) -> Any:
    # A YAML literal gives an int, a ${VAR} reference a string: both mean the same id.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value.strip() if isinstance(value, str) else value


def _check_instance_id(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not value.isdigit():
        raise FieldValueError(attribute.name, f"expected the numeric idInstance, got {value!r}")


def _strip_slash(value: Any) -> Any:
    return value.rstrip("/") if isinstance(value, str) else value


@attrs.frozen
class GreenApiConfig:
    """Settings of one tenant's Green-API instance.

    ``send_delay_ms`` is the instance's ``delaySendMessagesMilliseconds`` (applied by
    ``maxcore greenapi setup``); ``typing_time_ms`` is sent with every message.
    """

    instance_id: Any = attrs.field(converter=_instance_id, validator=_check_instance_id)
    api_token: str = attrs.field(validator=non_empty)
    webhook_token: str | None = attrs.field(default=None, validator=non_empty)
    api_url: str = attrs.field(default=DEFAULT_API_URL, converter=_strip_slash, validator=http_url)
    mode: str = attrs.field(default="webhook", validator=one_of("webhook", "polling"))
    ignore_groups: bool = True
    send_delay_ms: int | None = attrs.field(default=None, validator=optional(in_range(500, 600_000)))
    typing_time_ms: int | None = attrs.field(default=None, validator=optional(in_range(1000, 20_000)))
    link_preview: bool | None = None
    quote_replies: bool = False
    receive_timeout_s: int = attrs.field(default=20, validator=in_range(5, 60))
    timeout_s: float = attrs.field(default=30.0, validator=in_range(1, 300))
    # How long a sent message may take to appear in lastOutgoingMessages (up to 2 minutes,
    # Green-API's docs): an interrupted send is taken as not sent only after that.
    outgoing_journal_lag_s: float = attrs.field(default=120.0, validator=in_range(0, 600))
    backoff_initial_ms: int = attrs.field(default=500, validator=in_range(1, 60_000))
    resend_text: str | None = attrs.field(default=None, validator=non_empty)

    def __attrs_post_init__(self) -> None:
        if self.mode == "webhook" and self.webhook_token is None:
            raise FieldValueError(
                "webhook_token",
                "required in webhook mode (the token Green-API sends as Authorization: Bearer)",
            )
