"""Webhook ingest with the durable inbox vs a bare Starlette endpoint, same server, same run.

    .venv/bin/python bench/ingest.py [--requests 3000] [--concurrency 32] [--rounds 2]
                                     [--synchronous full|normal] [--process]

One hypercorn server (in this process) serves the maxcore app with an extra
``POST /bare`` route (reads the body, answers a JSON like the webhook's). A second
process (bench/loadgen.py) drives it over loopback with keep-alive connections, first
``/bare`` then ``/webhooks/webchat`` (a new message per request: session check, parse,
group-committed INSERT in SQLite WAL, 200), alternating for ``--rounds``. Without
``--process`` the inbox workers are not started, so the figure is ingest alone; with it,
the offline pipeline runs in the same process while the load goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

os.environ.setdefault("MAXCORE_LOAD_PLUGINS", "")  # built-ins only: the bench is about the core

from maxcore.app import create_app
from maxcore.logs import setup_logging
from maxcore.plugins import load_plugins
from maxcore.runtime import Runtime
from maxcore.testing.server import free_port

LOADGEN = Path(__file__).with_name("loadgen.py")
SESSIONS = 50


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
    return config


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
            targets = {"bare": ("/bare", "bare"), "durable inbox": ("/webhooks/webchat", "webchat")}
            for path, kind in targets.values():  # warm-up
                await load(port, path, kind, token_file, 300, args.concurrency)
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, (path, kind) in targets.items():
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
    print(f"\nwebhook ingest, {args.requests} requests x {args.rounds} rounds, concurrency "
          f"{args.concurrency}, synchronous={args.synchronous}, workers {'on' if args.process else 'off'}")
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
    parser.add_argument("--log-level", default="WARNING")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
