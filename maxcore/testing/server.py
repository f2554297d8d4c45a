"""Run an ASGI app as a real HTTP server on 127.0.0.1, in a background thread.

Contract emulators are served this way so that connectors under test talk real HTTP
to them (no transport patching), from sync or async tests alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """An ASGI app served by hypercorn in its own thread and event loop."""

    def __init__(self, app: Any, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.app = app
        self.host = host
        self.port = port or free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._stop = asyncio.Event()
        config = Config()
        config.bind = [f"{self.host}:{self.port}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 1
        try:
            loop.run_until_complete(
                serve(self.app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
            )
        except BaseException as exc:  # noqa: BLE001 - surfaced by start()
            self._error = exc
        finally:
            loop.close()

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread = threading.Thread(target=self._run, name=f"asgi-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._error is not None:
                raise RuntimeError(f"server failed to start: {self._error}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"server on {self.url} did not start within {timeout}s")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serving(app: Any, port: int | None = None) -> Iterator[ServerThread]:
    """``with serving(app) as server: httpx.get(server.url + "/...")``."""
    server = ServerThread(app, port).start()
    try:
        yield server
    finally:
        server.stop()


def wait_http(url: str, timeout: float = 10.0) -> None:
    """Wait until ``url`` answers any HTTP status."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
