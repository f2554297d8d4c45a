"""Shared by the fuzz tests and their fixtures (one module object, so one set of
tokens). A whole maxcore (Green-API and webchat tenants, sqlite stores, offline model) kept
running in its own thread and event loop, so synchronous hypothesis tests can send it
requests one example at a time; its text log is captured for the forged-line check."""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from maxcore.testing.harness import Running, running

T = TypeVar("T")
INSTANCE = 7105000001
API_TOKEN = "apitok" + secrets.token_hex(20)
WEBHOOK_TOKEN = "whtok" + secrets.token_hex(16)
WORKERS = 4
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| ")

TENANTS = {
    "acme": f"""
        tenant: acme
        channel: {{type: greenapi, instance_id: {INSTANCE}, api_token: {API_TOKEN},
                  webhook_token: {WEBHOOK_TOKEN}, api_url: "{{api_url}}", backoff_initial_ms: 10}}
        crm: {{type: sqlite}}
        memory: {{type: sqlite}}
        llm: {{type: offline}}
        """,
    "web": """
        tenant: web
        channel: {type: webchat, rate_limits: false}
        crm: {type: sqlite}
        memory: {type: sqlite}
        llm: {type: offline}
        """,
}
MAIN = f"""
inbox: {{type: sqlite, workers: {WORKERS}, backoff_initial_s: 0.01, backoff_max_s: 0.05, max_attempts: 2}}
"""


class LiveApp:
    """``running(config)`` entered in a background loop; ``call`` runs a coroutine there."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stopping: asyncio.Event | None = None
        self.r: Running | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="fuzz-app", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self.stopping = asyncio.Event()
        async with running(self.config) as r:
            self.r = r
            self.ready.set()
            await self.stopping.wait()

    def start(self) -> LiveApp:
        self.thread.start()
        self.ready.wait(30)
        if self.error is not None or self.r is None:
            raise RuntimeError(f"maxcore did not start: {self.error}")
        return self

    def call(self, make: Callable[[Running], Awaitable[T]], timeout: float = 30.0) -> T:
        assert self.r is not None
        return asyncio.run_coroutine_threadsafe(make(self.r), self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(30)



def forged_lines(log: str) -> list[str]:
    """Lines that are neither a record (timestamp at column 0) nor an indented continuation."""
    return [line for line in log.splitlines() if line and not RECORD_START.match(line)
            and not line.startswith("    ")]


def bearer(token: str = WEBHOOK_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(app: LiveApp, path: str, body: bytes, headers: dict[str, str]) -> Any:
    async def send(r: Running) -> Any:
        return await r.client.post(path, content=body, headers=headers)

    return app.call(send)
