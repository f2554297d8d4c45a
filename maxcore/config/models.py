"""The shape of ``config/maxcore.yaml`` and ``config/tenants/*.yaml``.

Every class is frozen and every field has a default, so a file only states what
differs. Connector blocks (``channel``, ``crm``, ``memory``, ``llm``) are validated in
a second step against the Config class of the connector their ``type`` names.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
import phonenumbers

from ..errors import MaxcoreError
from ..languages import available_languages, language_pack

TENANT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class FieldValueError(MaxcoreError, ValueError):
    """A validator's complaint about one field, carried with the field's name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def in_range(low: float, high: float) -> Any:
    def check(_instance: Any, attribute: attrs.Attribute, value: float) -> None:
        if not low <= value <= high:
            raise FieldValueError(
                attribute.name, f"expected a number between {_number(low)} and {_number(high)}, got {value!r}"
            )

    return check


def one_of(*choices: str) -> Any:
    def check(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
        if value not in choices:
            raise FieldValueError(
                attribute.name, f"expected one of {', '.join(choices)}, got {value!r}"
            )

    return check


def non_empty(_instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and not value.strip():
        raise FieldValueError(attribute.name, "expected a non-empty string")


def http_url(_instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and not re.match(r"^https?://[^\s/]+", value):
        raise FieldValueError(
            attribute.name, f"expected an http:// or https:// URL, got {value!r}"
        )


def phone_region(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value in phonenumbers.SUPPORTED_REGIONS:
        return
    hint = f" (did you mean {value.upper()!r}?)" if value.upper() in phonenumbers.SUPPORTED_REGIONS else ""
    raise FieldValueError(
        attribute.name,
        f"expected a region code for phone numbers such as FR, BE, CH or US, got {value!r}{hint}",
    )


@attrs.frozen
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = attrs.field(default=3005, validator=in_range(1, 65535))
    body_limit_bytes: int = attrs.field(default=1_048_576, validator=in_range(1024, 64 << 20))
    public_url: str | None = attrs.field(default=None, validator=http_url)
    shutdown_grace_s: float = attrs.field(default=20.0, validator=in_range(0, 600))
    session_secret: str | None = None
    # When set, /api/health shows per-tenant details only to `Authorization: Bearer <token>`;
    # everyone else gets {status, version}. Leave unset on a private network.
    health_token: str | None = attrs.field(default=None, validator=non_empty)


@attrs.frozen
class InboxConfig:
    """``inbox:`` in maxcore.yaml: where accepted messages wait and how they are retried."""

    # sqlite: durable (WAL, group commit); memory: lost on restart (tests, the CLI chat).
    type: str = attrs.field(default="sqlite", validator=one_of("sqlite", "memory"))
    path: str = attrs.field(default="inbox.sqlite3", validator=non_empty)  # relative to data_dir
    workers: int = attrs.field(default=8, validator=in_range(1, 1024))
    # Defaults ride out an upstream outage of at least an hour (maxcore.retry.retry_span:
    # 1 h 03 min at the shortest, 2 h 07 min at the longest) before a message is dead.
    max_attempts: int = attrs.field(default=21, validator=in_range(1, 100))
    # A message during which the server process died this many times goes dead, so one
    # poisonous message cannot restart the server for every tenant over and over.
    max_crashes: int = attrs.field(default=3, validator=in_range(1, 100))
    backoff_initial_s: float = attrs.field(default=2.0, validator=in_range(0, 3600))
    backoff_max_s: float = attrs.field(default=600.0, validator=in_range(0, 86400))
    max_pending: int = attrs.field(default=10_000, validator=in_range(1, 10_000_000))
    # Retry-After (seconds) sent with the 503 when max_pending is reached.
    full_retry_after_s: int = attrs.field(default=5, validator=in_range(1, 3600))
    # full: fsync the WAL at every (group) commit, survives power loss; normal: survives
    # a process crash only, faster on slow disks.
    synchronous: str = attrs.field(default="full", validator=one_of("full", "normal"))
    # How often a running server looks for messages `maxcore inbox retry` put back.
    poll_interval_s: float = attrs.field(default=1.0, validator=in_range(0.05, 3600))


def _optional_days(instance: Any, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None:
        in_range(0.001, 36500)(instance, attribute, value)


@attrs.frozen
class RetentionConfig:
    """``retention:`` in maxcore.yaml: how long finished work is kept (days; null: forever).

    ``messages_days``: done inbox rows and their journals; ``history_days``: conversation
    turns in the memory stores. Purged by the server every ``purge_interval_s``.
    """

    messages_days: float | None = attrs.field(default=30.0, validator=_optional_days)
    history_days: float | None = attrs.field(default=180.0, validator=_optional_days)
    purge_interval_s: float = attrs.field(default=3600.0, validator=in_range(1, 86400 * 7))


@attrs.frozen
class LoggingConfig:
    level: str = attrs.field(
        default="INFO", validator=one_of("TRACE", "DEBUG", "INFO", "WARNING", "ERROR")
    )
    format: str = attrs.field(default="text", validator=one_of("text", "json"))


@attrs.frozen
class MaxcoreConfig:
    """``config/maxcore.yaml``."""

    server: ServerConfig = ServerConfig()
    tenants_dir: str = "tenants"
    data_dir: str = "./data"
    inbox: InboxConfig = InboxConfig()
    retention: RetentionConfig = RetentionConfig()
    logging: LoggingConfig = LoggingConfig()


def _has_pack(code: str) -> None:
    if code not in available_languages():
        raise FieldValueError(
            "language", f"expected a language with a pack ({', '.join(available_languages())}), got {code!r}")


@attrs.frozen
class AssistantConfig:
    """How the assistant behaves for one tenant."""

    name: str = "MAX"
    # Any code with a language pack (maxcore/languages); texts overrides the pack's texts.
    language: str = attrs.field(default="fr", validator=lambda _i, _a, value: _has_pack(value))
    texts: dict[str, str] = attrs.field(factory=dict)
    system_prompt: str | None = None
    allowed_tools: tuple[str, ...] | None = None
    max_tool_rounds: int = attrs.field(default=4, validator=in_range(1, 20))
    history_messages: int = attrs.field(default=20, validator=in_range(0, 200))
    # Region of phone numbers written without +country code (phonenumbers' region codes).
    phone_region: str = attrs.field(default="FR", validator=phone_region)
    # Values for fields of a lead being created, in the CRM's own vocabulary (checked
    # against its declaration). None by default: each CRM has its own defaults.
    lead_defaults: dict[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        known = language_pack(self.language).texts
        for key in self.texts:
            if key not in known:
                raise FieldValueError(
                    f"texts.{key}", f"unknown text; expected one of: {', '.join(sorted(known))}")


def _optional_positive(_instance: Any, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and value < 1:
        raise FieldValueError(attribute.name, f"expected a positive integer or null, got {value!r}")


@attrs.frozen
class LimitsConfig:
    """``limits:`` in a tenant file. ``messages_per_minute``: processing is delayed
    beyond it (webhooks are still acknowledged); null means no limit."""

    messages_per_minute: int | None = attrs.field(default=None, validator=_optional_positive)


@attrs.frozen
class ConnectorBlock:
    """A validated connector block: its ``type`` and its connector's Config instance."""

    type: str
    config: Any


@attrs.frozen
class TenantConfig:
    """One ``config/tenants/<tenant>.yaml`` after validation."""

    tenant: str
    source: str
    channel: ConnectorBlock
    crm: ConnectorBlock
    memory: ConnectorBlock
    llm: ConnectorBlock
    name: str | None = None
    assistant: AssistantConfig = AssistantConfig()
    limits: LimitsConfig = LimitsConfig()


@attrs.frozen
class TenantHeader:
    """The non-connector part of a tenant file, structured before the blocks."""

    tenant: str = attrs.field(validator=non_empty)
    name: str | None = None
    assistant: AssistantConfig = AssistantConfig()
    limits: LimitsConfig = LimitsConfig()

    @tenant.validator
    def _check_tenant(self, attribute: attrs.Attribute, value: str) -> None:
        if not TENANT_ID_RE.match(value):
            raise FieldValueError(
                "tenant",
                "expected lower-case letters, digits, '-' or '_' (max 63), got " + repr(value),
            )


# The connector used when a tenant file leaves a block out.
DEFAULT_BLOCKS: dict[str, str] = {
    "channel": "webchat",
    "crm": "sqlite",
    "memory": "sqlite",
    "llm": "offline",
}
