"""A HubSpot CRM v3 emulator (contacts and their properties) on 127.0.0.1, for tests.

Real HTTP (standard library server, its own thread, port chosen by the OS), following
HubSpot's documented behaviour where the connector depends on it:

- ``Authorization: Bearer <token>`` of a private app; anything else is 401
  ``INVALID_AUTHENTICATION``.
- ``POST /crm/v3/objects/contacts`` → 201; an e-mail already used in the account →
  409 ``CONFLICT`` "Contact already exists. Existing ID: <id>" (e-mails are unique per
  account); an unknown property → 400 ``PROPERTY_DOESNT_EXIST``; a value not among an
  enumeration's options → 400 ``INVALID_OPTION``.
- ``PATCH`` / ``GET /crm/v3/objects/contacts/{id}`` (404 when unknown).
- ``POST /crm/v3/objects/contacts/search``: ``filterGroups`` (ORed) of ``filters``
  (ANDed; operators EQ, NEQ, CONTAINS_TOKEN, HAS_PROPERTY, NOT_HAS_PROPERTY), ``query``,
  ``properties``, ``sorts``, ``limit`` (≤ 200) and ``after`` paging; at most 5 groups
  of 6 filters.
- ``GET /crm/v3/properties/contacts[/{name}]``: definitions with ``options`` of
  ``{label, value, displayOrder, hidden}``.
- Rate limit: :meth:`HubSpotEmulator.throttle` makes the next requests answer 429
  ``RATE_LIMIT`` with ``Retry-After``.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_Option = tuple[str, str]  # (value, label)


def _enumeration(name: str, label: str, options: list[_Option]) -> dict[str, Any]:
    return {
        "name": name, "label": label, "type": "enumeration", "fieldType": "select",
        "groupName": "contactinformation", "hidden": False, "hasUniqueValue": False,
        "options": [{"label": lab, "value": val, "displayOrder": i, "hidden": False}
                    for i, (val, lab) in enumerate(options)],
    }


def _string(name: str, label: str, field_type: str = "text") -> dict[str, Any]:
    return {"name": name, "label": label, "type": "string", "fieldType": field_type,
            "groupName": "contactinformation", "hidden": False, "hasUniqueValue": False, "options": []}


# HubSpot's default contact properties the connector uses, with their default options.
DEFAULT_PROPERTIES: dict[str, dict[str, Any]] = {prop["name"]: prop for prop in (
    _string("firstname", "First Name"), _string("lastname", "Last Name"),
    _string("email", "Email"), _string("phone", "Phone Number", "phonenumber"),
    _string("company", "Company Name"), _string("jobtitle", "Job Title"),
    _string("industry", "Industry"), _string("message", "Message", "textarea"),
    _enumeration("lifecyclestage", "Lifecycle Stage", [
        ("subscriber", "Subscriber"), ("lead", "Lead"),
        ("marketingqualifiedlead", "Marketing Qualified Lead"),
        ("salesqualifiedlead", "Sales Qualified Lead"), ("opportunity", "Opportunity"),
        ("customer", "Customer"), ("evangelist", "Evangelist"), ("other", "Other"),
    ]),
    _enumeration("hs_lead_status", "Lead Status", [
        ("NEW", "New"), ("OPEN", "Open"), ("IN_PROGRESS", "In Progress"), ("OPEN_DEAL", "Open Deal"),
        ("UNQUALIFIED", "Unqualified"), ("ATTEMPTED_TO_CONTACT", "Attempted to Contact"),
        ("CONNECTED", "Connected"), ("BAD_TIMING", "Bad Timing"),
    ]),
)}
_DEFAULT_RETURNED = ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname")
_READ_ONLY = frozenset({"hs_object_id", "createdate", "lastmodifieddate"})
MAX_SEARCH_LIMIT = 200


def _error(status: int, message: str, category: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                    "category": category, **extra}


class HubSpotEmulator:
    """One HubSpot account: contacts, property definitions, private-app tokens.

    ``with HubSpotEmulator(tokens={"pat-1"}) as hub: hub.url`` → the API base URL.
    ``tenant_property`` is created as a custom contact property (what an operator
    does once per account); pass ``None`` to leave it out.
    """

    def __init__(self, tokens: set[str] | frozenset[str] = frozenset({"pat-test-token"}),
                 tenant_property: str | None = "maxcore_tenant") -> None:
        self.tokens = set(tokens)
        self.tenant_property = tenant_property
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._throttled: list[float] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- control -------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.contacts: dict[str, dict[str, Any]] = {}
            self.properties = {name: json.loads(json.dumps(p)) for name, p in DEFAULT_PROPERTIES.items()}
            if self.tenant_property:
                self.properties[self.tenant_property] = _string(self.tenant_property, "maxcore tenant")
            self._ids = itertools.count(101)
            self._throttled.clear()
            self.requests.clear()

    def throttle(self, count: int = 1, retry_after: float = 1.0) -> None:
        """The next ``count`` requests answer 429 with ``Retry-After: retry_after``."""
        with self._lock:
            self._throttled.extend([retry_after] * count)

    def contact_properties(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c["properties"]) for c in self.contacts.values()]

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HubSpotEmulator:
        emulator = self

        class Handler(_Handler):
            hub = emulator

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hubspot-emulator",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HubSpotEmulator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- the API ---------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[
            int, dict[str, Any] | None, dict[str, str]]:
        url = urlsplit(target)
        path = url.path.rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self._lock:
            self.requests.append((method, path))
            if self._throttled:
                retry_after = self._throttled.pop(0)
                status, payload = _error(429, "You have reached your secondly limit.", "RATE_LIMITS",
                                         errorType="RATE_LIMIT", policyName="SECONDLY")
                return status, payload, {"Retry-After": f"{retry_after:g}"}
            auth = headers.get("authorization", "")
            if not auth.startswith("Bearer ") or auth[len("Bearer "):] not in self.tokens:
                status, payload = _error(
                    401, "Authentication credentials not found. This API supports OAuth 2.0 "
                    "authentication and you can find more details at https://developers.hubspot.com/docs/"
                    "methods/auth/oauth-overview", "INVALID_AUTHENTICATION")
                return status, payload, {}
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                status, payload = _error(400, "Invalid input JSON on line 1", "VALIDATION_ERROR")
                return status, payload, {}
            status, payload = self._route(method, path, query, data)
            return status, payload, {}

    def _route(self, method: str, path: str, query: dict[str, str], data: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:3] == ["crm", "v3", "properties"] and len(parts) >= 4 and parts[3] == "contacts":
            if method != "GET":
                return _error(405, "Method not allowed", "VALIDATION_ERROR")
            if len(parts) == 4:
                return 200, {"results": list(self.properties.values())}
            prop = self.properties.get(parts[4])
            if prop is None:
                return _error(404, f"Unable to find property {parts[4]} for object type contacts",
                              "OBJECT_NOT_FOUND")
            return 200, prop
        if parts[:4] != ["crm", "v3", "objects", "contacts"]:
            return _error(404, f"No route for {path}", "OBJECT_NOT_FOUND")
        if len(parts) == 4 and method == "POST":
            return self._create(data)
        if len(parts) == 5 and parts[4] == "search" and method == "POST":
            return self._search(data)
        if len(parts) == 5 and method in ("GET", "PATCH"):
            contact = self.contacts.get(parts[4])
            if contact is None:
                return 404, None  # HubSpot answers an unknown id with an empty 404
            if method == "GET":
                wanted = [p for p in query.get("properties", "").split(",") if p]
                return 200, self._public(contact, wanted)
            return self._update(contact, data)
        return _error(405, "Method not allowed", "VALIDATION_ERROR")

    def _validate(self, properties: Any, contact_id: str | None) -> tuple[int, Any] | None:
        if not isinstance(properties, dict):
            return _error(400, "Invalid input JSON: properties must be an object", "VALIDATION_ERROR")
        results = []
        for name, value in properties.items():
            prop = self.properties.get(name)
            if prop is None or name in _READ_ONLY:
                results.append({"isValid": False, "message": f'Property "{name}" does not exist',
                                "error": "PROPERTY_DOESNT_EXIST", "name": name})
            elif prop["type"] == "enumeration" and value not in ("", None) and value not in [
                    o["value"] for o in prop["options"]]:
                results.append({"isValid": False, "message": f"{value} was not one of the allowed options",
                                "error": "INVALID_OPTION", "name": name})
            elif name == "email" and value and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", str(value)):
                results.append({"isValid": False, "message": "Email address is invalid",
                                "error": "INVALID_EMAIL", "name": name})
        if results:
            return _error(400, "Property values were not valid: " + json.dumps(results), "VALIDATION_ERROR")
        email = str(properties.get("email") or "").lower()
        if email:
            for other_id, other in self.contacts.items():
                if other_id != contact_id and str(other["properties"].get("email") or "").lower() == email:
                    return _error(409, f"Contact already exists. Existing ID: {other_id}", "CONFLICT")
        return None

    def _create(self, data: Any) -> tuple[int, Any]:
        properties = data.get("properties") if isinstance(data, dict) else None
        problem = self._validate(properties, None)
        if problem is not None:
            return problem
        assert isinstance(properties, dict)
        contact_id = str(next(self._ids))
        now = _timestamp()
        stored = {k: (None if v == "" else str(v)) for k, v in properties.items()}
        stored.update(hs_object_id=contact_id, createdate=now, lastmodifieddate=now)
        contact = {"id": contact_id, "properties": stored, "createdAt": now, "updatedAt": now,
                   "archived": False, "order": int(contact_id)}
        self.contacts[contact_id] = contact
        return 201, self._public(contact, list(properties))

    def _update(self, contact: dict[str, Any], data: Any) -> tuple[int, Any]:
        properties = data.get("properties") if isinstance(data, dict) else None
        problem = self._validate(properties, contact["id"])
        if problem is not None:
            return problem
        assert isinstance(properties, dict)
        now = _timestamp()
        contact["properties"].update({k: (None if v == "" else str(v)) for k, v in properties.items()})
        contact["properties"]["lastmodifieddate"] = now
        contact["updatedAt"] = now
        return 200, self._public(contact, list(properties))

    def _search(self, data: Any) -> tuple[int, Any]:
        if not isinstance(data, dict):
            return _error(400, "Invalid input JSON", "VALIDATION_ERROR")
        groups = data.get("filterGroups") or []
        if len(groups) > 5 or any(len(g.get("filters") or []) > 6 for g in groups):
            return _error(400, "There was a problem with the request: too many filters", "VALIDATION_ERROR")
        limit = int(data.get("limit") or 10)
        if limit > MAX_SEARCH_LIMIT:
            return _error(400, f"limit must be at most {MAX_SEARCH_LIMIT}", "VALIDATION_ERROR")
        text = str(data.get("query") or "").lower()
        found = [c for c in self.contacts.values()
                 if (not groups or any(all(_matches(c, f) for f in g.get("filters") or []) for g in groups))
                 and (not text or _has_text(c, text))]
        for sort in reversed(data.get("sorts") or []):
            name, descending = (sort.lstrip("-"), sort.startswith("-")) if isinstance(sort, str) else (
                sort.get("propertyName", ""), sort.get("direction") == "DESCENDING")
            found.sort(key=_sort_key(name), reverse=descending)
        start = int(data.get("after") or 0)
        page = found[start:start + limit]
        wanted = list(data.get("properties") or [])
        answer: dict[str, Any] = {"total": len(found), "results": [self._public(c, wanted) for c in page]}
        if start + limit < len(found):
            answer["paging"] = {"next": {"after": str(start + limit)}}
        return 200, answer

    def _public(self, contact: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
        names = list(dict.fromkeys([*_DEFAULT_RETURNED, *wanted]))
        props = {name: contact["properties"].get(name) for name in names if name in self.properties
                 or name in _DEFAULT_RETURNED}
        return {"id": contact["id"], "properties": props, "createdAt": contact["createdAt"],
                "updatedAt": contact["updatedAt"], "archived": False}


def _sort_key(name: str) -> Callable[[dict[str, Any]], Any]:
    if name in ("createdate", "hs_object_id"):
        return lambda contact: contact["order"]  # creation order, finer than the timestamp
    return lambda contact: str(contact["properties"].get(name) or "")


def _timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _matches(contact: dict[str, Any], spec: dict[str, Any]) -> bool:
    value = contact["properties"].get(spec.get("propertyName", ""))
    operator, wanted = spec.get("operator", "EQ"), spec.get("value")
    if operator == "HAS_PROPERTY":
        return value not in (None, "")
    if operator == "NOT_HAS_PROPERTY":
        return value in (None, "")
    if operator == "CONTAINS_TOKEN":
        return value is not None and str(wanted).lower().strip("*") in str(value).lower().split()
    same = value is not None and str(value).lower() == str(wanted).lower()
    return same if operator == "EQ" else not same if operator == "NEQ" else False


def _has_text(contact: dict[str, Any], text: str) -> bool:
    props = contact["properties"]
    return any(text in str(props.get(name) or "").lower()
               for name in ("firstname", "lastname", "email", "phone", "company"))


class _Handler(BaseHTTPRequestHandler):
    hub: HubSpotEmulator
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: without this, Nagle's algorithm and the
    # client's delayed ACK add 40 ms to every keep-alive request.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload, extra = self.hub.handle(self.command, self.path, headers, body)
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    # http.server dispatches on these names.
    do_GET = do_POST = do_PATCH = _serve  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        return None


def running(**kwargs: Any) -> Iterator[HubSpotEmulator]:
    """Generator for a pytest fixture: ``yield from running()``."""
    with HubSpotEmulator(**kwargs) as emulator:
        yield emulator
