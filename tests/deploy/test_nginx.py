"""The shipped nginx config, run for real in front of a real ``maxcore serve``.

Host names api.test / crm.test, a self-signed certificate in place of the Origin
Certificate, free loopback ports. Proves: ``nginx -t``; HTTPS proxying to maxcore;
TLS 1.1 refused, 1.2 and 1.3 accepted; HSTS; HTTP→HTTPS redirect; 413 on an oversize
webhook; 429 beyond the webhook burst; 404 for the rest of the API host; the CRM host
proxied with forwarded headers; a forged CF-Connecting-IP ignored.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from maxcore.testing.harness import write_config
from maxcore.testing.server import ServerThread

from .conftest import REPO, free_port, maxcore_binary, require_binary
from .nginx_stack import NGINX_DIR, Nginx, render, world_readable_prefix

API, CRM = "api.test", "crm.test"


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    require_binary("openssl")
    return require_binary("nginx")


@pytest.fixture(scope="module")
def maxcore_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real ``maxcore serve`` on the embedded demo tenant."""
    base = tmp_path_factory.mktemp("maxcore")
    config = write_config(base / "config", {"demo": (REPO / "config/tenants/demo.yaml").read_text()})
    port = free_port()
    env = {**os.environ, "MAXCORE_DATA_DIR": str(base / "data")}
    log = (base / "serve.log").open("wb")
    proc = subprocess.Popen(
        [maxcore_binary(), "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (base / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "maxcore serve not healthy in 30s"
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def echo_headers(request: Request) -> JSONResponse:
    return JSONResponse({"path": request.url.path, "headers": dict(request.headers)})


@pytest.fixture(scope="module")
def crm_port() -> Iterator[int]:
    """Stands in for espocrm:80: echoes what nginx forwarded."""
    app = Starlette(routes=[Route("/{path:path}", echo_headers, methods=["GET", "POST"])])
    with ServerThread(app) as server:
        yield server.port


def start_nginx(binary: str, maxcore_port: int, crm_port: int) -> Nginx:
    env = {"API_HOST": API, "CRM_HOST": CRM, "MAXCORE_UPSTREAM": f"127.0.0.1:{maxcore_port}",
           "ESPOCRM_UPSTREAM": f"127.0.0.1:{crm_port}", "DNS_RESOLVER": "127.0.0.1"}
    nginx = render(binary, world_readable_prefix(), env, free_port(), free_port(), [API, CRM])
    checked = nginx.test_config()
    assert checked.returncode == 0, checked.stderr
    nginx.start()
    return nginx


@pytest.fixture(scope="module")
def nginx(nginx_binary: str, maxcore_port: int, crm_port: int) -> Iterator[Nginx]:
    server = start_nginx(nginx_binary, maxcore_port, crm_port)
    yield server
    server.stop()
    shutil.rmtree(server.prefix, ignore_errors=True)


def tls_context(nginx: Nginx) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(nginx.prefix / "ssl" / "origin.pem"))


def https(nginx: Nginx, method: str, host: str, path: str, **kwargs: Any) -> httpx.Response:
    with httpx.Client(verify=tls_context(nginx), timeout=10) as client:
        return client.request(method, f"https://127.0.0.1:{nginx.https_port}{path}",
                              headers={"Host": host, **kwargs.pop("headers", {})},
                              extensions={"sni_hostname": host}, **kwargs)


def handshake(nginx: Nginx, version: ssl.TLSVersion, host: str = API) -> str:
    """Negotiate exactly ``version``; return the protocol nginx accepted."""
    ctx = tls_context(nginx)
    if version < ssl.TLSVersion.TLSv1_2:
        # Let the client offer the legacy protocol so that the refusal is nginx's.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 on purpose
        ctx.minimum_version = ctx.maximum_version = version
    with socket.create_connection(("127.0.0.1", nginx.https_port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        return str(tls.version())


def test_rendered_config_passes_nginx_t(nginx: Nginx) -> None:
    result = nginx.test_config()
    assert result.returncode == 0
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


def test_templates_take_host_names_from_the_environment() -> None:
    for name, var in (("api.conf.template", "${API_HOST}"), ("crm.conf.template", "${CRM_HOST}")):
        text = (NGINX_DIR / "templates" / name).read_text()
        assert text.count(var) == 2, name
        assert "example.com" not in text.replace("e.g. api.example.com", "").replace(
            "e.g. crm.example.com", "")


def test_https_proxies_health_to_maxcore_with_hsts(nginx: Nginx) -> None:
    response = https(nginx, "GET", API, "/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and set(body) == {"status", "version"}  # details need the token
    assert response.headers["strict-transport-security"].startswith("max-age=63072000")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "server" not in response.headers or "nginx/" not in response.headers["server"]


def test_webhook_reaches_maxcore(nginx: Nginx) -> None:
    # The webchat channel refuses a webhook without its session token: that answer is maxcore's.
    response = https(nginx, "POST", API, "/webhooks/webchat", json={"text": "bonjour"})
    assert response.status_code == 401
    assert "Bearer" in response.json()["error"]
    assert "strict-transport-security" in response.headers


def test_everything_else_on_the_api_host_is_404(nginx: Nginx) -> None:
    for path in ("/chat", "/", "/api/other", "/webhooks"):
        response = https(nginx, "GET", API, path)
        assert response.status_code == 404, path
        assert "strict-transport-security" in response.headers


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_12_and_13_accepted(nginx: Nginx, version: ssl.TLSVersion) -> None:
    assert handshake(nginx, version) == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                         ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]


def test_tls_11_refused(nginx: Nginx) -> None:
    with pytest.raises(ssl.SSLError) as refused:
        handshake(nginx, ssl.TLSVersion.TLSv1_1)
    # An alert from nginx, not a client that could not even offer TLS 1.1.
    assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value)
    assert any(word in str(refused.value) for word in ("PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL"))


def test_unknown_host_gets_no_certificate(nginx: Nginx) -> None:
    with pytest.raises(ssl.SSLError):
        handshake(nginx, ssl.TLSVersion.TLSv1_3, host="other.test")


def test_container_healthcheck_endpoint_answers_on_loopback(nginx: Nginx) -> None:
    response = httpx.get(f"http://127.0.0.1:{nginx.health_port}/healthz", timeout=5)
    assert response.status_code == 200 and response.text == "ok\n"


def test_http_redirects_to_https(nginx: Nginx) -> None:
    for host in (API, CRM):
        response = httpx.get(f"http://127.0.0.1:{nginx.http_port}/webhooks/greenapi?x=1",
                             headers={"Host": host}, timeout=5)
        assert response.status_code == 301
        assert response.headers["location"] == f"https://{host}/webhooks/greenapi?x=1"


def test_oversize_webhook_body_is_413(nginx: Nginx) -> None:
    response = https(nginx, "POST", API, "/webhooks/webchat", content=b"x" * (1024 * 1024 + 1),
                     headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    # Just under the limit goes through to maxcore (which refuses it for its own reason).
    response = https(nginx, "POST", API, "/webhooks/webchat", content=b"x" * (1000 * 1000),
                     headers={"Content-Type": "application/json"})
    assert response.status_code == 401


def test_crm_host_is_proxied_with_forwarded_headers_and_no_forged_ip(nginx: Nginx) -> None:
    response = https(nginx, "GET", CRM, "/api/v1/Settings", headers={"CF-Connecting-IP": "203.0.113.9"})
    assert response.status_code == 200
    seen = response.json()
    assert seen["path"] == "/api/v1/Settings"
    assert seen["headers"]["host"] == CRM
    assert seen["headers"]["x-forwarded-proto"] == "https"
    # 127.0.0.1 is not a Cloudflare range: the header is not trusted.
    assert seen["headers"]["x-real-ip"] == "127.0.0.1"
    assert "strict-transport-security" in response.headers


async def test_webhook_rate_limit_answers_429_beyond_burst(
    nginx_binary: str, maxcore_port: int, crm_port: int
) -> None:
    # Its own nginx: the limit zone must not leak into the other tests.
    server = start_nginx(nginx_binary, maxcore_port, crm_port)
    try:
        async with httpx.AsyncClient(verify=tls_context(server), timeout=20,
                                     limits=httpx.Limits(max_connections=20)) as client:
            async def post() -> int:
                response = await client.post(
                    f"https://127.0.0.1:{server.https_port}/webhooks/webchat", json={"text": "hi"},
                    headers={"Host": API}, extensions={"sni_hostname": API})
                return response.status_code

            statuses = await asyncio.gather(*(post() for _ in range(200)))
        error_log = server.error_log()
    finally:
        server.stop()
        shutil.rmtree(server.prefix, ignore_errors=True)
    limited = statuses.count(429)
    passed = statuses.count(401)
    assert limited + passed == len(statuses), set(statuses)
    # burst=60 nodelay at 30 r/s: the first 61 pass at once, the excess is refused.
    assert passed >= 61
    assert limited >= 50
    assert "limiting requests" in error_log
