"""maxcore LLM connector for OpenAI and any OpenAI-compatible Chat Completions server."""

from .connector import OpenAIConfig, OpenAILLM

__all__ = ["OpenAIConfig", "OpenAILLM"]
