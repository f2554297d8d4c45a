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
submodules of this package so plugin tests and benchmarks can reuse them.
"""

from __future__ import annotations

from .contracts import CRMContract, LLMContract, MemoryContract, context_for

__all__ = ["CRMContract", "LLMContract", "MemoryContract", "context_for"]
