"""Test support for plugin authors: connector contract tests and contract emulators.

A new CRM proves itself with one class::

    from maxcore.testing import CRMContract

    class TestMyCRM(CRMContract):
        @pytest.fixture
        def make_crm(self, tmp_path):
            def make(tenant: str):
                return MyCRM(MyCRM.Config(...), context_for(tenant, tmp_path))
            return make

Emulators of the upstream APIs (Green-API, OpenAI, EspoCRM, PostgREST) live in
submodules of this package so plugin tests and benchmarks can reuse them. Importing
this package or an emulator does not import pytest: the contract classes (which are
pytest test classes) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .contracts import CRMContract, LLMContract, MemoryContract, context_for

__all__ = ["CRMContract", "LLMContract", "MemoryContract", "context_for"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".contracts", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
