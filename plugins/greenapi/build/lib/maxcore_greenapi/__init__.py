"""Green-API WhatsApp channel for maxcore (``channel: {type: greenapi, ...}``)."""

from __future__ import annotations

__version__ = "0.1.0"
