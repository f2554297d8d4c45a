"""What the EspoCRM customization defines, as the plugin relies on it.

A static table kept in sync with ``deploy/espocrm/custom`` (a test compares it with
the merged metadata the emulator reads from those files): EspoCRM 8.3's core Lead
options (``Modules/Crm/Resources/metadata/entityDefs/Lead.json``) plus the options
the customization appends with ``__APPEND__``.
"""

from __future__ import annotations

from .vocabulary import LEAD_INDUSTRY, LEAD_OPTIONS, LEAD_SOURCE, LEAD_STATUS

__all__ = [
    "LEAD_CORE_ATTRIBUTES", "LEAD_CUSTOM_ATTRIBUTES", "LEAD_INDUSTRY", "LEAD_OPTIONS", "LEAD_SOURCE",
    "LEAD_STATUS", "RECORD_FIELDS",
]

# Lead attributes the plugin writes. The custom ones must exist in the customization.
LEAD_CORE_ATTRIBUTES = (
    "firstName", "lastName", "phoneNumber", "emailAddress", "accountName", "industry", "source",
    "status", "description", "assignedUserId", "teamsIds",
)
LEAD_CUSTOM_ATTRIBUTES = ("maxConversationId", "maxLastMessageAt", "aiSummary")

# Fields of the custom entities the plugin (and the model, through create_record) writes.
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "DiagnosticIA": ("name", "leadId", "score", "summary", "recommendations"),
    "MissionMAX": ("name", "leadId", "type", "status", "dueDate", "result"),
}
