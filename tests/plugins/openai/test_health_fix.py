"""health(): each failure names what to change, in the ``fix:`` form ``maxcore doctor`` prints."""

from __future__ import annotations

from typing import Any

from maxcore.doctor import split_fix
from maxcore.testing.server import free_port
from maxcore.types import Health, HealthStatus


async def health_of(make_openai: Any, **overrides: object) -> Health:
    llm = make_openai(**overrides)
    await llm.open()
    try:
        return await llm.health()
    finally:
        await llm.close()


async def test_listed_model_is_ok_without_a_fix(make_openai: Any) -> None:
    health = await health_of(make_openai)
    assert health.status == HealthStatus.OK and split_fix(health.reason)[1] == ""


async def test_unlisted_model_is_degraded_and_lists_the_choices(make_openai: Any) -> None:
    health = await health_of(make_openai, model="gpt-5-typo")
    detail, fix = split_fix(health.reason)
    assert health.status == HealthStatus.DEGRADED and "gpt-5-typo not listed" in detail
    assert fix == "set llm.model to a model this server lists (gpt-4o-mini, llama3.1)"


async def test_bad_key_names_the_setting_never_the_value(make_openai: Any) -> None:
    health = await health_of(make_openai, api_key="sk-bad-key-000111")
    detail, fix = split_fix(health.reason)
    assert health.status == HealthStatus.DOWN and "rejected the API key" in detail
    assert fix.startswith("set llm.api_key") and "sk-bad-key" not in health.reason


async def test_unreachable_server_names_base_url(make_openai: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    health = await health_of(make_openai, base_url=url)
    assert health.status == HealthStatus.DOWN
    assert split_fix(health.reason)[1].startswith(f"check llm.base_url ({url})")

