"""maxcore's EspoCRM 8.3 connector (``crm: {type: espocrm, ...}``)."""

from __future__ import annotations

from .config import EspoCRMConfig
from .crm import EspoCRM

__all__ = ["EspoCRM", "EspoCRMConfig"]
