"""A PostgREST (Supabase ``/rest/v1``) emulator executing on a real PostgreSQL.

It does per request what PostgREST does (PostgREST 12's request cycle): verify the
``apikey`` (Supabase's gateway) and the Bearer JWT (HS256, the project's JWT secret),
open one transaction (READ ONLY for GET/HEAD), ``set_config('role', <jwt role>, true)``
and ``set_config('request.jwt.claims', <payload>, true)``, run the statement, commit
(rollback on error). It connects as ``authenticator``, so the database's real roles,
grants and Row Level Security policies decide what each request may see.

Test controls: :meth:`fail_next` (an upstream 5xx/520 with or without JSON body),
:meth:`delay_next`, the :attr:`requests` log, and ``require_filter``: a guard that
refuses any service-role table request lacking ``<column>=eq.<value>`` (reads, updates,
deletes) or a value for that column in every written row, so a query that forgot the
tenant filter fails a test instead of leaking rows.

``psycopg`` (3) and ``PyJWT`` are imported lazily: only tests using the emulator need them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import postgrest_sql as q
from .server import ServerThread

BODY_LIMIT = 1 << 20
SINGULAR = "application/vnd.pgrst.object+json"


@attrs.frozen
class RecordedRequest:
    method: str
    table: str
    query: tuple[tuple[str, str], ...]
    headers: dict[str, str]
    body: bytes
    role: str | None = None

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)


@attrs.define
class _Fault:
    status: int | None = None
    body: str | None = None
    delay: float = 0.0


def make_jwt(secret: str, claims: dict[str, Any], ttl_s: float | None = 3600) -> str:
    """An HS256 token the emulator (and Supabase with this JWT secret) accepts."""
    import jwt

    payload = {"iss": "supabase-emulator", "iat": int(time.time()), **claims}
    if ttl_s is not None:
        payload.setdefault("exp", int(time.time() + ttl_s))
    return jwt.encode(payload, secret, algorithm="HS256")


def status_for(sqlstate: str, authenticated: bool) -> int:
    """PostgREST's mapping of PostgreSQL error codes to HTTP statuses."""
    exact = {"23505": 409, "23503": 409, "25006": 405, "42P01": 404, "42883": 404, "P0001": 400}
    if sqlstate in exact:
        return exact[sqlstate]
    if sqlstate == "42501":
        return 403 if authenticated else 401
    if sqlstate.startswith(("08", "53")):
        return 503
    if sqlstate.startswith(("0L", "0P", "28")):
        return 403
    if sqlstate.startswith(("09", "25", "2D", "38", "39", "3B", "40", "54", "55", "57", "58",
                            "F0", "HV", "P0", "XX")):
        return 500
    return 400


def _error(status: int, code: str, message: str, details: str | None = None,
           hint: str | None = None) -> Response:
    body = {"code": code, "message": message, "details": details, "hint": hint}
    return Response(json.dumps(body), status, media_type="application/json")


class PostgrestEmulator:
    """``/rest/v1/<table>`` and ``/rest/v1/rpc/<fn>`` over a real database.

    ``dsn`` should connect as ``authenticator`` (see :func:`prepare_supabase_database`).
    ``anon_key``/``service_key`` are legacy Supabase API keys: JWTs signed with ``jwt_secret``.
    """

    def __init__(self, dsn: str, jwt_secret: str, *, prefix: str = "/rest/v1",
                 require_filter: str | None = None, pool_size: int = 8) -> None:
        self.dsn = dsn
        self.jwt_secret = jwt_secret
        self.prefix = prefix.rstrip("/")
        self.require_filter = require_filter
        self.anon_key = make_jwt(jwt_secret, {"role": "anon"}, ttl_s=10 * 365 * 86400)
        self.service_key = make_jwt(jwt_secret, {"role": "service_role"}, ttl_s=10 * 365 * 86400)
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self._faults: list[_Fault] = []
        self._tables: dict[str, q.Table] | None = None
        self._functions: dict[str, tuple[bool, list[str], list[str]]] = {}
        self._idle: list[Any] = []
        self._pool_size = pool_size
        self._slots: asyncio.Semaphore | None = None
        self.server: ServerThread | None = None
        self.app = Starlette(
            routes=[Route(self.prefix + "/{path:path}", self._handle,
                          methods=["GET", "HEAD", "POST", "PATCH", "DELETE"])],
            lifespan=self._lifespan,
        )

    # -- test controls ---------------------------------------------------------
    def fail_next(self, status: int = 503, count: int = 1, body: str | None = None) -> None:
        """The next ``count`` requests get ``status`` (``body`` raw, else PostgREST JSON)."""
        self._faults.extend(_Fault(status=status, body=body) for _ in range(count))

    def delay_next(self, seconds: float, count: int = 1) -> None:
        self._faults.extend(_Fault(delay=seconds) for _ in range(count))

    def reset(self) -> None:
        """Drop pending faults and forget the request log and guard violations."""
        self._faults.clear()
        self.requests.clear()
        self.violations.clear()

    def reload_schema(self) -> None:
        """Forget the schema cache (PostgREST's ``NOTIFY pgrst, 'reload schema'``)."""
        self._tables = None
        self._functions = {}

    def table_requests(self, table: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.table == table]

    @property
    def url(self) -> str:
        """The Supabase project URL (what ``acreate_client`` takes)."""
        assert self.server is not None, "call serve() first"
        return self.server.url

    @contextlib.contextmanager
    def serve(self) -> Iterator[PostgrestEmulator]:
        self.server = ServerThread(self.app).start()
        try:
            yield self
        finally:
            self.server.stop()

    # -- connections (owned by the server thread's event loop) -------------------
    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self._slots = asyncio.Semaphore(self._pool_size)
        try:
            yield
        finally:
            for conn in self._idle:
                with contextlib.suppress(Exception):
                    await conn.close()
            self._idle.clear()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        import psycopg

        assert self._slots is not None
        async with self._slots:
            conn = self._idle.pop() if self._idle else await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True)
            try:
                yield conn
            except BaseException:
                await conn.close()
                raise
            if conn.closed:
                return
            self._idle.append(conn)

    async def _schema(self, conn: Any) -> dict[str, q.Table]:
        if self._tables is None:
            cur = await conn.execute(
                "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), "
                "  coalesce(a.attnum = ANY(i.indkey), false) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
                "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'p') "
                "ORDER BY c.relname, a.attnum")
            columns: dict[str, dict[str, str]] = {}
            keys: dict[str, list[str]] = {}
            for table, column, col_type, is_key in await cur.fetchall():
                columns.setdefault(table, {})[column] = col_type
                if is_key:
                    keys.setdefault(table, []).append(column)
            self._tables = {t: q.Table(t, cols, tuple(keys.get(t, ()))) for t, cols in columns.items()}
            cur = await conn.execute(
                "SELECT p.proname, p.proretset, coalesce(p.proargnames, '{}'), "
                "  array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t) "
                "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public'")
            self._functions = {name: (retset, list(names), list(types))
                               for name, retset, names, types in await cur.fetchall()}
        return self._tables

    # -- request handling ------------------------------------------------------
    async def _handle(self, request: Request) -> Response:
        path = request.path_params["path"].strip("/")
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        record = RecordedRequest(request.method, path, tuple(request.query_params.multi_items()),
                                 headers, body)
        self.requests.append(record)
        if self._faults:
            fault = self._faults.pop(0)
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                if fault.body is not None:
                    return Response(fault.body, fault.status, media_type="text/html")
                return _error(fault.status, "PGRST000" if fault.status == 503 else str(fault.status),
                              "emulator: injected upstream failure")
        if len(body) > BODY_LIMIT:
            return _error(413, "PGRST413", "Payload Too Large")
        claims = self._authenticate(headers)
        if isinstance(claims, Response):
            return claims
        role = str(claims.get("role") or "anon")
        self.requests[-1] = attrs.evolve(record, role=role)
        profile = headers.get("accept-profile" if request.method in ("GET", "HEAD")
                              else "content-profile", "public")
        if profile != "public":
            return _error(406, "PGRST106", "The schema must be one of the following: public")
        try:
            return await self._execute(request.method, path, record.query, headers, body, role, claims)
        except q.QueryError as exc:
            return _error(exc.status, exc.code, exc.message, exc.details, exc.hint)

    def _authenticate(self, headers: dict[str, str]) -> dict[str, Any] | Response:
        import jwt

        apikey = headers.get("apikey")
        if apikey not in (self.anon_key, self.service_key):
            # Supabase's API gateway answers this, not PostgREST (no code field).
            body = {"message": "Invalid API key",
                    "hint": "Double check your Supabase `anon` or `service_role` API key."}
            return Response(json.dumps(body), 401, media_type="application/json")
        auth = headers.get("authorization", "")
        if not auth:
            return {"role": "anon"}
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _error(401, "PGRST301", "Expected a Bearer token in the Authorization header")
        try:
            return dict(jwt.decode(token, self.jwt_secret, algorithms=["HS256"],
                                   options={"verify_aud": False}))
        except jwt.ExpiredSignatureError:
            return _error(401, "PGRST303", "JWT expired")
        except jwt.PyJWTError as exc:
            return _error(401, "PGRST301", f"JWSError: {type(exc).__name__}")

    async def _execute(self, method: str, path: str, query: tuple[tuple[str, str], ...],
                       headers: dict[str, str], body: bytes, role: str,
                       claims: dict[str, Any]) -> Response:
        import psycopg

        prefer = {k.strip(): v.strip() for item in headers.get("prefer", "").split(",")
                  if "=" in item for k, v in [item.split("=", 1)]}
        singular = SINGULAR in headers.get("accept", "")
        try:
            async with self._connection() as conn:
                tables = await self._schema(conn)
                plan = q.plan_request(method, path, query, body, tables, self._functions, prefer)
                self._guard(plan, method, path, role)
                async with conn.transaction():
                    if method in ("GET", "HEAD"):
                        await conn.execute("SET TRANSACTION READ ONLY")
                    await conn.execute(
                        "SELECT set_config('role', %s, true), set_config('request.jwt.claims', %s, true),"
                        " set_config('request.method', %s, true), set_config('request.path', %s, true)",
                        (role, json.dumps(claims), method, "/" + path))
                    cur = await conn.execute(plan.statement, plan.params)
                    if plan.returns_rows:
                        payload, count = await cur.fetchone()
                        rows = json.loads(payload)
                    else:
                        rows, count = [], cur.rowcount
                    total = None
                    if plan.count_statement is not None:
                        count_cur = await conn.execute(plan.count_statement, plan.params)
                        total = (await count_cur.fetchone())[0]
                    if singular and plan.kind != "rpc" and len(rows) != 1:
                        # Raised inside the transaction: a singular write is rolled back.
                        raise q.QueryError(406, "PGRST116",
                                           "JSON object requested, multiple (or no) rows returned",
                                           f"The result contains {len(rows)} rows")
        except psycopg.Error as exc:
            diag = exc.diag
            code = exc.sqlstate or "08000"
            return _error(status_for(code, role != "anon"), code,
                          diag.message_primary or type(exc).__name__, diag.message_detail,
                          diag.message_hint)
        return self._respond(method, plan, rows, count, total, singular, prefer)

    def _guard(self, plan: q.Plan, method: str, path: str, role: str) -> None:
        if self.require_filter and role == "service_role" and plan.kind != "rpc":
            problem = plan.tenant_problem(self.require_filter)
            if problem:
                self.violations.append(f"{method} {path}: {problem}")
                raise q.QueryError(400, "MAXTEST", f"emulator guard: {problem}",
                                   f"require_filter={self.require_filter}")

    @staticmethod
    def _respond(method: str, plan: q.Plan, rows: Any, count: int, total: int | None,
                 singular: bool, prefer: dict[str, str]) -> Response:
        if plan.kind == "rpc":
            return Response(json.dumps(rows), 200, media_type="application/json")
        content = json.dumps(rows[0] if singular else rows)
        if method in ("GET", "HEAD"):
            first = plan.offset
            span = f"{first}-{first + count - 1}" if count else "*"
            partial = total is not None and count and (first > 0 or first + count < total)
            return Response("" if method == "HEAD" else content, 206 if partial else 200,
                            headers={"Content-Range": f"{span}/{total if total is not None else '*'}"},
                            media_type="application/json")
        representation = prefer.get("return") == "representation"
        status = 201 if method == "POST" else (200 if representation else 204)
        headers = {"Content-Range": "*/*" if method == "POST" else f"*/{count}"}
        if not representation:
            return Response(status_code=status, headers=headers)
        return Response(content, status, headers=headers, media_type="application/json")
