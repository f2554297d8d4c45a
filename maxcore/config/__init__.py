"""Configuration: models, loading and validation."""

from .loader import LoadedConfig, Problem, load_config, load_dotenv_files
from .models import (
    AssistantConfig,
    ConnectorBlock,
    FieldValueError,
    InboxConfig,
    LoggingConfig,
    MaxcoreConfig,
    ServerConfig,
    TenantConfig,
    http_url,
    in_range,
    non_empty,
    one_of,
)

__all__ = [
    "AssistantConfig", "ConnectorBlock", "FieldValueError", "InboxConfig", "LoadedConfig",
    "LoggingConfig", "MaxcoreConfig", "Problem", "ServerConfig", "TenantConfig", "http_url",
    "in_range", "load_config", "load_dotenv_files", "non_empty", "one_of",
]
