"""maxcore's HubSpot CRM connector (``crm: {type: hubspot, ...}``), an example plugin.

Leads are HubSpot contacts (CRM v3 objects API); the vocabulary is read from the
account's property definitions, so the model sees HubSpot's own values
(``lifecyclestage``, ``hs_lead_status`` ...). :mod:`maxcore_hubspot.emulator` serves
the same API on 127.0.0.1 for tests.
"""

from __future__ import annotations

from .config import HubSpotConfig
from .crm import HubSpotCRM

__all__ = ["HubSpotCRM", "HubSpotConfig"]
