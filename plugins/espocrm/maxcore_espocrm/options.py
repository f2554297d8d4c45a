"""What the EspoCRM customization defines, as the plugin relies on it.

A static table kept in sync with ``deploy/espocrm/custom`` (a test compares it with
the merged metadata the emulator reads from those files): EspoCRM 8.3's core Lead
options (``Modules/Crm/Resources/metadata/entityDefs/Lead.json``) plus the options
the customization appends with ``__APPEND__``.
"""

from __future__ import annotations

LEAD_STATUS: tuple[str, ...] = ("New", "Assigned", "In Process", "Converted", "Recycled", "Dead")
# Core options, then "WhatsApp" appended by custom/.../entityDefs/Lead.json.
LEAD_SOURCE: tuple[str, ...] = (
    "Call", "Email", "Existing Customer", "Partner", "Public Relations", "Web Site", "Campaign",
    "Other", "WhatsApp",
)
LEAD_INDUSTRY: tuple[str, ...] = (
    "Advertising", "Aerospace", "Agriculture", "Apparel & Accessories", "Architecture",
    "Automotive", "Banking", "Biotechnology", "Building Materials & Equipment", "Chemical",
    "Construction", "Consulting", "Computer", "Culture", "Creative", "Defense", "Education",
    "Electronics", "Electric Power", "Energy", "Entertainment & Leisure", "Finance",
    "Food & Beverage", "Grocery", "Healthcare", "Hospitality", "Insurance", "Legal",
    "Manufacturing", "Mass Media", "Marketing", "Mining", "Music", "Publishing", "Petroleum",
    "Real Estate", "Retail", "Service", "Sports", "Software", "Support", "Shipping", "Travel",
    "Technology", "Telecommunications", "Television", "Transportation",
    "Testing, Inspection & Certification", "Venture Capital", "Wholesale", "Water",
)
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
