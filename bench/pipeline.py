"""The whole pipeline against latency-injecting emulators: achieved throughput vs its bound.

    .venv/bin/python bench/pipeline.py [--workers 64,256] [--conversations 1000]
                                       [--llm-ms 800] [--crm-ms 40] [--send-ms 40]

For each worker count W, one ``maxcore serve`` process (its own data dir) serves one
Green-API tenant wired to EspoCRM and OpenAI, each an emulator from ``maxcore.testing``
served in this process behind a fixed added latency (LLM ``--llm-ms``, CRM ``--crm-ms``,
Green-API ``sendMessage`` ``--send-ms``); memory is the embedded SQLite. ``--conversations``
chats each send one lead message through the webhook at once; the bench waits until
every reply reached the Green-API emulator.

Printed, per W, next to the bound computed in the same run:

- bound = min(W, conversations) / L messages per second, where L is the latency the
  emulators added to one message (upstream calls counted at the emulators / messages,
  times their latency): no implementation can beat it with W conversations in flight;
- achieved = messages / (first webhook sent → last reply received), and achieved/bound;
- CPU per message of the maxcore process alone (utime + stime from /proc over the run);
- webhook acknowledgement latency p50 / p99 during the burst, next to the same
  webhooks acknowledged by an idle server (duplicates, before the burst).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from maxcore.testing.espocrm import ApiUser, EspoEmulator
from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.openai_emulator import OpenAIEmulator
from maxcore.testing.server import ServerThread, served_port

ROOT = Path(__file__).resolve().parents[1]
MAXCORE = str(Path(sys.executable).with_name("maxcore"))
FIXTURE = ROOT / "tests" / "fixtures" / "greenapi" / "incoming_text.json"
INSTANCE = 7105000001
API_TOKEN = "bench-api-token-0123456789abcdef0123456789"
WEBHOOK_TOKEN = "bench-webhook-token-0123456789abcdef"
ESPO_KEY = "bench-espo-key-0123456789abcdef"
OPENAI_KEY = "sk-bench-0123456789abcdef"
TICKS = os.sysconf("SC_CLK_TCK")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def with_latency(app: ASGIApp, seconds: float, counter: list[int],
                 only: Callable[[str], bool] = lambda path: True) -> ASGIApp:
    """The emulator answers ``seconds`` later on the paths ``only`` selects, which it counts."""

    async def delayed(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and only(scope["path"]):
            counter[0] += 1
            await asyncio.sleep(seconds)
        await app(scope, receive, send)

    return delayed


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else 0.0


def webhook(n: int) -> dict[str, Any]:
    body = copy.deepcopy(json.loads(FIXTURE.read_text()))
    phone = f"3361{n:07d}"
    body["idMessage"] = f"BENCH{n:08d}"
    body["senderData"]["chatId"] = body["senderData"]["sender"] = f"{phone}@c.us"
    body["messageData"]["textMessageData"]["textMessage"] = (
        f"Nouveau lead : Jean Dupont{n}, BTP, jean{n}@dupont.example, +{phone}")
    return body


def write_config(root: Path, workers: int, urls: dict[str, str]) -> Path:
    config = root / "config"
    (config / "tenants").mkdir(parents=True)
    (config / "maxcore.yaml").write_text(textwrap.dedent(f"""
        data_dir: {root / 'data'}
        inbox: {{type: sqlite, workers: {workers}, max_pending: 1000000}}
        logging: {{level: INFO}}
    """))
    (config / "tenants" / "acme.yaml").write_text(textwrap.dedent(f"""
        tenant: acme
        channel:
          type: greenapi
          instance_id: {INSTANCE}
          api_token: {API_TOKEN}
          webhook_token: {WEBHOOK_TOKEN}
          api_url: {urls['greenapi']}
        crm: {{type: espocrm, url: {urls['espocrm']}, api_key: {ESPO_KEY}}}
        memory: {{type: sqlite}}
        llm: {{type: openai, base_url: {urls['openai']}, api_key: {OPENAI_KEY}, max_retries: 0}}
        assistant: {{language: fr}}
    """))
    return config


def start_server(root: Path, config: Path) -> tuple[subprocess.Popen[bytes], int]:
    with (root / "serve.log").open("wb") as log:
        process = subprocess.Popen([MAXCORE, "serve", "--config", str(config), "--port", "0"],
                                   stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        port = served_port(root / "data")
        if port:
            return process, port
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"maxcore serve did not start: {(root / 'serve.log').read_text()}")


async def post_all(client: httpx.AsyncClient, bodies: list[dict[str, Any]],
                   concurrency: int) -> list[float]:
    latencies: list[float] = []
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}

    async def lane() -> None:
        while queue:
            body = queue.pop()
            started = time.perf_counter()
            response = await client.post("/webhooks/greenapi", json=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"webhook answered {response.status_code}: {response.text}")
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return latencies


async def run_one(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    llm_calls, crm_calls, sends = [0], [0], [0]
    greenapi = GreenApiEmulator(rate_limits={})
    instance = greenapi.add_instance(INSTANCE, API_TOKEN, WEBHOOK_TOKEN)
    espo = EspoEmulator()
    espo.add_api_user(ApiUser(api_key=ESPO_KEY))
    openai = OpenAIEmulator(api_key=OPENAI_KEY)
    servers = [
        ServerThread(with_latency(greenapi.app, args.send_ms / 1000, sends,
                                  lambda path: path.split("/")[2:3] == ["sendMessage"])).start(),
        ServerThread(with_latency(espo.app, args.crm_ms / 1000, crm_calls,
                                  lambda path: path.startswith("/api/v1/Lead"))).start(),
        ServerThread(with_latency(openai.app, args.llm_ms / 1000, llm_calls,
                                  lambda path: path.endswith("/chat/completions"))).start(),
    ]
    espo.server = servers[1]
    openai.server = servers[2]
    root = Path(tempfile.mkdtemp(prefix=f"maxcore-bench-w{workers}-"))
    config = write_config(root, workers, {
        "greenapi": servers[0].url, "espocrm": espo.url, "openai": openai.base_url})
    process, port = await asyncio.to_thread(start_server, root, config)
    try:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                     timeout=120) as client:
            # Idle baseline: one message processed, then its duplicates acknowledged (no work).
            warm = webhook(10_000_000)
            await post_all(client, [warm], 1)
            await greenapi.wait_for(lambda: len(instance.sent) >= 1, 60)
            idle_acks = await post_all(client, [warm] * 200, 8)
            sent_before, llm_before, crm_before = len(instance.sent), llm_calls[0], crm_calls[0]
            sends_before = sends[0]
            cpu_before = cpu_seconds(process.pid)
            started = time.perf_counter()
            bodies = [webhook(n) for n in range(args.conversations)]
            acks = await post_all(client, bodies, 64)
            await greenapi.wait_for(
                lambda: len(instance.sent) - sent_before >= args.conversations, args.timeout)
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(process.pid) - cpu_before
            rss = rss_mb(process.pid)
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 60)
        for server in servers:
            server.stop()
    n = args.conversations
    per_message = ((llm_calls[0] - llm_before) * args.llm_ms + (crm_calls[0] - crm_before) * args.crm_ms
                   + (sends[0] - sends_before) * args.send_ms) / 1000 / n
    bound = min(workers, n) / per_message
    achieved = n / elapsed
    return {
        "workers": workers, "messages": n, "latency_per_message_s": round(per_message, 3),
        "calls_per_message": {"llm": (llm_calls[0] - llm_before) / n,
                              "crm": (crm_calls[0] - crm_before) / n,
                              "send": (sends[0] - sends_before) / n},
        "bound_msg_s": round(bound, 1), "achieved_msg_s": round(achieved, 1),
        "achieved_over_bound": round(achieved / bound, 3),
        "cpu_ms_per_message": round(cpu * 1000 / n, 2), "rss_mb": round(rss, 1),
        "ack_ms_p50": round(percentile(acks, 0.5) * 1000, 1),
        "ack_ms_p99": round(percentile(acks, 0.99) * 1000, 1),
        "idle_ack_ms_p50": round(percentile(idle_acks, 0.5) * 1000, 1),
        "idle_ack_ms_p99": round(percentile(idle_acks, 0.99) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--workers", default="64,256")
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--llm-ms", type=float, default=800)
    parser.add_argument("--crm-ms", type=float, default=40)
    parser.add_argument("--send-ms", type=float, default=40)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    print(f"pipeline bench on {os.cpu_count()} cores: {args.conversations} conversations, "
          f"LLM {args.llm_ms:g} ms, CRM {args.crm_ms:g} ms, send {args.send_ms:g} ms")
    for workers in (int(w) for w in args.workers.split(",")):
        result = asyncio.run(run_one(args, workers))
        print(json.dumps(result))
        print(f"W={workers}: achieved {result['achieved_msg_s']} msg/s vs bound {result['bound_msg_s']} "
              f"= {result['achieved_over_bound']:.2f}; CPU {result['cpu_ms_per_message']} ms/message; "
              f"acks p99 {result['ack_ms_p99']} ms (idle server {result['idle_ack_ms_p99']} ms)")


if __name__ == "__main__":
    main()
