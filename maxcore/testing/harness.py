"""Drive a whole maxcore (config directory → runtime → HTTP app) inside a test."""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import httpx

from ..app import create_app
from ..plugins import PluginSet, load_plugins
from ..runtime import Runtime


def write_config(
    directory: Path, tenants: Mapping[str, str], main: str = "", data_dir: Path | None = None
) -> Path:
    """Write ``maxcore.yaml`` and ``tenants/<name>.yaml`` (YAML text, dedented)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tenants").mkdir(exist_ok=True)
    main_text = textwrap.dedent(main)
    if data_dir is not None and "data_dir" not in main_text:
        main_text += f"\ndata_dir: {data_dir}\n"
    (directory / "maxcore.yaml").write_text(main_text)
    for name, text in tenants.items():
        (directory / "tenants" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return directory


@attrs.define
class Running:
    runtime: Runtime
    client: httpx.AsyncClient

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until the inbox has processed everything accepted so far."""
        drain = getattr(self.runtime.inbox, "drain", None)
        if drain is None or not await drain(timeout):
            raise AssertionError(f"inbox did not drain within {timeout}s")
        # Audit rows reach the memory store through the outbox: ship them before a test reads them.
        await self.runtime.flush_audit()


@contextlib.asynccontextmanager
async def running(
    config_dir: Path, plugins: PluginSet | None = None, **kwargs: Any
) -> AsyncIterator[Running]:
    """Start a Runtime from ``config_dir`` and an httpx client bound to its app."""
    runtime = Runtime.from_directory(config_dir, plugins=plugins or load_plugins(), **kwargs)
    app = create_app(runtime, manage_lifecycle=False)
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://maxcore.test") as client:
            yield Running(runtime, client)
    finally:
        await runtime.stop(grace=5)
