"""A Green-API contract emulator: a real HTTP server on 127.0.0.1 (green-api.com/en/docs).

It serves ``/waInstance{id}/{method}/{token}`` for the methods maxcore uses:
``sendMessage``, ``getStateInstance``, ``getSettings``, ``setSettings``,
``receiveNotification`` (long poll, FIFO, the head comes back until deleted),
``deleteNotification/{receiptId}`` and ``lastOutgoingMessages`` (the outgoing journal).
Unknown instance → 403, wrong token → 401, wrong HTTP method → 404, per-method rate
limits → 429, quota → 466 with the documented body, ``sendMessage`` validation (missing
fields, > 20 000 characters) → 400, instance states (``starting`` → 400 "try later",
``blocked`` → 400). Faults are injected with :meth:`GreenApiEmulator.fail` (a status, a
delay, or both, for the next N calls).

Facts the emulator keeps (Green-API's docs): ``sendMessage`` on a ``notAuthorized``
instance is accepted (200, an ``idMessage``) and *queued* — it is in ``Instance.queued``,
not ``Instance.sent``, until the instance is authorised again (:meth:`set_state`). A sent
message appears in ``lastOutgoingMessages`` only ``outgoing_lag_s`` after it was sent (up
to 2 minutes upstream, shortened in tests), newest first, with ``sendByApi: true``.
A fault with ``delay_s`` on ``sendMessage`` and ``deliver_on_fault=True`` takes the
message and then fails the answer: the send happened, the caller cannot know.

:class:`WebhookSender` plays Green-API's side of webhooks: POST the body with
``Authorization: Bearer <token>``; anything but 200 (or a timeout) is a failure, and the
same body is sent again after a pause (60 s upstream, shortened in tests).

    emulator = GreenApiEmulator()
    emulator.add_instance(7105000001, api_token="...", webhook_token="...")
    with emulator.serve() as server:
        ...  # channel config: api_url: server.url
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .server import ServerThread, serving

MAX_MESSAGE_CHARS = 20_000
STATES = ("notAuthorized", "authorized", "blocked", "sleepMode", "starting", "yellowCard")
# Requests per second per instance (green-api.com/en/docs/api/ratelimiter).
RATE_LIMITS = {
    "sendMessage": 50, "getStateInstance": 1, "getSettings": 1, "setSettings": 1,
    "receiveNotification": 100, "deleteNotification": 100, "lastOutgoingMessages": 1,
}
HTTP_METHODS = {
    "sendMessage": "POST", "getStateInstance": "GET", "getSettings": "GET", "setSettings": "POST",
    "receiveNotification": "GET", "deleteNotification": "DELETE", "lastOutgoingMessages": "GET",
}
DEFAULT_OUTGOING_LAG_S = 1.0
QUOTA_466_BODY = {
    "invokeStatus": {"method": "sendmessage", "used": 67, "total": 0, "status": "QUOTE_ALLOWED"},
    "correspondentsStatus": {
        "method": "correspondents", "used": 3, "total": 3, "status": "CORRESPONDENTS_QUOTE_EXCEEDED",
        "description": "Monthly chat quota used up: messages can only be exchanged with the chats "
                       "already used this month until the plan is upgraded in the console.",
    },
}
SETTING_FLAGS = (
    "markIncomingMessagesReaded", "markIncomingMessagesReadedOnReply", "keepOnlineStatus",
    "incomingWebhook", "outgoingWebhook", "outgoingMessageWebhook", "outgoingAPIMessageWebhook",
    "stateWebhook", "incomingCallWebhook", "pollMessageWebhook", "editedMessageWebhook",
    "deletedMessageWebhook", "incomingBlockWebhook", "deviceWebhook",
)


@attrs.define
class Fault:
    method: str
    status: int | None
    remaining: int
    delay_s: float = 0.0
    body: Any = None
    deliver: bool = False


@attrs.define
class Instance:
    """One emulated WhatsApp instance and everything that happened to it."""

    instance_id: int
    api_token: str
    webhook_token: str = ""
    state: str = "authorized"
    quota_exceeded: bool = False
    settings: dict[str, Any] = attrs.field(factory=dict)
    queue: collections.deque[dict[str, Any]] = attrs.field(factory=collections.deque)
    sent: list[dict[str, Any]] = attrs.field(factory=list)
    # Accepted while not authorised: delivered once the instance is authorised again.
    queued: list[dict[str, Any]] = attrs.field(factory=list)
    # The outgoing journal: every accepted message, with the time it becomes visible.
    outgoing: list[dict[str, Any]] = attrs.field(factory=list)
    deleted: list[int] = attrs.field(factory=list)
    calls: list[str] = attrs.field(factory=list)
    settings_saved: int = 0
    # Long polls that ran to their receiveTimeout with nothing to return, and those the client
    # hung up on before: a prompt shutdown shows up as the latter.
    polls_timed_out: int = 0
    polls_abandoned: int = 0


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


class GreenApiEmulator:
    """State and ASGI app of the emulated Green-API (thread-safe: the server runs in a thread)."""

    def __init__(self, rate_limits: dict[str, int] | None = None,
                 outgoing_lag_s: float = DEFAULT_OUTGOING_LAG_S) -> None:
        self.instances: dict[int, Instance] = {}
        self.outgoing_lag_s = outgoing_lag_s
        self.rate_limits = dict(RATE_LIMITS if rate_limits is None else rate_limits)
        self._faults: list[Fault] = []
        self._windows: dict[tuple[int, str], collections.deque[float]] = {}
        self._lock = threading.Lock()
        self._receipts = itertools.count(1)
        self.app = Starlette(routes=[
            Route("/waInstance{instance}/{method}/{token}", self._dispatch,
                  methods=["GET", "POST", "DELETE", "PUT"]),
            Route("/waInstance{instance}/{method}/{token}/{argument}", self._dispatch,
                  methods=["GET", "POST", "DELETE", "PUT"]),
        ])

    # -- test-side API ----------------------------------------------------------------
    def reset(self, rate_limits: dict[str, int] | None = None) -> None:
        """Forget instances, faults and rate windows (one served emulator, many tests)."""
        with self._lock:
            self.instances.clear()
            self._faults.clear()
            self._windows.clear()
            self.rate_limits = dict(RATE_LIMITS if rate_limits is None else rate_limits)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def add_instance(self, instance_id: int, api_token: str, webhook_token: str = "",
                     state: str = "authorized") -> Instance:
        instance = Instance(int(instance_id), api_token, webhook_token, state)
        self.instances[instance.instance_id] = instance
        return instance

    def set_state(self, instance_id: int, state: str) -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; one of {', '.join(STATES)}")
        instance = self.instances[int(instance_id)]
        with self._lock:
            instance.state = state
            if state == "authorized":
                # The QR code was scanned: the queue goes out.
                instance.sent.extend(instance.queued)
                instance.queued.clear()

    def enqueue(self, instance_id: int, body: dict[str, Any], receipt_id: int | None = None) -> int:
        """Queue a notification for receiveNotification; returns its receiptId."""
        with self._lock:
            receipt = receipt_id if receipt_id is not None else next(self._receipts)
            self.instances[int(instance_id)].queue.append({"receiptId": receipt, "body": body})
            return receipt

    def fail(self, method: str, status: int | None = 500, times: int = 1, delay_s: float = 0.0,
             body: Any = None, deliver: bool = False) -> None:
        """The next ``times`` calls of ``method`` wait ``delay_s`` then answer ``status``
        (None: answer normally after the delay). ``deliver`` (sendMessage): the message is
        taken before the failure, as when the answer is lost on the way back."""
        with self._lock:
            self._faults.append(Fault(method, status, times, delay_s, body, deliver))

    def sent_to(self, chat_id: str) -> list[dict[str, Any]]:
        return [m for i in self.instances.values() for m in i.sent if m["chatId"] == chat_id]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait (bounded) until ``predicate()`` holds: the emulator lives in another thread."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s")
            await asyncio.sleep(0.01)

    @contextlib.contextmanager
    def serve(self, port: int | None = None) -> Iterator[ServerThread]:
        with serving(self.app, port) as server:
            yield server

    # -- HTTP side ----------------------------------------------------------------------
    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method == method and fault.remaining > 0:
                    fault.remaining -= 1
                    return fault
        return None

    def _rate_limited(self, instance: Instance, method: str) -> bool:
        limit = self.rate_limits.get(method)
        if not limit:
            return False
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault((instance.instance_id, method), collections.deque())
            while window and now - window[0] >= 1.0:
                window.popleft()
            if len(window) >= limit:
                return True
            window.append(now)
            return False

    async def _dispatch(self, request: Request) -> Response:
        raw_id = request.path_params["instance"]
        method = request.path_params["method"]
        instance = self.instances.get(int(raw_id)) if raw_id.isdigit() else None
        if instance is None:
            return _error(403, "Forbidden")
        if not secrets.compare_digest(request.path_params["token"], instance.api_token):
            return _error(401, "Unauthorized")
        if HTTP_METHODS.get(method) != request.method:
            return _error(404, "Not Found")
        with self._lock:
            instance.calls.append(method)
        if self._rate_limited(instance, method):
            return JSONResponse({"message": "Too Many Requests"}, status_code=429,
                                headers={"Retry-After": "1"})
        fault = self._take_fault(method)
        if fault is not None:
            if fault.deliver and method == "sendMessage":
                await self._sendMessage(request, instance)
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.status is not None:
                return JSONResponse(fault.body if fault.body is not None else {"message": "fault"},
                                    status_code=fault.status)
        handler = getattr(self, f"_{method}")
        return await handler(request, instance)  # type: ignore[no-any-return]

    async def _json(self, request: Request) -> dict[str, Any] | None:
        try:
            data = await request.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    async def _sendMessage(self, request: Request, instance: Instance) -> Response:  # noqa: N802
        data = await self._json(request)
        if data is None:
            return _error(400, "bad request data")
        for field in ("chatId", "message"):
            if not isinstance(data.get(field), str) or not data[field]:
                return _error(400, f"Validation failed. Details: '{field}' is required")
        if not data["chatId"].endswith(("@c.us", "@g.us", "@lid")):
            return _error(400, "Validation failed. Details: 'chatId' is invalid")
        if len(data["message"]) > MAX_MESSAGE_CHARS:
            return _error(400, "Validation failed. Details: 'message' length must be less than "
                               f"or equal to {MAX_MESSAGE_CHARS}")
        typing = data.get("typingTime")
        if typing is not None and (not isinstance(typing, int) or not 1000 <= typing <= 20000):
            return _error(400, "Validation failed. Details: 'typingTime' must be 1000-20000")
        if instance.quota_exceeded:
            return JSONResponse(QUOTA_466_BODY, status_code=466)
        if instance.state == "blocked":
            return _error(400, "instance account not authorized")
        if instance.state == "starting":
            return _error(400, "instance in starting process try later")
        message_id = "BAE5" + secrets.token_hex(6).upper()
        now = time.time()
        queued = instance.state == "notAuthorized"
        with self._lock:
            (instance.queued if queued else instance.sent).append({**data, "idMessage": message_id})
            instance.outgoing.append({
                "type": "outgoing", "idMessage": message_id, "timestamp": int(now),
                "statusMessage": "pending" if queued else "sent", "sendByApi": True,
                "typeMessage": "textMessage", "chatId": data["chatId"], "textMessage": data["message"],
                "_visible_at": now + self.outgoing_lag_s,
            })
        return JSONResponse({"idMessage": message_id})

    async def _lastOutgoingMessages(self, request: Request, instance: Instance) -> Response:  # noqa: N802
        raw = request.query_params.get("minutes", "1440")
        if not raw.isdigit() or int(raw) < 1:
            return _error(400, "Validation failed. Details: 'minutes' must be a positive number")
        now = time.time()
        since = now - int(raw) * 60
        with self._lock:
            visible = [
                {k: v for k, v in m.items() if not k.startswith("_")}
                for m in instance.outgoing if m["_visible_at"] <= now and m["timestamp"] >= since
            ]
        return JSONResponse(list(reversed(visible)))

    async def _getStateInstance(self, request: Request, instance: Instance) -> Response:  # noqa: N802
        return JSONResponse({"stateInstance": instance.state})

    async def _getSettings(self, request: Request, instance: Instance) -> Response:  # noqa: N802
        return JSONResponse({"wid": "", **instance.settings})

    async def _setSettings(self, request: Request, instance: Instance) -> Response:  # noqa: N802
        data = await self._json(request)
        if data is None:
            return _error(400, "bad request data")
        for flag in SETTING_FLAGS:
            if flag in data and data[flag] not in ("yes", "no"):
                return _error(400, f"Validation failed. Details: '{flag}' must be yes or no")
        delay = data.get("delaySendMessagesMilliseconds")
        if delay is not None and (not isinstance(delay, int) or not 500 <= delay <= 600_000):
            return _error(400, "Validation failed. Details: 'delaySendMessagesMilliseconds'")
        with self._lock:
            instance.settings.update(data)
            instance.settings_saved += 1
            if "webhookUrlToken" in data:
                instance.webhook_token = str(data["webhookUrlToken"])
        return JSONResponse({"saveSettings": True})

    async def _receiveNotification(self, request: Request, instance: Instance) -> Response:  # noqa: N802
        raw = request.query_params.get("receiveTimeout", "5")
        if not raw.isdigit() or not 5 <= int(raw) <= 60:
            return _error(400, "Validation failed. Details: 'receiveTimeout' must be 5-60")
        deadline = time.monotonic() + int(raw)
        while True:
            with self._lock:
                if instance.queue:
                    return JSONResponse(instance.queue[0])
            if await request.is_disconnected():
                with self._lock:
                    instance.polls_abandoned += 1
                return JSONResponse(None)
            if time.monotonic() >= deadline:
                with self._lock:
                    instance.polls_timed_out += 1
                return JSONResponse(None)
            await asyncio.sleep(0.01)

    async def _deleteNotification(self, request: Request, instance: Instance) -> Response:  # noqa: N802
        raw = request.path_params.get("argument", "")
        if not raw.isdigit():
            return _error(400, "Validation failed. Details: 'receiptId' must be a number")
        receipt = int(raw)
        with self._lock:
            for item in instance.queue:
                if item["receiptId"] == receipt:
                    instance.queue.remove(item)
                    instance.deleted.append(receipt)
                    return JSONResponse({"result": True, "reason": ""})
        return JSONResponse({"result": False, "reason": "Notification not found"})


@attrs.define
class Delivery:
    body: dict[str, Any]
    statuses: list[int | str] = attrs.field(factory=list)

    @property
    def delivered(self) -> bool:
        return bool(self.statuses) and self.statuses[-1] == 200


class WebhookSender:
    """Posts notifications like Green-API does: Bearer token, retry the same body on non-200.

    ``client`` is any httpx.AsyncClient (a real one, or one on an ASGI transport).
    Deliveries are sequential (FIFO per instance): a failing body holds back the next.
    """

    def __init__(self, client: httpx.AsyncClient, url: str, token: str | None, *,
                 retry_pause_s: float = 0.05, max_attempts: int = 20, timeout_s: float = 10.0) -> None:
        self.client = client
        self.url = url
        self.token = token
        self.retry_pause_s = retry_pause_s
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.deliveries: list[Delivery] = []

    async def deliver(self, body: dict[str, Any], copies: int = 1) -> Delivery:
        """Deliver ``body`` until a 200, then ``copies - 1`` more times (duplicates)."""
        delivery = Delivery(body)
        self.deliveries.append(delivery)
        for _ in range(copies):
            await self._until_ok(delivery)
        return delivery

    async def _until_ok(self, delivery: Delivery) -> None:
        headers = {"Content-Type": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in range(self.max_attempts):
            if attempt:
                await asyncio.sleep(self.retry_pause_s)
            try:
                response = await self.client.post(self.url, json=delivery.body, headers=headers,
                                                  timeout=self.timeout_s)
                delivery.statuses.append(response.status_code)
                if response.status_code == 200:
                    return
            except httpx.HTTPError as exc:
                delivery.statuses.append(type(exc).__name__)
        raise AssertionError(f"webhook not accepted after {self.max_attempts} attempts: "
                             f"{delivery.statuses}")

    @classmethod
    def for_instance(cls, emulator: GreenApiEmulator, instance_id: int, client: httpx.AsyncClient,
                     **kwargs: Any) -> WebhookSender:
        """A sender using the webhookUrl and webhookUrlToken the instance was set up with."""
        instance = emulator.instances[int(instance_id)]
        url = instance.settings.get("webhookUrl")
        if not url:
            raise AssertionError(f"instance {instance_id} has no webhookUrl (run setSettings first)")
        return cls(client, str(url), instance.webhook_token or None, **kwargs)
