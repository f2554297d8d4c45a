"""What the EspoCRM customization defines, as the plugin relies on it.

A static table kept in sync with ``deploy/espocrm/custom`` (a test compares it with
the merged metadata the emulator reads from those files): EspoCRM 8.3's core Lead
options (``Modules/Crm/Resources/metadata/entityDefs/Lead.json``) plus the options
the customization appends with ``__APPEND__``.
"""

from __future__ import annotations

from maxcore.leads import INDUSTRY_OPTIONS, SOURCE_OPTIONS, STATUS_OPTIONS

# The core's reference options are EspoCRM 8.3's (the embedded CRM follows them too),
# with "WhatsApp" last in source, as custom/.../entityDefs/Lead.json appends it.
LEAD_STATUS: tuple[str, ...] = STATUS_OPTIONS
LEAD_SOURCE: tuple[str, ...] = SOURCE_OPTIONS
LEAD_INDUSTRY: tuple[str, ...] = INDUSTRY_OPTIONS
LEAD_OPTIONS: dict[str, tuple[str, ...]] = {
    "status": LEAD_STATUS,
    "source": LEAD_SOURCE,
    "industry": LEAD_INDUSTRY,
}

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
