"""Many tenants: how long `maxcore check` and `serve` take, the memory, the health latency.

    .venv/bin/python bench/tenants.py [--tenants 1000] [--health-calls 20] [--profile DIR]

Generates N tenant files — 60 % embedded (webchat, SQLite, offline), 40 % production
connectors (Green-API, EspoCRM, OpenAI) with random 32–50-character hex tokens as real
deployments have, each pointed at a contract emulator served by this process — and
measures, next to the same measures for a single tenant (the fixed cost, same run):

- `maxcore check` wall time;
- `maxcore serve` from exec to the first 200 on `/api/health`, and its RSS then;
- `/api/health` latency (median over --health-calls, with the health token) next to the
  latency of `/` on the same server (a bare endpoint: the latency floor).

With ``--profile DIR``, `maxcore serve` runs under ``py-spy record`` and the start-up
profile (exec to the first health 200, then the health calls) is written to
``DIR/serve-N.txt`` in py-spy's collapsed-stack format (one stack per line, with its
sample count: ``sort -t' ' -k2 -n`` or any flame-graph tool reads it).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from maxcore.testing.espocrm import ApiUser, EspoEmulator
from maxcore.testing.greenapi_emulator import GreenApiEmulator
from maxcore.testing.openai_emulator import OpenAIEmulator
from maxcore.testing.server import ServerThread, served_port

MAXCORE = str(Path(sys.executable).with_name("maxcore"))
PY_SPY = str(Path(sys.executable).with_name("py-spy"))
HEALTH_TOKEN = "bench-health-" + secrets.token_hex(16)
OPENAI_KEY = "sk-bench-" + secrets.token_hex(16)


def token() -> str:
    return secrets.token_hex(secrets.choice(range(16, 26)))  # 32-50 hex characters


class Upstreams:
    def __init__(self) -> None:
        self.greenapi = GreenApiEmulator(rate_limits={})
        self.espo = EspoEmulator()
        self.openai = OpenAIEmulator(api_key=OPENAI_KEY)
        self.servers = [ServerThread(self.greenapi.app).start(), ServerThread(self.espo.app).start(),
                        ServerThread(self.openai.app).start()]
        self.espo.server = self.servers[1]
        self.openai.server = self.servers[2]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def tenant_yaml(n: int, upstreams: Upstreams) -> str:
    if n % 5 < 3:  # 60 % embedded
        return f"tenant: t{n:05d}\nname: Tenant {n}\n"
    instance = 7100000000 + n
    api_token, webhook_token, espo_key = token(), token(), token()
    upstreams.greenapi.add_instance(instance, api_token, webhook_token)
    upstreams.espo.add_api_user(ApiUser(api_key=espo_key))
    return textwrap.dedent(f"""
        tenant: t{n:05d}
        name: Tenant {n}
        channel:
          type: greenapi
          instance_id: {instance}
          api_token: {api_token}
          webhook_token: {webhook_token}
          api_url: {upstreams.servers[0].url}
        crm: {{type: espocrm, url: {upstreams.espo.url}, api_key: {espo_key}}}
        memory: {{type: sqlite}}
        llm: {{type: openai, base_url: {upstreams.openai.base_url}, api_key: {OPENAI_KEY}}}
    """)


def write_config(root: Path, count: int, upstreams: Upstreams) -> Path:
    config = root / "config"
    (config / "tenants").mkdir(parents=True)
    (config / "maxcore.yaml").write_text(textwrap.dedent(f"""
        server: {{health_token: {HEALTH_TOKEN}}}
        data_dir: {root / 'data'}
        logging: {{level: INFO}}
    """))
    for n in range(count):
        (config / "tenants" / f"t{n:05d}.yaml").write_text(tenant_yaml(n, upstreams))
    return config


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def median_ms(client: httpx.Client, path: str, calls: int, headers: dict[str, str]) -> float:
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        if response.status_code >= 400:  # `/` answers 200 or a redirect to /chat: both fine
            raise RuntimeError(f"{path} answered {response.status_code}")
        timings.append(time.perf_counter() - started)
    return round(statistics.median(timings) * 1000, 2)


def measure(count: int, args: argparse.Namespace, upstreams: Upstreams) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"maxcore-bench-tenants-{count}-"))
    config = write_config(root, count, upstreams)
    env = {**os.environ, "MAXCORE_DATA_DIR": str(root / "data")}
    started = time.perf_counter()
    check = subprocess.run([MAXCORE, "check", "--config", str(config)], env=env,
                           capture_output=True, text=True, check=False)
    check_s = time.perf_counter() - started
    if check.returncode != 0:
        raise RuntimeError(f"maxcore check failed:\n{check.stdout[-2000:]}{check.stderr[-2000:]}")
    command = [MAXCORE, "serve", "--config", str(config), "--port", "0"]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        command = [PY_SPY, "record", "--format", "raw", "--rate", "200", "--subprocesses",
                   "-o", str(args.profile / f"serve-{count}.txt"), "--", *command]
    with (root / "serve.log").open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        headers = {"Authorization": f"Bearer {HEALTH_TOKEN}"}
        deadline = started + args.timeout
        with httpx.Client(timeout=60) as client:
            while True:
                if process.poll() is not None or time.perf_counter() > deadline:
                    raise RuntimeError((root / "serve.log").read_text()[-3000:])
                port = served_port(root / "data")
                if port:
                    try:
                        if client.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                time.sleep(0.02)
            serve_s = time.perf_counter() - started
            # The server's own pid (under py-spy, the process started is py-spy).
            server_pid = int((root / "data" / "maxcore.pid").read_text())
            rss = rss_mb(server_pid)
            base = f"http://127.0.0.1:{port}"
            health_ms = median_ms(client, base + "/api/health", args.health_calls, headers)
            root_ms = median_ms(client, base + "/", args.health_calls, {})
    finally:
        pid_file = root / "data" / "maxcore.pid"
        if args.profile and pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)  # py-spy writes when it exits
        else:
            process.terminate()
        process.wait(120)
    return {"tenants": count, "check_s": round(check_s, 2), "serve_to_health_s": round(serve_s, 2),
            "rss_mb": round(rss, 1), "health_ms": health_ms, "bare_endpoint_ms": root_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--health-calls", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--profile", type=Path, default=None,
                        help="run serve under py-spy record; profiles written in this folder")
    args = parser.parse_args()
    upstreams = Upstreams()
    try:
        for count in (1, args.tenants):
            result = measure(count, args, upstreams)
            print(json.dumps(result))
            print(f"{count} tenant(s): check {result['check_s']} s, "
                  f"serve → health {result['serve_to_health_s']} s, RSS {result['rss_mb']} MB, "
                  f"/api/health {result['health_ms']} ms "
                  f"(bare endpoint {result['bare_endpoint_ms']} ms)")
    finally:
        upstreams.stop()


if __name__ == "__main__":
    main()
