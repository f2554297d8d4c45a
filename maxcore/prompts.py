"""System prompts and the rendering of inbound messages for the model."""

from __future__ import annotations

from typing import Any

from .config.models import AssistantConfig
from .languages import LanguagePack, language_pack
from .types import InboundMessage


def pack_of(assistant: AssistantConfig) -> LanguagePack:
    """The tenant's language pack with its own texts in place."""
    return language_pack(assistant.language, assistant.texts)

def system_prompt(
    assistant: AssistantConfig, company: str, facts: dict[str, Any], extra: list[str]
) -> str:
    pack = pack_of(assistant)
    base = assistant.system_prompt or pack.texts["system_prompt"]
    text = base.replace("{name}", assistant.name).replace("{company}", company)
    parts = [text]
    if facts:
        parts.append(pack.texts["facts_heading"] + "\n" + "\n".join(f"- {k}: {v}" for k, v in facts.items()))
    parts.extend(extra)
    return "\n\n".join(parts)


def render_user_message(message: InboundMessage, pack: LanguagePack) -> str:
    """The user turn as the model sees it: text plus quoted text, media and location."""
    parts = [message.text] if message.text else []
    if message.quoted_text:
        parts.append(f"({pack.texts['quoted_label']} : « {message.quoted_text} »)")
    if message.media is not None:
        # The core's kind (image, voice, document...), whatever the provider called it.
        parts.append(f"[{message.kind.value}: {message.media.file_name or message.media.url}]")
    location = message.metadata.get("location")
    if isinstance(location, dict):
        parts.append(
            f"[{pack.texts['location_label']}: {location.get('latitude')}, {location.get('longitude')}]"
        )
    return "\n".join(parts) or f"[{message.kind.value}]"
