"""One contract emulator behind a fixed added latency, served in its own process.

    .venv/bin/python bench/upstream.py greenapi|espocrm|openai LATENCY_MS PORT_FILE [aiohttp|hypercorn]

``bench/pipeline.py`` starts one per upstream: in their own processes, the emulators'
CPU neither shares maxcore's core accounting nor serialises on one interpreter lock
with the other emulators and the load generator (which made the upstreams, not
maxcore, the limit). ``GET /__bench/stats`` answers the number of delayed calls and,
for Green-API, the messages sent so far. The port bound is written to ``PORT_FILE``.

The emulator apps are the tests' own (same routes, answers and errors), but served here
by aiohttp's server through a small ASGI bridge instead of hypercorn: on a 2-core box
the three emulators' CPU (hypercorn's pure-Python HTTP about half of it) took as much of
the machine as maxcore, so the bound, not maxcore, set the W = 256 figure. The bridge
reads the whole request and sends the whole answer, which is all these apps need.
A fourth argument ``hypercorn`` serves them as the tests do, for comparison.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from loadgen import percentile

from maxcore.testing.espocrm import ApiUser, EspoEmulator
from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.openai_emulator import OpenAIEmulator
from maxcore.testing.server import ServerThread

INSTANCE = 7105000001
API_TOKEN = "bench-api-token-0123456789abcdef0123456789"
WEBHOOK_TOKEN = "bench-webhook-token-0123456789abcdef"
ESPO_KEY = "bench-espo-key-0123456789abcdef"
OPENAI_KEY = "sk-bench-0123456789abcdef"

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def with_latency(app: ASGIApp, seconds: float, delayed: Callable[[str], bool],
                 stats: Callable[[], dict[str, int]]) -> ASGIApp:
    """``app`` answering ``seconds`` later on the paths ``delayed`` selects (counted).

    Each delayed call's *excess* is kept: how much longer than ``seconds`` it took here,
    from the request handed to the app to the answer sent (the emulator's own queueing
    and work). ``/__bench/stats`` reports its p50/p99 since the last ``?reset``.
    """
    counter = [0]
    excess: list[float] = []

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/__bench/stats":
            ordered = sorted(excess)
            answer = {"calls": counter[0], **stats(),
                      "excess_ms_p50": round(percentile(ordered, 0.5) * 1000, 1),
                      "excess_ms_p99": round(percentile(ordered, 0.99) * 1000, 1)}
            if b"reset" in scope.get("query_string", b""):
                excess.clear()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": json.dumps(answer).encode()})
            return
        if scope["type"] == "http" and delayed(scope["path"]):
            counter[0] += 1
            started = time.perf_counter()
            await asyncio.sleep(seconds)
            await app(scope, receive, send)
            excess.append(time.perf_counter() - started - seconds)
            return
        await app(scope, receive, send)

    return wrapped


def build(kind: str, latency_s: float) -> tuple[ASGIApp, Callable[[ServerThread], None]]:
    if kind == "greenapi":
        greenapi = GreenApiEmulator(rate_limits={})
        instance = greenapi.add_instance(INSTANCE, API_TOKEN, WEBHOOK_TOKEN)
        return with_latency(greenapi.app, latency_s,
                            lambda path: path.split("/")[2:3] == ["sendMessage"],
                            lambda: {"sent": len(instance.sent)}), lambda server: None
    if kind == "espocrm":
        espo = EspoEmulator()
        espo.add_api_user(ApiUser(api_key=ESPO_KEY))

        def attach_espo(server: ServerThread) -> None:
            espo.server = server

        return with_latency(espo.app, latency_s, lambda path: path.startswith("/api/v1/Lead"),
                            lambda: {}), attach_espo
    if kind == "openai":
        openai = OpenAIEmulator(api_key=OPENAI_KEY)

        def attach_openai(server: ServerThread) -> None:
            openai.server = server

        return with_latency(openai.app, latency_s, lambda path: path.endswith("/chat/completions"),
                            lambda: {}), attach_openai
    raise SystemExit(f"unknown upstream {kind!r}: greenapi, espocrm or openai")


def asgi_handler(app: ASGIApp) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler running ``app`` for one whole request and answer."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": request.method, "scheme": "http", "path": request.path,
            "raw_path": request.raw_path.split("?", 1)[0].encode(),
            "query_string": request.query_string.encode(), "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in request.headers.items()],
            "client": request.transport.get_extra_info("peername") if request.transport else None,
            "server": ("127.0.0.1", 0),
        }
        received = False
        status, headers, chunks = 500, [], []

        async def receive() -> dict[str, Any]:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k.decode("latin-1"), v.decode("latin-1"))
                           for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        response = web.Response(status=status, body=b"".join(chunks))
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding"):
                response.headers.add(name, value)
        return response

    return handle


class AiohttpServer:
    """``app`` on aiohttp's server, in its own thread; ``url`` and ``stop()`` as ServerThread."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="aiohttp-upstream")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        application = web.Application(client_max_size=64 * 1024 * 1024)
        application.router.add_route("*", "/{tail:.*}", asgi_handler(self.app))
        self._runner = web.AppRunner(application, access_log=None, handle_signals=False)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())

    def start(self) -> AiohttpServer:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the aiohttp server did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def main() -> None:
    kind, latency_ms, port_file = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
    server_kind = sys.argv[4] if len(sys.argv) > 4 else "aiohttp"
    app, attach = build(kind, latency_ms / 1000)
    server: Any = (ServerThread(app) if server_kind == "hypercorn" else AiohttpServer(app)).start()
    attach(server)
    port_file.write_text(str(server.port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
