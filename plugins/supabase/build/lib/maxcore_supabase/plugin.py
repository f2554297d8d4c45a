"""Registers the ``supabase`` memory connector with maxcore."""

from __future__ import annotations

from maxcore import hookimpl

from .memory import SupabaseMemory


@hookimpl
def register_memories() -> list[type]:
    return [SupabaseMemory]
