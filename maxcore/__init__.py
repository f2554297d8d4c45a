"""maxcore: WhatsApp conversations turned into CRM work, one pluggy plugin per connector."""

from __future__ import annotations

__version__ = "0.1.0"

from .connectors import (
    CRM,
    LLM,
    Channel,
    ChannelBase,
    ConnectorBase,
    ConnectorContext,
    LeadQuery,
    Memory,
    WebhookRequest,
)
from .errors import (
    MaxcoreError,
    PermanentError,
    RetryableError,
    ToolError,
    WebhookError,
)
from .hookspecs import hookimpl
from .types import (
    FIXED_REPLY,
    AuditEntry,
    ChatTurn,
    Health,
    HealthStatus,
    InboundMessage,
    Lead,
    LLMReply,
    LLMRequest,
    Media,
    OutboundMessage,
    Record,
    Role,
    SendResult,
    ToolCall,
    ToolSpec,
    UpsertResult,
    Usage,
    Veto,
    hash_chat_id,
)

__all__ = [
    "CRM", "FIXED_REPLY", "LLM", "AuditEntry", "Channel", "ChannelBase", "ChatTurn", "ConnectorBase",
    "ConnectorContext", "Health", "HealthStatus", "InboundMessage", "LLMReply", "LLMRequest",
    "Lead", "LeadQuery", "MaxcoreError", "Media", "Memory", "OutboundMessage",
    "PermanentError", "Record", "RetryableError", "Role", "SendResult", "ToolCall",
    "ToolError", "ToolSpec", "UpsertResult", "Usage", "Veto", "WebhookError", "WebhookRequest",
    "__version__", "hash_chat_id", "hookimpl",
]
