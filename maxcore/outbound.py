"""Helpers for channels that send: cutting a reply at the provider's length limit."""

from __future__ import annotations


def split_text(text: str, limit: int) -> list[str]:
    """Cut ``text`` into parts of at most ``limit`` characters, on paragraph boundaries
    when possible, then on line ends, then on spaces, and only as a last resort mid-word.

    Joined with single spaces the parts give the text back, except for the whitespace
    at the cuts. An empty or short text is one part.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = -1
        for separator in ("\n\n", "\n", " "):
            cut = window.rfind(separator)
            if cut > 0:
                break
        if cut <= 0:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n ")
    if rest:
        parts.append(rest)
    return [p for p in parts if p]
