"""Start-up objects are frozen out of the collector's full passes; a reload frees what
it replaced."""

from __future__ import annotations

import gc
import weakref

from maxcore.server import freeze_loaded_objects


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_frozen_then_released_by_the_next_freeze() -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    try:
        freeze_loaded_objects()
        assert gc.get_freeze_count() > 0
        del a, b
        gc.collect()
        assert gone() is not None  # frozen: full passes skip it
        freeze_loaded_objects()  # as after a reload
        assert gone() is None
    finally:
        gc.unfreeze()
