"""One contract emulator behind a fixed added latency, served in its own process.

    .venv/bin/python bench/upstream.py greenapi|espocrm|openai LATENCY_MS PORT_FILE

``bench/pipeline.py`` starts one per upstream: in their own processes, the emulators'
CPU neither shares maxcore's core accounting nor serialises on one interpreter lock
with the other emulators and the load generator (which made the upstreams, not
maxcore, the limit). ``GET /__bench/stats`` answers the number of delayed calls and,
for Green-API, the messages sent so far. The port bound is written to ``PORT_FILE``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

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
    """``app`` answering ``seconds`` later on the paths ``delayed`` selects (counted)."""
    counter = [0]

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/__bench/stats":
            body = json.dumps({"calls": counter[0], **stats()}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "http" and delayed(scope["path"]):
            counter[0] += 1
            await asyncio.sleep(seconds)
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


def main() -> None:
    kind, latency_ms, port_file = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
    app, attach = build(kind, latency_ms / 1000)
    server = ServerThread(app).start()
    attach(server)
    port_file.write_text(str(server.port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
