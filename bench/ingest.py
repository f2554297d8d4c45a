"""Webhook ingest with the durable inbox vs a bare Starlette endpoint, same server, same run.

    .venv/bin/python bench/ingest.py [--requests 3000] [--concurrency 32] [--rounds 2]
                                     [--synchronous full|normal] [--process]
                                     [--log-level INFO] [--wrk [--duration 10]]

One hypercorn server (in this process) serves the maxcore app with an extra
``POST /bare`` route (reads the body, answers a JSON like the webhook's). A second
process (bench/loadgen.py) drives it over loopback with keep-alive connections, first
``/bare`` then ``/webhooks/webchat`` (a new message per request: session check, parse,
group-committed INSERT in SQLite WAL, 200), alternating for ``--rounds``. Without
``--process`` the inbox workers are not started, so the figure is ingest alone; with it,
the offline pipeline runs in the same process while the load goes on.

Logging is INFO by default (what a deployment runs: every accepted message logs its
``[PIPELINE]`` line). With ``--wrk`` (the ``wrk`` tool must be installed: Debian package
``wrk``) the load comes from wrk instead, with Green-API bodies (a fresh ``idMessage``
per request, from a Lua script) on ``/webhooks/greenapi`` vs the same body on ``/bare``,
``--concurrency`` connections over 2 threads for ``--duration`` seconds per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# Built-ins and the Green-API channel only: the bench is about the core's intake.
os.environ.setdefault("MAXCORE_LOAD_PLUGINS", "greenapi")

from maxcore.app import create_app
from maxcore.logs import setup_logging
from maxcore.plugins import load_plugins
from maxcore.runtime import Runtime
from maxcore.testing.server import free_port

LOADGEN = Path(__file__).with_name("loadgen.py")
SESSIONS = 50
FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "greenapi" / "incoming_text.json"
GREENAPI_TOKEN = "bench-webhook-token-0123456789abcdef0123"
# Each wrk thread numbers its requests; the thread id keeps the ids of two threads apart.
WRK_SCRIPT = """
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)  -- a global of that thread's own Lua state
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
local head, tail = %(head)s, %(tail)s
request = function()
  counter = counter + 1
  local body = head .. "%(run)s-" .. tostring(thread_id) .. "-" .. counter .. tail
  return wrk.format(nil, "%(path)s", nil, body)
end
"""


async def bare(request: Request) -> Response:
    body = await request.body()
    json.loads(body)
    return JSONResponse({"ok": True, "accepted": 1, "duplicates": 0})


def write_config(root: Path, synchronous: str) -> Path:
    config = root / "config"
    (config / "tenants").mkdir(parents=True)
    (config / "maxcore.yaml").write_text(textwrap.dedent(f"""
        data_dir: {root / 'data'}
        inbox: {{type: sqlite, synchronous: {synchronous}, max_pending: 10000000}}
    """))
    # The ingest path is measured, not the webchat's anti-abuse limits.
    (config / "tenants" / "bench.yaml").write_text(
        "tenant: bench\nchannel: {type: webchat, rate_limits: false}\n"
    )
    instance = json.loads(FIXTURE.read_text())["instanceData"]["idInstance"]
    (config / "tenants" / "greenapi.yaml").write_text(textwrap.dedent(f"""
        tenant: greenapi
        channel:
          type: greenapi
          instance_id: {instance}
          api_token: bench-api-token-0123456789abcdef0123456789
          webhook_token: {GREENAPI_TOKEN}
          api_url: http://127.0.0.1:9
    """))
    return config


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


async def wrk_load(port: int, path: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    body = json.loads(FIXTURE.read_text())
    body["idMessage"] = "@@ID@@"
    head, tail = json.dumps(body).split("@@ID@@")
    script = root / f"wrk-{path.strip('/').replace('/', '-')}.lua"
    script.write_text(WRK_SCRIPT % {"token": GREENAPI_TOKEN, "head": lua_string(head),
                                    "tail": lua_string(tail), "path": path,
                                    "run": os.urandom(4).hex()})
    process = await asyncio.create_subprocess_exec(
        "wrk", "-t", "2", "-c", str(args.concurrency), "-d", f"{args.duration}s", "--latency",
        "-s", str(script), f"http://127.0.0.1:{port}{path}", stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    text = out.decode()
    rps = float(text.split("Requests/sec:")[1].split()[0])
    p50 = p99 = 0.0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "99%"):
            value = parts[1]
            ms = float(value.rstrip("usm")) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[
                value.lstrip("0123456789.")]
            p50, p99 = (ms, p99) if parts[0] == "50%" else (p50, ms)
    errors = "Non-2xx" in text or "Socket errors" in text
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99,
            "statuses": {"non-2xx or socket errors": errors}}


async def load(
    port: int, path: str, kind: str, tokens: Path, requests: int, concurrency: int
) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(LOADGEN), "--port", str(port), "--path", path, "--kind", kind,
        "--tokens", str(tokens), "--requests", str(requests), "--concurrency", str(concurrency),
        "--max-seconds", "60", stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    if process.returncode != 0:
        raise SystemExit(f"load generator failed with {process.returncode}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


async def run(args: argparse.Namespace) -> float:
    setup_logging(args.log_level)
    with tempfile.TemporaryDirectory(prefix="maxcore-bench-") as tmp:
        root = Path(tmp)
        runtime = Runtime.from_directory(write_config(root, args.synchronous), plugins=load_plugins())
        app = create_app(runtime, manage_lifecycle=False)
        app.router.routes.append(Route("/bare", bare, methods=["POST"]))
        if args.process:
            await runtime.start()
        else:
            await runtime.open()  # connectors only: submit() still commits, nothing consumes
        port = free_port()
        hc = HypercornConfig()
        hc.bind = [f"127.0.0.1:{port}"]
        hc.accesslog = None
        hc.errorlog = None
        stop = asyncio.Event()
        server = asyncio.create_task(serve(app, hc, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                for _ in range(200):
                    try:
                        await client.get("/api/health")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
                tokens = [(await client.post("/chat/bench/session")).json()["token"] for _ in range(SESSIONS)]
            token_file = root / "tokens.txt"
            token_file.write_text("\n".join(tokens))
            if args.wrk:
                targets = {"bare": ("/bare", "bare"), "durable inbox": ("/webhooks/greenapi", "wrk")}
            else:
                targets = {"bare": ("/bare", "bare"),
                           "durable inbox": ("/webhooks/webchat", "webchat")}
            for path, kind in targets.values():  # warm-up
                await load(port, path, "bare" if kind == "wrk" else kind, token_file, 300,
                           args.concurrency)
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, (path, kind) in targets.items():
                    if args.wrk:
                        results[name].append(await wrk_load(port, path, root, args))
                        continue
                    results[name].append(
                        await load(port, path, kind, token_file, args.requests, args.concurrency)
                    )
            stats = runtime.inbox.stats()
        finally:
            stop.set()
            await server
            if args.process:
                await runtime.stop(grace=1)
            else:
                await runtime.inbox.stop(0)
                await runtime.close()
        with sqlite3.connect(root / "data" / "inbox.sqlite3") as conn:
            stored = conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
    accepted = sum(r["statuses"].get("200", 0) for r in results["durable inbox"])
    tool = f"wrk {args.duration}s" if args.wrk else f"{args.requests} requests"
    print(f"\nwebhook ingest, {tool} x {args.rounds} rounds, concurrency {args.concurrency}, "
          f"synchronous={args.synchronous}, workers {'on' if args.process else 'off'}, "
          f"log level {args.log_level}")
    print(f"{'endpoint':<15} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    means: dict[str, float] = {}
    for name, runs in results.items():
        means[name] = sum(r["rps"] for r in runs) / len(runs)
        for r in runs:
            print(f"{name:<15} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}  {r['statuses']}")
    ratio = means["durable inbox"] / means["bare"]
    print(f"group commits: {stats.get('commit_batches')} (largest batch {stats.get('largest_batch')}); "
          f"rows stored: {stored} (warm-up included)")
    print(f"ratio durable/bare: {ratio:.0%} (goal >= 70%)")
    if accepted and stored < accepted:
        raise SystemExit(f"only {stored} rows stored for {accepted} acknowledged messages")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full")
    parser.add_argument("--process", action="store_true", help="run the inbox workers during the load")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--wrk", action="store_true", help="load with wrk (Green-API bodies)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk round")
    args = parser.parse_args()
    if args.wrk and shutil.which("wrk") is None:
        raise SystemExit("--wrk needs the wrk tool (Debian: apt-get install wrk)")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
