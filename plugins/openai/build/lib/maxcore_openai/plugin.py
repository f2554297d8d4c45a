"""Entry point of the ``openai`` plugin (group ``maxcore``)."""

from __future__ import annotations

from maxcore import hookimpl

from .connector import OpenAILLM


@hookimpl
def register_llms() -> list[type]:
    return [OpenAILLM]
