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
from pathlib import Path
from typing import Any

import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config


def free_port() -> int:
    """A port that was free a moment ago: only for a client that must find nothing listening.

    Servers bind port 0 themselves (``ServerThread``, ``maxcore serve --port 0``): handing this
    port to a server races with every other test that does the same.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port held bound but not listening: connecting to it is refused for as long as it is held."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def body_first(app: Any) -> Any:
    """Wrap an ASGI app so the whole request body is read before the app runs.

    An emulator route that answers early (a 404 or 401 before reading the body) would leave
    unread bytes on a keep-alive connection; hypercorn then drops the connection and the
    client's next pooled request fails. Reading first keeps every connection reusable.
    """

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        chunks: list[bytes] = []
        disconnect: dict[str, Any] | None = None
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnect = message
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                if disconnect is not None:
                    return disconnect
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return dict(await receive())

        await app(scope, replay, send)

    return wrapped


class ServerThread:
    """An ASGI app served by hypercorn in its own thread and event loop.

    The server binds its port itself (port 0 by default) and reports the one it got in
    ``port``, so servers started in parallel never race for a port.
    """

    def __init__(self, app: Any, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.app = body_first(app)
        self.host = host
        self.port = port or 0
        self._bind = ""
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
        config.bind = [self._bind]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 1
        from ..server import LISTEN_BACKLOG

        config.backlog = LISTEN_BACKLOG
        try:
            loop.run_until_complete(
                serve(self.app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
            )
        except BaseException as exc:  # noqa: BLE001 - surfaced by start()
            self._error = exc
        finally:
            loop.close()

    def start(self, timeout: float = 10.0) -> ServerThread:
        from ..server import bind_listener

        self._bind, self.port = bind_listener(self.host, self.port)
        self._thread = threading.Thread(target=self._run, name=f"asgi-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._error is not None:
                raise RuntimeError(f"server failed to start: {self._error}")
            # The socket listens from bind_listener on; wait for hypercorn to be serving it.
            if self._loop is not None and self._loop.is_running():
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.2):
                        return self
                except OSError:
                    pass
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



def served_port(data_dir: Path) -> int | None:
    """The port a ``maxcore serve`` on ``data_dir`` bound (``--port 0``), once it serves."""
    try:
        return int((data_dir / "maxcore.port").read_text().strip())
    except (OSError, ValueError):
        return None
