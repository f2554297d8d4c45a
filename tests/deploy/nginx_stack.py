"""Render the shipped nginx config for test host names and run it as a throwaway instance.

The rendering does what the nginx image does at start (envsubst of the templates into
conf.d/), then only relocates what must differ on a test machine: absolute /etc/nginx
and log paths move into a temp prefix, ``listen 80``/``listen 443`` move to free
loopback ports, and the worker user becomes one that exists here. Everything else
(TLS, limits, headers, locations) is the shipped text.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import attrs

from .conftest import DEPLOY, free_port

NGINX_DIR = DEPLOY / "nginx"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def envsubst(text: str, env: Mapping[str, str]) -> str:
    """Like the image's envsubst: only ``${NAME}`` of defined variables are replaced."""
    return _ENV_REF.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def make_certificate(directory: Path, hosts: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate standing in for the Cloudflare Origin Certificate."""
    cert, key = directory / "origin.pem", directory / "origin.key"
    san = ",".join(f"DNS:{h}" for h in hosts)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", f"/CN={hosts[0]}", "-addext", f"subjectAltName={san}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


@attrs.define
class Nginx:
    binary: str
    prefix: Path
    http_port: int
    https_port: int
    health_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    def command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", str(self.prefix), "-e", str(self.prefix / "logs" / "error.log"),
                "-c", str(self.conf), *extra]

    def test_config(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30, check=False)

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(self.command("-g", "daemon off;"), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"nginx exited at start: {err}\n{self.error_log()}")
            if all(_port_open(p) for p in (self.http_port, self.https_port, self.health_port)):
                return
            time.sleep(0.05)
        raise TimeoutError(f"nginx did not listen within {timeout}s: {self.error_log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def error_log(self) -> str:
        path = self.prefix / "logs" / "error.log"
        return path.read_text() if path.exists() else ""

    def access_log(self) -> str:
        path = self.prefix / "logs" / "access.log"
        return path.read_text() if path.exists() else ""


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


HEALTH_LISTEN = "127.0.0.1:8081"


def relocate(text: str, prefix: Path, http_port: int, https_port: int, health_port: int = 0) -> str:
    text = text.replace("/etc/nginx/", f"{prefix}/")
    if health_port:
        text = text.replace(HEALTH_LISTEN, f"127.0.0.1:{health_port}")
    text = text.replace("/var/log/nginx/", f"{prefix}/logs/")
    text = text.replace("/var/run/nginx.pid", f"{prefix}/nginx.pid")
    text = re.sub(r"\blisten 80\b", f"listen 127.0.0.1:{http_port}", text)
    text = re.sub(r"\blisten 443\b", f"listen 127.0.0.1:{https_port}", text)
    if os.geteuid() == 0:
        text = re.sub(r"^user nginx;", "user nobody nogroup;", text, flags=re.M)
    else:
        text = re.sub(r"^user nginx;", "", text, flags=re.M)
    # Temp files of a Debian build default to /var/lib/nginx: keep them in the prefix.
    temp = "".join(f"    {kind}_temp_path {prefix}/temp/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return text.replace("http {\n", "http {\n" + temp, 1)


def world_readable_prefix() -> Path:
    """A prefix the unprivileged worker can traverse (pytest's tmp dirs are 0700 per user).

    nginx buffers larger request bodies in client_body_temp_path, written by the worker.
    """
    prefix = Path(tempfile.mkdtemp(prefix="maxcore-nginx-"))
    prefix.chmod(0o755)
    return prefix


def render(binary: str, prefix: Path, env: Mapping[str, str], http_port: int, https_port: int,
           hosts: list[str]) -> Nginx:
    for sub in ("conf.d", "snippets", "ssl", "logs", "temp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy("/etc/nginx/mime.types", prefix / "mime.types")
    make_certificate(prefix / "ssl", hosts)
    health_port = free_port()
    (prefix / "nginx.conf").write_text(
        relocate((NGINX_DIR / "nginx.conf").read_text(), prefix, http_port, https_port, health_port))
    for snippet in (NGINX_DIR / "snippets").glob("*.conf"):
        (prefix / "snippets" / snippet.name).write_text(
            relocate(snippet.read_text(), prefix, http_port, https_port))
    for template in (NGINX_DIR / "templates").glob("*.conf.template"):
        out = prefix / "conf.d" / template.name.removesuffix(".template")
        out.write_text(relocate(envsubst(template.read_text(), env), prefix, http_port, https_port))
    return Nginx(binary, prefix, http_port, https_port, health_port)
