"""The OpenAI SDK's requests on aiohttp's pool, with maxcore's error mapping.

The SDK speaks ``httpx2``; ``httpx_aiohttp``'s ``httpx2`` adapter carries it over aiohttp
(what the SDK's own ``DefaultAioHttpClient`` does), and :mod:`maxcore.http_transport`
maps failures precisely: its adapter reports a refused connection as a timeout, which
would tell the operator "did not answer within 30s" instead of "cannot reach".
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx2
from httpx_aiohttp.httpx2 import AiohttpTransport

from maxcore.http_transport import precise_errors, with_mapped_stream


class SdkTransport(AiohttpTransport):
    def __init__(self, *, verify: ssl.SSLContext, limits: httpx2.Limits) -> None:
        super().__init__(verify=verify, limits=limits)

    async def handle_async_request(self, request: httpx2.Request) -> Any:
        with precise_errors(httpx2, request):
            response = await super().handle_async_request(request)
        return with_mapped_stream(response, httpx2)
