"""The ``supabase`` memory connector: history, facts and the audit log.

Tables (deploy/supabase/migrations): ``sessions`` (one row per chat with the last
``history_messages`` turns), ``tenant_memory`` (facts), ``max_logs`` (append-only
audit, filled in batches by the core's audit outbox). The per-message journal is the
core's (in its inbox database), not a table here.

Round trips per message: one ``maxcore_context`` call reads the history window and the
facts together; the append writes the window read then (one conversation is processed
at a time, so it is still current); audit rows arrive batched with other messages'.

Isolation: every query goes through :meth:`SupabaseMemory._scoped`, which adds
``tenant_id=eq.<tenant>``, and every written row through :meth:`_row`, which sets
``tenant_id``. With the service key that is the only isolation (service_role bypasses
RLS); with ``jwt_secret`` each request also carries a short-lived tenant JWT, so the
database's RLS policies enforce the same boundary.

supabase-py retries only GET/HEAD; every write here is an idempotent upsert (audit rows
carry the core's row id and ``ignore-duplicates``), so a write whose connection dropped
(idle HTTP/2 connections do) is safely re-sent once.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import httpx
from loguru import logger

from maxcore.config.models import http_url, in_range, non_empty
from maxcore.connectors import ConnectorBase, ConnectorContext
from maxcore.errors import MaxcoreError
from maxcore.http_pool import ssl_context
from maxcore.types import AuditEntry, ChatTurn, Health, hash_chat_id

from .errors import APPLY_MIGRATIONS, api_error, health_fix, sdk, translate
from .tokens import TenantTokens

if TYPE_CHECKING:
    from supabase import AsyncClient

T = TypeVar("T")
TABLES = ("tenant_memory", "sessions", "max_logs")
PAGE = 1000  # Supabase's default max rows per response
MAX_EXPORT_ROWS = 1_000_000
WRITE_ATTEMPTS = 2
SCHEMA_VERSION = 2  # what maxcore_schema_version() returns once deploy/supabase/migrations ran
AUDIT_BATCH_ROWS = 500  # rows per insert request
WINDOW_CACHE_CHATS = 10_000  # history windows kept between a message's read and its append


def rls_problems(status: Any) -> list[str]:
    """What ``maxcore_rls_status()`` reveals is missing: per table, enabled, forced, a policy."""
    report = status if isinstance(status, dict) else {}
    problems: list[str] = []
    for table in TABLES:
        entry = report.get(table)
        if not isinstance(entry, dict):
            problems.append(f"{table}: not found")
        elif not entry.get("enabled"):
            problems.append(f"{table}: RLS disabled")
        elif not entry.get("forced"):
            problems.append(f"{table}: RLS not forced")
        elif not entry.get("policies"):
            problems.append(f"{table}: no policy")
    return problems


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@attrs.frozen
class SupabaseMemoryConfig:
    """``memory: {type: supabase, url, key, jwt_secret, history_messages, timeout_s}``."""

    url: str = attrs.field(validator=[non_empty, http_url])
    key: str = attrs.field(validator=non_empty, repr=False)
    jwt_secret: str | None = attrs.field(default=None, validator=non_empty, repr=False)
    history_messages: int = attrs.field(default=50, validator=in_range(1, 1000))
    timeout_s: float = attrs.field(default=10.0, validator=in_range(0.1, 120))


class SupabaseMemory(ConnectorBase):
    """Memory of one tenant in a Supabase project, through supabase-py's async client."""

    name = "supabase"
    Config = SupabaseMemoryConfig

    def __init__(self, config: SupabaseMemoryConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self.config: SupabaseMemoryConfig = config
        self._tokens = TenantTokens(config.jwt_secret, context.tenant) if config.jwt_secret else None
        self._http: httpx.AsyncClient | None = None
        self._client: AsyncClient | None = None
        # chat -> (history window, facts) as maxcore_context returned them for the
        # message being processed: facts() and append_history() use them instead of
        # asking again.
        self._read: collections.OrderedDict[str, tuple[list[dict[str, Any]], dict[str, Any] | None]] = (
            collections.OrderedDict())
        self._log = logger.bind(tenant=context.tenant, message_id="-")

    @property
    def mode(self) -> str:
        return "tenant-jwt" if self._tokens else "service-key"

    async def open(self) -> None:
        self.context.add_secret(self.config.key)
        if self.config.jwt_secret:
            self.context.add_secret(self.config.jwt_secret)
        timeout = httpx.Timeout(self.config.timeout_s, connect=min(3.0, self.config.timeout_s))
        # Our own client: explicit timeouts (postgrest's default is 120 s) and the
        # defaults a custom client would otherwise lose (HTTP/2, redirects).
        # Its own client (supabase-py sets the tenant's headers on it), the process's TLS context.
        self._http = httpx.AsyncClient(timeout=timeout, http2=True, follow_redirects=True,
                                       verify=ssl_context())
        headers = {}
        if self._tokens is not None:
            headers["Authorization"] = f"Bearer {self._tokens.current()[0]}"
        try:
            self._client = await sdk().acreate_client(
                self.config.url, self.config.key,
                options=sdk().AsyncClientOptions(httpx_client=self._http, headers=headers),
            )
        except Exception as exc:  # noqa: BLE001 - wrapped with a clear message
            await self.close()
            raise translate(exc, "client setup") from None
        self._log.info("[SUPABASE] memory ready ({} mode)", self.mode)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        self._http = None
        self._client = None

    async def health(self) -> Health:
        """Key (and tenant JWT) accepted, the migration applied, every table readable, RLS on."""
        # Raw calls (no _call): the fix depends on the PostgREST code, which translate() folds away.
        what = "schema check"
        try:
            version = await self._api().rpc("maxcore_schema_version", {}).execute()
            for table in TABLES:
                what = f"read {table}"
                await self._scoped(table, lambda t: t.select("tenant_id")).limit(1).execute()
            what = "RLS check"
            rls = await self._api().rpc("maxcore_rls_status", {}).execute()
        except (httpx.HTTPError, api_error()) as exc:
            if what == "RLS check" and isinstance(exc, api_error()) and exc.code in ("PGRST202", "42883"):
                return Health.degraded("tables present but RLS cannot be verified: maxcore_rls_status() "
                                       f"is missing — fix: {APPLY_MIGRATIONS}")
            return Health.down(f"{translate(exc, what)} — fix: {health_fix(exc, self.mode)}")
        if not isinstance(version.data, int) or version.data < SCHEMA_VERSION:
            return Health.down(f"schema version {version.data!r}, this plugin needs {SCHEMA_VERSION} — "
                               f"fix: {APPLY_MIGRATIONS}")
        problems = rls_problems(rls.data)
        if problems:
            return Health.down(f"Row Level Security incomplete ({'; '.join(problems)}): any authenticated "
                               f"JWT could reach every tenant's rows — fix: re-{APPLY_MIGRATIONS}")
        return Health.ok(f"{self.mode}, schema v{version.data}, tables {', '.join(TABLES)} readable, "
                         "RLS enabled and forced")

    # -- the only ways out: tenant-scoped queries, tenant-stamped rows -------------
    def _api(self) -> AsyncClient:
        if self._client is None:
            raise MaxcoreError("supabase memory used before open()")
        if self._tokens is not None:
            token, fresh = self._tokens.current()
            if fresh:
                self._client.postgrest.auth(token)
        return self._client

    def _scoped(self, table: str, builder: Callable[[Any], Any]) -> Any:
        """``builder(table_query)`` then the tenant filter: no query leaves without it."""
        return builder(self._api().table(table)).eq("tenant_id", self.tenant)

    def _row(self, **fields: Any) -> dict[str, Any]:
        return {**fields, "tenant_id": self.tenant}

    async def _call(self, what: str, send: Callable[[], Awaitable[T]], *, idempotent: bool = False) -> T:
        attempts = WRITE_ATTEMPTS if idempotent else 1
        for attempt in range(1, attempts + 1):
            try:
                return await send()
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if attempt < attempts:
                    # A dropped keep-alive connection: the write is idempotent, send it again.
                    self._log.warning("[SUPABASE] {} lost its connection ({}), resending",
                                      what, type(exc).__name__)
                    await asyncio.sleep(0.05 * attempt)
                    continue
                raise translate(exc, what) from None
            except (httpx.HTTPError, api_error()) as exc:
                raise translate(exc, what) from None
        raise AssertionError("unreachable")

    async def _upsert(self, table: str, rows: list[dict[str, Any]], on_conflict: str, *,
                      ignore_duplicates: bool = False) -> None:
        await self._call(
            f"write to {table}",
            lambda: self._api().table(table).upsert(
                rows, on_conflict=on_conflict, ignore_duplicates=ignore_duplicates,
                returning=sdk().ReturnMethod.minimal,
            ).execute(),
            idempotent=True,
        )

    def _read_page(self, table: str, columns: str, refine: Callable[[Any], Any], offset: int,
                   size: int) -> Any:
        query = refine(self._scoped(table, lambda t: t.select(columns)))
        return query.range(offset, offset + size - 1).execute()

    async def _select_all(self, table: str, columns: str, refine: Callable[[Any], Any],
                          limit: int) -> list[dict[str, Any]]:
        """Every matching row up to ``limit``, a page of ``PAGE`` at a time."""
        out: list[dict[str, Any]] = []
        while len(out) < limit:
            size = min(PAGE, limit - len(out))
            offset = len(out)
            page = await self._call(f"read {table}", functools.partial(
                self._read_page, table, columns, refine, offset, size))
            out.extend(page.data)
            if len(page.data) < size:
                break
        return out

    # -- Memory protocol ---------------------------------------------------------
    def _keep(self, chat_id: str, window: list[dict[str, Any]], facts: dict[str, Any] | None) -> None:
        self._read[chat_id] = (window, facts)
        self._read.move_to_end(chat_id)
        while len(self._read) > WINDOW_CACHE_CHATS:
            self._read.popitem(last=False)

    async def _context(self, chat_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """History window and facts in one round trip (``maxcore_context``)."""
        found = await self._call("read context", lambda: self._api().rpc(
            "maxcore_context", {"p_tenant_id": self.tenant, "p_chat_id": chat_id}).execute())
        data = found.data if isinstance(found.data, dict) else {}
        return list(data.get("history") or []), dict(data.get("facts") or {})

    async def _window(self, chat_id: str) -> list[dict[str, Any]]:
        kept = self._read.pop(chat_id, None)
        if kept is not None:
            return kept[0]
        found = await self._call("read sessions", lambda: self._scoped(
            "sessions", lambda t: t.select("history")).eq("chat_id", chat_id).limit(1).execute())
        return list(found.data[0]["history"]) if found.data else []

    async def history(self, chat_id: str, limit: int) -> list[ChatTurn]:
        window, facts = await self._context(chat_id)
        self._keep(chat_id, window, facts)
        if limit <= 0:
            return []
        return [ChatTurn(role=turn["role"], content=turn.get("content")) for turn in window[-limit:]]

    async def append_history(self, chat_id: str, turns: Sequence[ChatTurn]) -> None:
        new = [{"role": str(turn.role), "content": turn.content} for turn in turns if turn.content]
        if not new:
            return
        # Read-modify-write of the window is safe: the core processes one conversation
        # at a time, and the upsert of the resulting window is idempotent.
        window = ((await self._window(chat_id)) + new)[-self.config.history_messages:]
        await self._upsert("sessions", [self._row(chat_id=chat_id, history=window,
                                                  updated_at=_iso(datetime.now(UTC).timestamp()))],
                           "tenant_id,chat_id")

    async def facts(self, chat_id: str) -> dict[str, Any]:
        kept = self._read.get(chat_id)
        if kept is not None and kept[1] is not None:
            # Read with the history a moment ago; consumed, so a later call asks again.
            self._read[chat_id] = (kept[0], None)
            return dict(kept[1])
        rows = await self._select_all(
            "tenant_memory", "key,value", lambda q: q.eq("chat_id", chat_id).order("key"), 10_000)
        return {row["key"]: row["value"] for row in rows}

    async def remember(self, chat_id: str, key: str, value: Any) -> None:
        row = self._row(chat_id=chat_id, key=key, value=_jsonable(value),
                        updated_at=_iso(datetime.now(UTC).timestamp()))
        await self._upsert("tenant_memory", [row], "tenant_id,chat_id,key")

    def _audit_row(self, entry: AuditEntry) -> dict[str, Any]:
        details = _jsonable(entry.details)
        chat_hash = None
        if isinstance(details.get("chat_id"), str):
            # The audit log is append-only and outlives erasure: keep a hash, not the id.
            chat_hash = hash_chat_id(details.pop("chat_id"))
            details["chat_hash"] = chat_hash
        chat_hash = chat_hash or details.get("chat_hash")
        return self._row(id=entry.id, action=entry.action, details=details,
                         message_id=entry.message_id, chat_hash=chat_hash,
                         created_at=_iso(entry.created_at))

    async def audit_batch(self, entries: Sequence[AuditEntry]) -> None:
        rows = [self._audit_row(entry) for entry in entries]
        for start in range(0, len(rows), AUDIT_BATCH_ROWS):
            # ignore-duplicates on the core's row id: a batch re-sent after a lost answer
            # leaves each row once.
            await self._upsert("max_logs", rows[start:start + AUDIT_BATCH_ROWS], "id",
                               ignore_duplicates=True)
        if rows:
            actions = collections.Counter(entry.action for entry in entries)
            self._log.info("[SUPABASE] max_logs <- {} row(s): {}", len(rows),
                           ", ".join(f"{a} x{n}" for a, n in sorted(actions.items())))

    async def audit_log(
        self, *, since: float | None = None, action: str | None = None, limit: int = 1000
    ) -> list[AuditEntry]:
        def refine(query: Any) -> Any:
            if since is not None:
                query = query.gte("created_at", _iso(since))
            if action is not None:
                query = query.eq("action", action)
            return query.order("created_at").order("seq")

        rows = await self._select_all("max_logs", "action,details,message_id,created_at", refine, limit)
        return [AuditEntry(action=r["action"], details=r["details"], message_id=r["message_id"],
                           created_at=_epoch(r["created_at"])) for r in rows]

    async def purge_history(self, before: float) -> int:
        """Conversation windows not touched since ``before`` (retention.history_days)."""
        done = await self._call("purge sessions", lambda: self._scoped(
            "sessions", _counted_delete).lt("updated_at", _iso(before)).execute())
        return int(done.count or 0)

    def _erase_chat(self, table: str, chat_id: str) -> Any:
        return self._scoped(table, _counted_delete).eq("chat_id", chat_id).execute()

    async def forget(self, chat_id: str) -> int:
        self._read.pop(chat_id, None)
        removed = 0
        for table in ("tenant_memory", "sessions"):
            done = await self._call(f"erase from {table}", functools.partial(
                self._erase_chat, table, chat_id))
            removed += done.count or 0
        self._log.info("[SUPABASE] forgot chat {} ({} rows)", hash_chat_id(chat_id), removed)
        return removed

    async def export(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for table in TABLES:
            order = "seq" if table == "max_logs" else "chat_id"
            rows = await self._select_all(
                table, "*", functools.partial(_ordered, column=order), MAX_EXPORT_ROWS)
            out.extend({"table": table, **row} for row in rows)
        return out


def _ordered(query: Any, column: str) -> Any:
    return query.order(column)


def _counted_delete(query: Any) -> Any:
    """A DELETE that answers how many rows went, and no rows."""
    return query.delete(count=sdk().CountMethod.exact, returning=sdk().ReturnMethod.minimal)
