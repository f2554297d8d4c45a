"""The whole pipeline against latency-injecting emulators: achieved throughput vs its bound,
and maxcore's CPU per message.

    .venv/bin/python bench/pipeline.py [--scenario upstreams|offline-webchat|offline-greenapi|all]
                                       [--workers 64,256] [--conversations 1000]
                                       [--llm-ms 800] [--crm-ms 40] [--send-ms 40]

Scenarios (each one ``maxcore serve`` process with its own data dir; the emulators run
in their own processes, ``bench/upstream.py``, so their CPU is neither counted as
maxcore's nor serialised on one interpreter lock with the load generator; they are served
by aiohttp, lighter than the tests' hypercorn, unless ``--upstream-server hypercorn``):

- ``upstreams``: one Green-API tenant wired to EspoCRM and OpenAI emulators behind a
  fixed added latency (LLM ``--llm-ms``, CRM ``--crm-ms``, Green-API ``sendMessage``
  ``--send-ms``), embedded SQLite memory; ``--conversations`` chats each send one lead
  message at once, for each worker count W of ``--workers``. Printed next to the bound
  computed in the same run: bound = min(W, conversations) / L messages per second, L
  the latency the emulators added to one message (calls counted at the emulators /
  messages, times their latency); achieved = messages / (first webhook sent → last
  message done), achieved/bound; webhook ack latency p50/p99 during the burst next to
  the same webhooks acknowledged by an idle server (duplicates, before the burst); each
  emulator's CPU per message and its *excess* per call (p50/p99: how much longer than
  the injected latency a call took inside the emulator, its own queueing and work).
  ``--split`` runs it on a ``--role web`` and a ``--role worker`` process (CPU of both).
- ``offline-webchat``: the demo tenant's parts (webchat, SQLite CRM and memory, offline
  model): 400 lead messages over 100 chats (``--chats``, ``--per-chat``).
- ``offline-greenapi``: the same through the Green-API webhook, one ``sendMessage`` per
  reply to the emulator (no added latency).

``--profile DIR`` attaches ``py-spy record`` to each server process for the measured
phase and writes ``DIR/<scenario>-<N>.txt`` (N: the process, web first) in py-spy's
collapsed-stack format; py-spy pauses the process to sample it, so the CPU figures of a
profiled run are not comparable with an unprofiled one. ``BENCH_MAXCORE=PATH`` runs
another ``maxcore`` executable (a wrapper that runs it under cProfile, say).

Every scenario prints maxcore's CPU per message (utime + stime of the server process from
/proc over the run, divided by the messages; the offline scenarios also print the stime
part) next to its baseline from the same server:
the CPU per request of ``GET /api/health`` (the framework's HTTP floor).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from maxcore.http_client import HttpClient, HttpResponse, Timeout
from maxcore.testing.server import served_port

ROOT = Path(__file__).resolve().parents[1]
MAXCORE = os.environ.get("BENCH_MAXCORE") or str(Path(sys.executable).with_name("maxcore"))
UPSTREAM = Path(__file__).with_name("upstream.py")
FIXTURE = ROOT / "tests" / "fixtures" / "greenapi" / "incoming_text.json"
sys.path.insert(0, str(Path(__file__).parent))
from upstream import API_TOKEN, ESPO_KEY, INSTANCE, OPENAI_KEY, WEBHOOK_TOKEN  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PY_SPY = str(Path(sys.executable).with_name("py-spy"))
HEALTH_REQUESTS = 400
HEALTH_TOKEN = "bench-health-token"


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS  # utime, stime


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else 0.0


class LoadClient:
    """The load generator's client: maxcore's own on aiohttp's pool. ``httpx.AsyncClient``
    on its default pool spent ~7 ms of CPU per request with 64 in flight
    (bench/http_clients.py): a core of this 2-core machine taken from the server."""

    def __init__(self, base_url: str, connections: int = 64) -> None:
        self.base_url = base_url
        self.http = HttpClient(timeout=Timeout(read=120), max_connections=connections)

    async def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None) -> HttpResponse:
        return await self.http.request("POST", self.base_url + path, json=json, headers=headers)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> HttpResponse:
        return await self.http.request("GET", self.base_url + path, headers=headers)

    async def __aenter__(self) -> LoadClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.http.aclose()


class Profiler:
    """``py-spy record`` attached to running processes, stopped (and written) on demand."""

    def __init__(self, folder: str | None, name: str, pids: list[int]) -> None:
        self.spies: list[subprocess.Popen[bytes]] = []
        if folder is None:
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        for index, pid in enumerate(pids):
            output = Path(folder) / f"{name}-{index}.txt"
            self.spies.append(subprocess.Popen(
                [PY_SPY, "record", "--pid", str(pid), "--format", "raw", "--rate", "250",
                 "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)  # py-spy attaches before the measured phase starts

    def stop(self) -> None:
        for spy in self.spies:
            spy.send_signal(signal.SIGINT)
        for spy in self.spies:
            spy.wait(60)


def greenapi_body(n: int, chat: int) -> dict[str, Any]:
    body = copy.deepcopy(json.loads(FIXTURE.read_text()))
    phone = f"3361{chat:07d}"
    body["idMessage"] = f"BENCH{n:08d}"
    body["senderData"]["chatId"] = body["senderData"]["sender"] = f"{phone}@c.us"
    body["messageData"]["textMessageData"]["textMessage"] = (
        f"Nouveau lead : Jean Dupont{n}, BTP, jean{n}@dupont.example, +{phone}")
    return body


class Upstream:
    """An emulator process (bench/upstream.py) and its counters."""

    def __init__(self, kind: str, latency_ms: float, root: Path, server: str = "aiohttp") -> None:
        port_file = root / f"{kind}.port"
        self.process = subprocess.Popen([sys.executable, str(UPSTREAM), kind, str(latency_ms),
                                         str(port_file), server], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the {kind} emulator did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text()}"

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Calls counted so far; with ``reset``, the excess latency figures restart."""
        query = "?reset=1" if reset else ""
        return dict(httpx.get(self.url + "/__bench/stats" + query, timeout=10).json())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def write_config(root: Path, workers: int, tenant: str) -> Path:
    config = root / "config"
    (config / "tenants").mkdir(parents=True)
    (config / "maxcore.yaml").write_text(textwrap.dedent(f"""
        data_dir: {root / 'data'}
        inbox: {{type: sqlite, workers: {workers}, max_pending: 1000000}}
        logging: {{level: INFO}}
        server: {{health_token: {HEALTH_TOKEN}}}
    """))
    (config / "tenants" / "acme.yaml").write_text(tenant)
    return config


def greenapi_tenant(urls: dict[str, str]) -> str:
    parts = [textwrap.dedent(f"""
        tenant: acme
        channel:
          type: greenapi
          instance_id: {INSTANCE}
          api_token: {API_TOKEN}
          webhook_token: {WEBHOOK_TOKEN}
          api_url: {urls['greenapi']}
        memory: {{type: sqlite}}
        assistant: {{language: fr}}
    """)]
    if "espocrm" in urls:
        parts.append(f"crm: {{type: espocrm, url: {urls['espocrm']}, api_key: {ESPO_KEY}}}\n")
        parts.append(f"llm: {{type: openai, base_url: {urls['openai']}/v1, api_key: {OPENAI_KEY}, "
                     "max_retries: 0}\n")
    else:
        parts.append("crm: {type: sqlite}\nllm: {type: offline}\n")
    return "".join(parts)


WEBCHAT_TENANT = textwrap.dedent("""
    tenant: acme
    channel: {type: webchat, rate_limits: false}
    crm: {type: sqlite}
    memory: {type: sqlite}
    llm: {type: offline}
    assistant: {language: fr}
""")


def start_server(root: Path, config: Path, role: str = "all") -> tuple[subprocess.Popen[bytes], int]:
    """``maxcore serve --role role``; the port it serves (0 for a worker, which serves none)."""
    env = {**os.environ, "MAXCORE_LOAD_PLUGINS": "greenapi,espocrm,openai"}
    with (root / f"serve-{role}.log").open("wb") as log:
        process = subprocess.Popen([MAXCORE, "serve", "--config", str(config), "--port", "0",
                                    "--role", role], stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if role == "worker":
            if (root / "data" / "maxcore-worker.pid").exists():
                return process, 0
        elif port := served_port(root / "data"):
            return process, port
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"maxcore serve did not start: {(root / f'serve-{role}.log').read_text()}")


class Servers:
    """One ``--role all`` process, or a ``--role web`` and a ``--role worker`` pair."""

    def __init__(self, root: Path, config: Path, split: bool) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.port = 0
        for role in (("web", "worker") if split else ("all",)):
            process, port = start_server(root, config, role)
            self.processes.append(process)
            self.port = self.port or port

    @property
    def web_pid(self) -> int:
        return self.processes[0].pid

    def cpu(self) -> float:
        return sum(cpu_seconds(process.pid) for process in self.processes)

    def rss(self) -> float:
        return sum(rss_mb(process.pid) for process in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(60)


def done_count(root: Path) -> int:
    with sqlite3.connect(f"file:{root / 'data' / 'inbox.sqlite3'}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM inbox WHERE state = 'done'").fetchone()[0])


async def wait_done(root: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while done_count(root) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done_count(root)} of {count} messages done in {timeout:g} s")
        await asyncio.sleep(0.05)


async def post_all(client: LoadClient, requests: list[tuple[str, dict[str, Any], dict[str, str]]],
                   concurrency: int) -> list[float]:
    """POST each (path, body, headers); the ack latencies. Requests of one chat keep their order
    when ``concurrency`` is 1 per chat (the caller interleaves chats)."""
    latencies: list[float] = []
    queue = list(reversed(requests))

    async def lane() -> None:
        while queue:
            path, body, headers = queue.pop()
            started = time.perf_counter()
            response = await client.post(path, json=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}: {response.text}")
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return latencies


async def health_floor(client: LoadClient, pid: int) -> float:
    """CPU (ms) per ``GET /api/health`` on this server: the baseline of the run."""
    before = cpu_seconds(pid)
    for _ in range(HEALTH_REQUESTS):
        if (await client.get("/api/health")).status_code != 200:
            raise RuntimeError("GET /api/health failed")
    return (cpu_seconds(pid) - before) * 1000 / HEALTH_REQUESTS


async def loop_lag(client: LoadClient) -> dict[str, Any]:
    """The server's event-loop lag over its last minute (``/api/health``)."""
    answer = await client.get("/api/health", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"})
    return dict(answer.json().get("loop_lag_ms") or {})


async def commit_batches(client: LoadClient) -> int:
    """The inbox's group commits so far (``/api/health``)."""
    answer = await client.get("/api/health", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"})
    return int(answer.json()["inbox"].get("commit_batches", 0))


def greenapi_requests(n: int, chats: int) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    return [("/webhooks/greenapi", greenapi_body(i, i % chats), headers) for i in range(n)]


async def run_upstreams(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"maxcore-bench-w{workers}-"))
    server = args.upstream_server
    upstreams = {"greenapi": Upstream("greenapi", args.send_ms, root, server),
                 "espocrm": Upstream("espocrm", args.crm_ms, root, server),
                 "openai": Upstream("openai", args.llm_ms, root, server)}
    config = write_config(root, workers, greenapi_tenant({k: u.url for k, u in upstreams.items()}))
    servers = await asyncio.to_thread(Servers, root, config, args.split)
    port = servers.port
    n = args.conversations
    try:
        async with LoadClient(f"http://127.0.0.1:{port}") as client:
            # Idle baseline: one message processed, then its duplicates acknowledged (no work).
            warm = greenapi_requests(1, 1)[0]
            warm = (warm[0], greenapi_body(10_000_000, 9_999_999), warm[2])
            await post_all(client, [warm], 1)
            await wait_done(root, 1, 60)
            idle_acks = await post_all(client, [warm] * 200, 8)
            floor = await health_floor(client, servers.web_pid)
            before = {kind: upstream.stats(reset=True) for kind, upstream in upstreams.items()}
            profiler = await asyncio.to_thread(
                Profiler, args.profile, f"upstreams-w{workers}", [p.pid for p in servers.processes])
            cpu_before = servers.cpu()
            upstream_before = {kind: cpu_seconds(u.process.pid) for kind, u in upstreams.items()}
            started = time.perf_counter()
            acks = await post_all(client, greenapi_requests(n, n), 64)
            await wait_done(root, n + 1, args.timeout)
            elapsed = time.perf_counter() - started
            cpu = servers.cpu() - cpu_before
            upstream_cpu = {kind: cpu_seconds(u.process.pid) - upstream_before[kind]
                            for kind, u in upstreams.items()}
            await asyncio.to_thread(profiler.stop)
            rss = servers.rss()
            after = {kind: upstream.stats() for kind, upstream in upstreams.items()}
            lag = await loop_lag(client)
    finally:
        await asyncio.to_thread(servers.stop)
        for upstream in upstreams.values():
            upstream.stop()
    calls = {kind: (after[kind]["calls"] - before[kind]["calls"]) / n for kind in upstreams}
    per_message = (calls["openai"] * args.llm_ms + calls["espocrm"] * args.crm_ms
                   + calls["greenapi"] * args.send_ms) / 1000
    bound = min(workers, n) / per_message
    achieved = n / elapsed
    return {
        "scenario": "upstreams", "workers": workers, "split": args.split, "messages": n,
        "latency_per_message_s": round(per_message, 3),
        "calls_per_message": {"llm": calls["openai"], "crm": calls["espocrm"], "send": calls["greenapi"]},
        "bound_msg_s": round(bound, 1), "achieved_msg_s": round(achieved, 1),
        "achieved_over_bound": round(achieved / bound, 3),
        "cpu_ms_per_message": round(cpu * 1000 / n, 2), "health_cpu_ms_per_request": round(floor, 3),
        "rss_mb": round(rss, 1),
        # The emulators' own CPU (same machine): when it nears a core, they are the limit.
        "upstream_cpu_ms_per_message": {
            kind: round(cpu_s * 1000 / n, 2) for kind, cpu_s in upstream_cpu.items()},
        # How much longer than its injected latency a call took inside each emulator
        # (p50, p99): the part of a message's time the emulators, not maxcore, add.
        "upstream_excess_ms": {
            kind: (after[kind]["excess_ms_p50"], after[kind]["excess_ms_p99"]) for kind in upstreams},
        "run_s": round(elapsed, 1),
        "ack_ms_p50": round(percentile(acks, 0.5) * 1000, 1),
        "ack_ms_p99": round(percentile(acks, 0.99) * 1000, 1),
        "idle_ack_ms_p50": round(percentile(idle_acks, 0.5) * 1000, 1),
        "idle_ack_ms_p99": round(percentile(idle_acks, 0.99) * 1000, 1),
        # How late the (web) process's loop ran ready work over its last minute, the
        # burst most of it: every await of a message waits about that long.
        "loop_lag_ms": lag,
    }


async def run_offline(args: argparse.Namespace, channel: str) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"maxcore-bench-{channel}-"))
    chats, per_chat = args.chats, args.per_chat
    n = chats * per_chat
    upstream = Upstream("greenapi", 0, root, args.upstream_server) if channel == "greenapi" else None
    tenant = greenapi_tenant({"greenapi": upstream.url}) if upstream else WEBCHAT_TENANT
    config = write_config(root, 8, tenant)
    process, port = await asyncio.to_thread(start_server, root, config)
    try:
        async with LoadClient(f"http://127.0.0.1:{port}") as client:
            if upstream is not None:
                requests = greenapi_requests(n, chats)
            else:
                tokens = [(await client.post("/chat/acme/session")).json()["token"] for _ in range(chats)]
                requests = [("/webhooks/webchat",
                             {"id": f"m{i}", "text": f"Nouveau lead : Jean Dupont{i}, BTP, "
                                                     f"jean{i}@dupont.example, +3361{i % chats:07d}"},
                             {"Authorization": f"Bearer {tokens[i % chats]}"}) for i in range(n)]
            await post_all(client, requests[:chats], 8)  # warm-up: one message per chat
            await wait_done(root, chats, args.timeout)
            floor = await health_floor(client, process.pid)
            profiler = await asyncio.to_thread(Profiler, args.profile, f"offline-{channel}", [process.pid])
            batches_before = await commit_batches(client)
            user_before, system_before = cpu_split(process.pid)
            started = time.perf_counter()
            await post_all(client, requests[chats:], 8)
            await wait_done(root, n, args.timeout)
            elapsed = time.perf_counter() - started
            user_after, system_after = cpu_split(process.pid)
            system = system_after - system_before
            cpu = user_after - user_before + system
            await asyncio.to_thread(profiler.stop)
            batches = await commit_batches(client) - batches_before
            sent = upstream.stats()["sent"] if upstream is not None else None
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 60)
        if upstream is not None:
            upstream.stop()
    measured = n - chats
    if sent is not None and sent < n:
        raise RuntimeError(f"only {sent} replies reached Green-API for {n} messages")
    return {"scenario": f"offline-{channel}", "messages": measured, "chats": chats,
            "cpu_ms_per_message": round(cpu * 1000 / measured, 2),
            "system_cpu_ms_per_message": round(system * 1000 / measured, 2),
            "health_cpu_ms_per_request": round(floor, 3),
            "inbox_commits_per_message": round(batches / measured, 2),
            "messages_per_s": round(measured / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--scenario", default="all",
                        choices=["all", "upstreams", "offline-webchat", "offline-greenapi"])
    parser.add_argument("--workers", default="64,256")
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--llm-ms", type=float, default=800)
    parser.add_argument("--crm-ms", type=float, default=40)
    parser.add_argument("--send-ms", type=float, default=40)
    parser.add_argument("--split", action="store_true",
                        help="upstreams: --role web and --role worker processes (CPU of both)")
    parser.add_argument("--chats", type=int, default=100, help="offline scenarios: chats")
    parser.add_argument("--per-chat", type=int, default=4, help="offline scenarios: messages per chat")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--profile", metavar="DIR", help="py-spy profiles of the measured phase here")
    parser.add_argument("--upstream-server", choices=["aiohttp", "hypercorn"], default="aiohttp",
                        help="what serves the emulators (bench/upstream.py): aiohttp is lighter")
    args = parser.parse_args()
    print(f"pipeline bench on {os.cpu_count()} cores")
    if args.scenario in ("all", "offline-webchat", "offline-greenapi"):
        for channel in ("webchat", "greenapi"):
            if args.scenario not in ("all", f"offline-{channel}"):
                continue
            result = asyncio.run(run_offline(args, channel))
            print(json.dumps(result))
            print(f"offline/{channel}: CPU {result['cpu_ms_per_message']} ms/message, "
                  f"{result['system_cpu_ms_per_message']} of it in the kernel "
                  f"(baseline: GET /api/health {result['health_cpu_ms_per_request']} ms/request)")
    if args.scenario in ("all", "upstreams"):
        print(f"upstreams: {args.conversations} conversations, LLM {args.llm_ms:g} ms, "
              f"CRM {args.crm_ms:g} ms, send {args.send_ms:g} ms")
        for workers in (int(w) for w in args.workers.split(",")):
            result = asyncio.run(run_upstreams(args, workers))
            print(json.dumps(result))
            layout = " (web + worker)" if args.split else ""
            lag = result["loop_lag_ms"]
            print(f"W={workers}{layout}: achieved {result['achieved_msg_s']} msg/s "
                  f"vs bound {result['bound_msg_s']} "
                  f"= {result['achieved_over_bound']:.2f}; CPU {result['cpu_ms_per_message']} ms/message "
                  f"(baseline: GET /api/health {result['health_cpu_ms_per_request']} ms/request); "
                  f"acks p99 {result['ack_ms_p99']} ms (idle server {result['idle_ack_ms_p99']} ms); "
                  f"loop lag p50/p99 {lag.get('p50')}/{lag.get('p99')} ms; emulators' excess "
                  "p50/p99 per call: " + ", ".join(
                      f"{kind} {p50}/{p99} ms" for kind, (p50, p99) in result["upstream_excess_ms"].items()))


if __name__ == "__main__":
    main()
