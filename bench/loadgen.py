"""HTTP/1.1 load generator for bench/ingest.py, run as its own process.

Raw asyncio streams with keep-alive (no client library in the way, so the generator
is not the bottleneck). Sends ``--requests`` POSTs over ``--concurrency`` connections,
stops early at ``--max-seconds``, prints one JSON line: count, errors, elapsed, latencies.

Bodies: ``--kind bare`` posts a fixed JSON; ``--kind webchat`` posts
``{"text", "id"}`` with a unique id per request, rotating over the session tokens
read from ``--tokens`` (one per line), so every request is a new message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def connection(
    args: argparse.Namespace, tokens: list[str], counter: list[int], deadline: float,
    latencies: list[float], statuses: dict[int, int], worker: int,
) -> None:
    reader, writer = await asyncio.open_connection(args.host, args.port)
    run = uuid.uuid4().hex[:8]
    try:
        while counter[0] < args.requests and time.perf_counter() < deadline:
            counter[0] += 1
            n = counter[0]
            headers = f"POST {args.path} HTTP/1.1\r\nHost: {args.host}\r\nContent-Type: application/json\r\n"
            if args.kind == "webchat":
                token = tokens[n % len(tokens)]
                body = json.dumps({"text": f"bonjour {n}", "id": f"{run}-{worker}-{n}"}).encode()
                headers += f"Authorization: Bearer {token}\r\n"
            else:
                body = b'{"text": "bonjour", "id": "bare"}'
            request = (headers + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            started = time.perf_counter()
            writer.write(request)
            status = await read_response(reader)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--kind", choices=["bare", "webchat"], required=True)
    parser.add_argument("--tokens", default=None)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    args = parser.parse_args()
    tokens = Path(args.tokens).read_text().split() if args.tokens else []  # noqa: ASYNC240 - before the load
    counter = [0]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    deadline = started + args.max_seconds
    await asyncio.gather(*(
        connection(args, tokens, counter, deadline, latencies, statuses, worker)
        for worker in range(args.concurrency)
    ))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    print(json.dumps({
        "count": len(latencies), "elapsed_s": elapsed, "rps": len(latencies) / elapsed,
        "p50_ms": percentile(ordered, 0.50) * 1000, "p99_ms": percentile(ordered, 0.99) * 1000,
        "statuses": statuses,
    }))


if __name__ == "__main__":
    asyncio.run(main())
