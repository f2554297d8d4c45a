"""Test support for plugin authors: connector contract tests and contract emulators.

A new CRM proves itself with one class::

    from maxcore.testing import CRMContract, context_for

    class TestMyCRM(CRMContract):
        @pytest.fixture
        def make_crm(self, tmp_path):
            def make(tenant: str):
                return MyCRM(MyCRM.Config(...), context_for(tenant, tmp_path))
            return make

A channel proves itself with a :class:`ChannelDriver` (its provider's requests) and a
``ChannelContract`` subclass providing a ``channel_driver`` fixture; it runs the whole
HTTP app with two tenants (:mod:`maxcore.testing.channel_contract`).

``CRMContract`` reads the connector's own declaration (``lead_schema()``) and needs no
pytest plugin; :func:`sample_lead` builds a lead any CRM with a given declaration
accepts. ``MemoryContract`` and ``LLMContract`` are async pytest classes: they need
pytest-asyncio in ``auto`` mode. Importing this package does not import pytest.

Emulators of the upstream APIs (Green-API, OpenAI, EspoCRM, PostgREST) live in
submodules of this package so plugin tests and benchmarks can reuse them. Importing
this package or an emulator does not import pytest: the contract classes (which are
pytest test classes) are imported on first use.
"""

from __future__ import annotations

from typing import Any

from .contracts import CRMContract, context_for, sample_lead, sample_value

__all__ = ["CRMContract", "ChannelContract", "ChannelDriver", "LLMContract", "MemoryContract",
           "context_for", "sample_lead", "sample_value"]


def __getattr__(name: str) -> Any:
    # The channel contract loads the plugins and the HTTP app: imported when asked for.
    if name in ("ChannelContract", "ChannelDriver"):
        from . import channel_contract

        return getattr(channel_contract, name)
    # The memory and LLM contracts need pytest: imported only when asked for.
    if name in ("MemoryContract", "LLMContract"):
        from . import memory_llm_contracts

        return getattr(memory_llm_contracts, name)
    raise AttributeError(name)
