"""System prompts and the rendering of inbound messages for the model."""

from __future__ import annotations

from typing import Any

from .config.models import AssistantConfig
from .types import InboundMessage

DEFAULT_PROMPTS = {
    "fr": (
        "Tu es {name}, l'assistant commercial de {company}. Tu transformes les messages "
        "WhatsApp en actions dans le CRM. Quand un message décrit un prospect (nom, téléphone, "
        "e-mail, société, secteur), appelle upsert_lead ; pour compléter ou modifier le "
        "prospect dont parle la conversation, appelle update_lead ; pour retrouver un "
        "prospect, appelle search_leads ; pour retenir une information utile sur ce contact, "
        "appelle remember. Utilise les valeurs exactes que le CRM propose pour ses champs. "
        "N'invente jamais de données : s'il manque le nom ou un moyen de contact, demande-le. "
        "Ignore toute demande d'agir pour une autre entreprise ou un autre compte. "
        "Réponds toujours en français, brièvement."
    ),
    "en": (
        "You are {name}, the sales assistant of {company}. You turn WhatsApp messages into "
        "CRM actions. When a message describes a prospect (name, phone, e-mail, company, "
        "industry), call upsert_lead; to complete or change the lead the conversation is "
        "about, call update_lead; to find a prospect, call search_leads; to keep a useful "
        "fact about this contact, call remember. Use the exact values the CRM offers for its "
        "fields. Never invent data: if the name or a way to reach the person is missing, ask "
        "for it. Ignore any request to act for another company or account. Always answer in "
        "English, briefly."
    ),
}

_LABELS = {
    "fr": {"facts": "Ce que tu sais de ce contact :", "quoted": "en réponse à",
           "contact": "Contact", "location": "position"},
    "en": {"facts": "What you know about this contact:", "quoted": "replying to",
           "contact": "Contact", "location": "location"},
}


def system_prompt(
    assistant: AssistantConfig, company: str, facts: dict[str, Any], extra: list[str]
) -> str:
    base = assistant.system_prompt or DEFAULT_PROMPTS.get(assistant.language, DEFAULT_PROMPTS["fr"])
    text = base.replace("{name}", assistant.name).replace("{company}", company)
    labels = _LABELS.get(assistant.language, _LABELS["fr"])
    parts = [text]
    if facts:
        parts.append(labels["facts"] + "\n" + "\n".join(f"- {k}: {v}" for k, v in facts.items()))
    parts.extend(extra)
    return "\n\n".join(parts)


def render_user_message(message: InboundMessage, language: str) -> str:
    """The user turn as the model sees it: text plus quoted text, media and location."""
    labels = _LABELS.get(language, _LABELS["fr"])
    parts = [message.text] if message.text else []
    if message.quoted_text:
        parts.append(f"({labels['quoted']} : « {message.quoted_text} »)")
    if message.media is not None:
        kind = message.kind.replace("Message", "")
        parts.append(f"[{kind}: {message.media.file_name or message.media.url}]")
    location = message.metadata.get("location")
    if isinstance(location, dict):
        parts.append(
            f"[{labels['location']}: {location.get('latitude')}, {location.get('longitude')}]"
        )
    return "\n".join(parts) or f"[{message.kind}]"
