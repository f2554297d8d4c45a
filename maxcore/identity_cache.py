"""A bounded memo keyed by an object's identity, for values derived from objects built
once and reused (a tenant's tool schemas): each is derived once, not once per message.

Identity, not equality: hashing a schema to look it up would cost what the memo saves.
The entry keeps the object alive, so its id cannot be reused by another object while
cached; the memo empties itself when full.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class IdentityCache(Generic[K, V]):
    def __init__(self, derive: Callable[[K], V], size: int = 4096) -> None:
        self._derive = derive
        self._size = size
        self._entries: dict[int, tuple[K, V]] = {}

    def __call__(self, key: K) -> V:
        entry = self._entries.get(id(key))
        if entry is not None and entry[0] is key:
            return entry[1]
        if len(self._entries) >= self._size:
            self._entries.clear()
        value = self._derive(key)
        self._entries[id(key)] = (key, value)
        return value
