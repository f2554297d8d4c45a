"""Client CPU per HTTP request, by transport, with W requests in flight to one host.

    .venv/bin/python bench/http_clients.py [--inflight 64,256] [--requests 4000] [--latency-ms 40]

The upstream is a bare aiohttp server in its own process that answers a small JSON
body ``--latency-ms`` later, so W requests stay in flight and the client's pool holds
W connections, as maxcore's pools do with W workers waiting on a slow LLM. Measured in
this process alone (``resource.getrusage``): CPU per request for

- ``httpx``: ``httpx.AsyncClient`` on its default transport (httpcore);
- ``httpx+aiohttp``: ``httpx.AsyncClient`` on the ``httpx_aiohttp`` transport (the
  same ``httpx`` API and exceptions; aiohttp's pool and parser underneath);
- ``maxcore``: :class:`maxcore.http_client.HttpClient`, what the built-in connectors
  (EspoCRM, Green-API, OpenAI) call upstreams with;
- ``openai-sdk-httpx`` / ``openai-sdk-aiohttp``: ``openai.AsyncOpenAI`` chat completions
  on ``DefaultAsyncHttpxClient`` vs ``DefaultAioHttpClient`` (the upstream answers a
  completion); measured when the ``openai`` package is installed (maxcore does not
  need it: ``pip install openai`` for these rows);
- ``aiohttp``: a bare ``aiohttp.ClientSession``: the floor (baseline of the run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

COMPLETION = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Bonjour, c'est noté."}}],
    "usage": {"prompt_tokens": 120, "completion_tokens": 12, "total_tokens": 132},
}

SERVER = """
import asyncio, json, sys
from aiohttp import web
latency = float(sys.argv[2])
body = json.dumps(json.loads(sys.argv[3])).encode()
async def answer(request):
    await request.read()
    await asyncio.sleep(latency)
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_route("*", "/{tail:.*}", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def drive(call: Callable[[], Awaitable[Any]], inflight: int, requests: int) -> tuple[float, float]:
    remaining = [requests]

    async def lane() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await call()

    await asyncio.gather(*(lane() for _ in range(min(inflight, 8))))  # warm the pool a little
    remaining[0] = requests
    started, cpu_before = time.perf_counter(), cpu()
    await asyncio.gather(*(lane() for _ in range(inflight)))
    return (cpu() - cpu_before) * 1e6 / requests, requests / (time.perf_counter() - started)


async def measure(kind: str, url: str, inflight: int, requests: int) -> tuple[float, float]:
    import aiohttp
    import httpx
    import httpx_aiohttp

    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Bonjour"}]}
    limits = httpx.Limits(max_connections=inflight + 16, max_keepalive_connections=inflight + 16)
    if kind == "aiohttp":
        connector = aiohttp.TCPConnector(limit=inflight + 16)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def bare() -> Any:
                async with session.post(url + "/api/v1/Lead", json=payload) as response:
                    return await response.json()
            return await drive(bare, inflight, requests)
    if kind in ("httpx", "httpx+aiohttp"):
        transport = (httpx_aiohttp.AiohttpTransport(limits=limits) if kind == "httpx+aiohttp"
                     else httpx.AsyncHTTPTransport(limits=limits))
        async with httpx.AsyncClient(transport=transport, timeout=30) as client:
            async def plain() -> Any:
                return (await client.post(url + "/api/v1/Lead", json=payload)).json()
            return await drive(plain, inflight, requests)
    if kind == "maxcore":
        from maxcore.http_client import HttpClient, Timeout

        ours = HttpClient(timeout=Timeout(read=30), max_connections=inflight + 16)
        try:
            async def fast() -> Any:
                return (await ours.request("POST", url + "/api/v1/Lead", json=payload)).json()
            return await drive(fast, inflight, requests)
        finally:
            await ours.aclose()
    import httpx2
    import openai

    sdk_limits = httpx2.Limits(max_connections=inflight + 16, max_keepalive_connections=inflight + 16)
    http = (openai.DefaultAioHttpClient(limits=sdk_limits) if kind == "openai-sdk-aiohttp"
            else openai.DefaultAsyncHttpxClient(limits=sdk_limits))
    sdk = openai.AsyncOpenAI(api_key="sk-bench", base_url=url + "/v1", http_client=http, max_retries=0)
    try:
        async def complete() -> Any:
            return await sdk.chat.completions.create(**payload)
        return await drive(complete, inflight, requests)
    finally:
        await http.aclose()


def kinds() -> tuple[str, ...]:
    import importlib.util

    sdk = ("openai-sdk-httpx", "openai-sdk-aiohttp") if importlib.util.find_spec("openai") else ()
    return ("aiohttp", "maxcore", "httpx", "httpx+aiohttp", *sdk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--inflight", default="64,256")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--latency-ms", type=float, default=40)
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds per kind")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(args.latency_ms / 1000),
                               json.dumps(COMPLETION)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        print(f"HTTP client CPU per request on {os.cpu_count()} cores, upstream latency "
              f"{args.latency_ms:g} ms, {args.requests} requests per round; median of {args.rounds} rounds")
        for inflight in (int(n) for n in args.inflight.split(",")):
            measured = kinds()
            results: dict[str, list[tuple[float, float]]] = {kind: [] for kind in measured}
            for _ in range(args.rounds):
                for kind in measured:
                    results[kind].append(asyncio.run(measure(kind, url, inflight, args.requests)))
            floor = sorted(r[0] for r in results["aiohttp"])[len(results["aiohttp"]) // 2]
            for kind in measured:
                cpu_us = sorted(r[0] for r in results[kind])[len(results[kind]) // 2]
                rate = sorted(r[1] for r in results[kind])[len(results[kind]) // 2]
                print(json.dumps({"inflight": inflight, "client": kind,
                                  "cpu_us_per_request": round(cpu_us), "requests_per_s": round(rate),
                                  "vs_bare_aiohttp": round(cpu_us / floor, 2)}))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
