"""The EspoCRM 8.3 REST API emulator: a Starlette app served on 127.0.0.1.

Usage::

    with EspoEmulator() as espo:                 # reads deploy/espocrm/custom
        espo.add_api_user(ApiUser(api_key="k"))
        ... point the plugin at espo.url ...

Fault injection: ``fail_next(status, count)`` (Python) or ``POST /__emulator/fail``
``{"status": 503, "count": 2}``; ``advance(seconds)`` moves the lockout clock;
``rebuild()`` re-reads the custom folder (like ``php command.php rebuild``).
With ``admin=Admin(user, password)`` the admin API creates Roles and API users
(``admin.py``); with ``state_dir`` records, roles and users live in files there.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..server import ServerThread
from . import records as rec
from .admin import Admin, Directory
from .auth import ApiUser, Authenticator, LockedOut, Unauthorized
from .metadata import DUPLICATE_CHECK_ENTITIES, EntityDefs, Metadata
from .query import (
    BadRequest,
    Forbidden,
    check_where,
    equality_keys,
    fold,
    list_params,
    matches,
    sort_key,
)
from .store import KeysOf, Store
from .validation import ValidationFailure, validate

_ACTIONS = {"GET": "read", "POST": "create", "PUT": "edit", "PATCH": "edit", "DELETE": "delete"}


def default_custom_dir() -> Path | None:
    """``deploy/espocrm/custom`` of this checkout, when maxcore runs from one."""
    candidate = Path(__file__).resolve().parents[3] / "deploy" / "espocrm" / "custom"
    return candidate if candidate.is_dir() else None


def _error(status: int, reason: str = "", body: Any = None) -> Response:
    headers = {"X-Status-Reason": reason} if reason else {}
    if body is None:
        return Response(b"", status_code=status, headers=headers)
    return JSONResponse(body, status_code=status, headers=headers)


class EspoEmulator:
    def __init__(
        self,
        custom_dir: Path | str | None = "default",
        *,
        phone_number_international: bool = True,
        currency_list: tuple[str, ...] = ("EUR",),
        max_failed_attempts: int = 10,
        failed_attempts_period_s: float = 60.0,
        admin: Admin | None = None,
        state_dir: Path | None = None,
    ) -> None:
        directory = default_custom_dir() if custom_dir == "default" else custom_dir
        self.metadata = Metadata(Path(directory) if directory is not None else None)
        self.phone_number_international = phone_number_international
        self.currency_list = currency_list
        self._clock_offset = 0.0
        self.auth = Authenticator(self._now, max_failed_attempts, failed_attempts_period_s)
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(str(state_dir / "records.sqlite3") if state_dir else ":memory:")
        self.admin = admin
        self.directory = Directory(state_dir / "users.json" if state_dir else None)
        self.assignable_ids: set[str] = set()
        self.user_names: dict[str, str] = {}
        for known in self.directory.api_users():
            self.add_api_user(known)
        self.requests: list[tuple[str, str]] = []
        # (method, path, decoded query pairs) of every API request, for assertions.
        self.queries: list[tuple[str, str, list[tuple[str, str]]]] = []
        self._faults: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self.server: ServerThread | None = None
        self.app = Starlette(routes=[
            Route("/__emulator/reset", self._control_reset, methods=["POST"]),
            Route("/__emulator/fail", self._control_fail, methods=["POST"]),
            Route("/__emulator/rebuild", self._control_rebuild, methods=["POST"]),
            Route("/api/v1/Settings", self._settings, methods=["GET"]),
            Route("/api/v1/App/user", self._app_user, methods=["GET"]),
            *(Route(f"/api/v1/{kind}", self._admin_collection, methods=["GET", "POST"])
              for kind in ("Role", "User")),
            *(Route(f"/api/v1/{kind}/{{id}}", self._admin_item, methods=["GET"])
              for kind in ("Role", "User")),
            Route("/api/v1/{entity}", self._collection, methods=["GET", "POST"]),
            Route("/api/v1/{entity}/{id}", self._item, methods=["GET", "PUT", "PATCH", "DELETE"]),
        ])

    # -- lifecycle and Python control API ----------------------------------------------
    @property
    def url(self) -> str:
        """The site URL (what ``crm.url`` holds); the API is under ``/api/v1``."""
        if self.server is None:
            raise RuntimeError("emulator not started")
        return self.server.url

    def start(self) -> EspoEmulator:
        self.server = ServerThread(self.app).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def __enter__(self) -> EspoEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _now(self) -> float:
        return time.time() + self._clock_offset

    def advance(self, seconds: float) -> None:
        self._clock_offset += seconds

    def add_api_user(self, user: ApiUser) -> ApiUser:
        self.auth.users[user.api_key] = user
        self.assignable_ids.add(user.id)
        self.user_names[user.id] = user.user_name
        return user

    def add_assignable(self, record_id: str, name: str) -> None:
        """A user or team the API users may assign records to."""
        self.assignable_ids.add(record_id)
        self.user_names[record_id] = name

    def reset(self) -> None:
        """Forget records, failures, faults and the request log (users stay)."""
        self.store.reset()
        self.auth.reset_failures()
        self._clock_offset = 0.0
        with self._lock:
            self._faults.clear()
            self.requests.clear()
            self.queries.clear()

    def fail_next(self, status: int, count: int = 1, reason: str = "") -> None:
        with self._lock:
            self._faults.extend([(status, reason)] * count)

    def rebuild(self) -> None:
        self.metadata.reload()

    def records(self, entity: str) -> list[dict[str, Any]]:
        return [record for _seq, record in self.store.all(entity)]

    # -- HTTP control API ----------------------------------------------------------------
    async def _control_reset(self, _request: Request) -> Response:
        self.reset()
        return JSONResponse(True)

    async def _control_fail(self, request: Request) -> Response:
        data = await request.json()
        self.fail_next(int(data["status"]), int(data.get("count", 1)), str(data.get("reason", "")))
        return JSONResponse(True)

    async def _control_rebuild(self, _request: Request) -> Response:
        self.rebuild()
        return JSONResponse(True)

    # -- request plumbing -------------------------------------------------------------------
    def _prelude(self, request: Request) -> ApiUser | Response:
        """Log, injected faults, authentication: a user, or the response to give."""
        with self._lock:
            self.requests.append((request.method, request.url.path))
            self.queries.append((request.method, request.url.path,
                                 list(request.query_params.multi_items())))
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            return _error(fault[0], fault[1])
        ip = request.client.host if request.client else "127.0.0.1"
        try:
            return self.auth.authenticate(ip, request.method, request.url.path,
                                          {k.lower(): v for k, v in request.headers.items()})
        except Unauthorized:
            return _error(401)
        except LockedOut as exc:
            return _error(403, str(exc))

    def _entity(self, name: str, user: ApiUser, method: str) -> EntityDefs | Response:
        entity = self.metadata.entity(name)
        if entity is None or not entity.has_controller:
            return _error(404, f"Controller '{name}' does not exist.")
        action = _ACTIONS[method]
        if not user.can(name, action):
            return _error(403, f"No {action} access.")
        return entity

    async def _json_body(self, request: Request) -> dict[str, Any] | Response:
        raw = await request.body()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            return _error(400, "Body is not a JSON object.")
        if isinstance(data, list):
            data = {"list": data}
        if not isinstance(data, dict):
            return _error(400, "Body is not a JSON object.")
        return data

    def _check_assignment(self, data: dict[str, Any]) -> Response | None:
        ids = [data["assignedUserId"]] if data.get("assignedUserId") else []
        ids += list(data.get("teamsIds") or [])
        if any(i not in self.assignable_ids for i in ids):
            return _error(403, "Assignment failure: assigned user or team not allowed.")
        return None

    def _validate(self, entity: EntityDefs, data: dict[str, Any], creating: bool) -> Response | None:
        try:
            validate(entity, data, creating=creating,
                     phone_international=self.phone_number_international,
                     currency_list=self.currency_list)
        except ValidationFailure as failure:
            return _error(400, str(failure), failure.body)
        return None

    # -- admin routes: Role and User ------------------------------------------------------
    def _admin_auth(self, request: Request) -> Response | None:
        offered = self.admin.matches({k.lower(): v for k, v in request.headers.items()}) \
            if self.admin else None
        if offered is None:
            return _error(403, "No access.") if request.headers.get("x-api-key") else _error(401)
        return None if offered else _error(401)

    async def _admin_collection(self, request: Request) -> Response:
        kind = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        with self._lock:
            self.requests.append((request.method, request.url.path))
        denied = self._admin_auth(request)
        if denied is not None:
            return denied
        if request.method == "GET":
            try:
                params = list_params(list(request.query_params.multi_items()))
            except BadRequest as exc:
                return _error(400, str(exc))
            found = [r for r in (self.directory.roles if kind == "Role" else self.directory.users).values()
                     if all(item.get("type") == "equals" and str(r.get(str(item.get("attribute")))) ==
                            str(item.get("value")) for item in params.where)]
            return JSONResponse({"total": len(found), "list": found[:params.max_size]})
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        if kind == "Role":
            return JSONResponse(self.directory.create_role(body))
        try:
            user = self.directory.create_user(body)
        except KeyError:
            return _error(409, "userNameExists")
        except ValueError as exc:
            return _error(400, str(exc))
        self.add_api_user(next(u for u in self.directory.api_users() if u.id == user["id"]))
        return JSONResponse(user)

    async def _admin_item(self, request: Request) -> Response:
        kind = request.url.path.split("/")[-2]
        denied = self._admin_auth(request)
        if denied is not None:
            return denied
        table = self.directory.roles if kind == "Role" else self.directory.users
        record = table.get(request.path_params["id"])
        if record is None:
            return _error(404, f"Record {request.path_params['id']} does not exist.")
        return JSONResponse(record)

    # -- routes -------------------------------------------------------------------------
    async def _settings(self, _request: Request) -> Response:
        return JSONResponse({"version": "8.3.6", "applicationName": "EspoCRM",
                             "phoneNumberInternational": self.phone_number_international,
                             "currencyList": list(self.currency_list),
                             "recordListMaxSizeLimit": 200})

    async def _app_user(self, request: Request) -> Response:
        user = self._prelude(request)
        if isinstance(user, Response):
            return user
        table = {
            name: {action: ("yes" if action == "create" else "all") if user.can(name, action) else "no"
                   for action in ("create", "read", "edit", "delete")}
            for name, entity in self.metadata.entities.items() if entity.has_controller
        }
        return JSONResponse({
            "user": {"id": user.id, "userName": user.user_name, "type": "api",
                     "authMethod": user.auth_method},
            "acl": {"table": table},
            "preferences": {},
        })

    async def _collection(self, request: Request) -> Response:
        user = self._prelude(request)
        if isinstance(user, Response):
            return user
        entity = self._entity(request.path_params["entity"], user, request.method)
        if isinstance(entity, Response):
            return entity
        if request.method == "GET":
            return self._list(request, entity)
        return await self._create(request, entity, user)

    def _list(self, request: Request, entity: EntityDefs) -> Response:
        try:
            params = list_params(list(request.query_params.multi_items()))
            check_where(params.where, entity)
        except BadRequest as exc:
            return _error(400, str(exc))
        except Forbidden as exc:
            return _error(403, str(exc))
        rows = [row for row in self._candidates(entity.name, params.where)
                if all(matches(row[1], item) for item in params.where)]
        order_by = params.order_by or entity.collection.get("orderBy") or "createdAt"
        order = params.order or str(entity.collection.get("order", "desc")).upper()
        if order_by not in entity.attributes and order_by != "name":
            order_by = "createdAt"
        rows.sort(key=sort_key(order_by), reverse=order == "DESC")
        page = rows[params.offset:params.offset + params.max_size]
        total = len(rows)
        if request.headers.get("x-no-total", "").lower() == "true":
            total = -1 if params.offset + params.max_size < len(rows) else -2
        return JSONResponse({"total": total, "list": [
            rec.render(entity, record, self.user_names, params.select) for _seq, record in page
        ]})

    def _candidates(self, entity: str, where: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
        """The records a where list can match: those holding the value of its most selective
        top-level ``equals`` (from an index), else every record."""
        best: list[tuple[int, dict[str, Any]]] | None = None
        for item in where:
            attribute, wanted = item.get("attribute"), item.get("value")
            if item.get("type") != "equals" or not isinstance(attribute, str) or wanted is None:
                continue
            found = self.store.lookup(entity, attribute, equality_keys(attribute), fold(wanted))
            if found is not None and (best is None or len(found) < len(best)):
                best = found
        return best if best is not None else self.store.scan(entity)

    def _duplicate_candidates(self, entity: str, data: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        """The records that may duplicate ``data``: those with its name or one of its
        addresses (from indexes, as EspoCRM asks its database), oldest first; every
        record if an index cannot be built. ``rec.duplicates`` then applies the rule."""
        found: dict[int, dict[str, Any]] = {}
        [name] = rec.name_keys(data)
        lookups: list[tuple[str, KeysOf, Hashable]] = [("__name__", rec.name_keys, name)] if any(name) else []
        addresses = [*rec.email_keys(data), str(data.get("emailAddress") or "").casefold()]
        lookups += [("__email__", rec.email_keys, address) for address in addresses if address]
        for attribute, keys_of, key in lookups:
            rows = self.store.lookup(entity, attribute, keys_of, key)
            if rows is None:
                return self.store.scan(entity)
            found.update(rows)
        return sorted(found.items(), key=lambda row: row[0])

    async def _create(self, request: Request, entity: EntityDefs, user: ApiUser) -> Response:
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        data = rec.writable_input(entity, body)
        problem = self._validate(entity, data, creating=True) or self._check_assignment(data)
        if problem is not None:
            return problem
        skip = (request.headers.get("x-skip-duplicate-check", "").lower() == "true"
                or body.get("skipDuplicateCheck") is True or body.get("forceDuplicate") is True)
        if entity.name in DUPLICATE_CHECK_ENTITIES and not skip:
            found = rec.duplicates(self._duplicate_candidates(entity.name, data), data)
            if found:
                return _error(409, "duplicate",
                              [rec.render(entity, record, self.user_names) for record in found])
        record = rec.build_new(entity, data, user.id)
        self.store.insert(entity.name, record)
        return JSONResponse(rec.render(entity, record, self.user_names))

    async def _item(self, request: Request) -> Response:
        user = self._prelude(request)
        if isinstance(user, Response):
            return user
        entity = self._entity(request.path_params["entity"], user, request.method)
        if isinstance(entity, Response):
            return entity
        record_id = request.path_params["id"]
        current = self.store.get(entity.name, record_id)
        if request.method == "GET":
            if current is None:
                return _error(404, f"Record {record_id} does not exist.")
            return JSONResponse(rec.render(entity, current, self.user_names))
        if current is None:
            return _error(404, f"Record {record_id} not found.")
        if request.method == "DELETE":
            self.store.delete(entity.name, record_id)
            return JSONResponse(True)
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        data = rec.writable_input(entity, body)
        problem = self._validate(entity, data, creating=False) or self._check_assignment(data)
        if problem is not None:
            return problem
        updated = rec.apply_update(entity, current, data, user.id)
        self.store.update(entity.name, record_id, updated)
        return JSONResponse(rec.render(entity, updated, self.user_names))
