"""maxcore memory connector on Supabase (``memory: {type: supabase}``)."""

from __future__ import annotations

from .memory import SupabaseMemory, SupabaseMemoryConfig

__all__ = ["SupabaseMemory", "SupabaseMemoryConfig"]
