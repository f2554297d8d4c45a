"""One OpenAI emulator per module (a real HTTP server on 127.0.0.1), reset per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from maxcore_openai import OpenAIConfig, OpenAILLM

from maxcore.testing import context_for
from maxcore.testing.openai_emulator import OpenAIEmulator, openai_emulator

API_KEY = "sk-test-emulator-4f9a2c"
DEMO = "Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, +33 6 12 34 56 78"


@pytest.fixture(scope="module")
def served() -> Iterator[OpenAIEmulator]:
    with openai_emulator(api_key=API_KEY, models=("gpt-4o-mini", "llama3.1")) as emulator:
        yield emulator


@pytest.fixture
def emulator(served: OpenAIEmulator) -> OpenAIEmulator:
    served.reset()
    served.api_key = API_KEY
    return served


@pytest.fixture
def make_openai(emulator: OpenAIEmulator, tmp_path: Path) -> Callable[..., OpenAILLM]:
    """An unopened connector pointed at the emulator; keyword arguments override Config."""

    def make(tenant: str = "acme", **overrides: object) -> OpenAILLM:
        settings: dict[str, object] = {"base_url": emulator.base_url, "api_key": API_KEY, "max_retries": 0}
        settings.update(overrides)
        return OpenAILLM(OpenAIConfig(**settings), context_for(tenant, tmp_path))  # type: ignore[arg-type]

    return make
