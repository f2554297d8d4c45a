"""Supabase/PostgREST failures → maxcore's retryable/permanent errors, without secrets."""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import httpx

from maxcore.errors import MaxcoreError, PermanentError, RetryableError
from maxcore.logs import redact

# SQLSTATE classes and PostgREST codes that a later attempt can succeed on:
# connection (08), resources (53), operator intervention/timeouts (57), serialisation
# and deadlock (40), lock not available (55P03), internal (XX), DB unreachable or pool
# timeout (PGRST000-003). Bare HTTP statuses come from non-JSON bodies (a proxy's 502).
_RETRYABLE_PREFIXES = ("08", "53", "57", "40", "55P03", "XX", "PGRST000", "PGRST001", "PGRST002",
                       "PGRST003")
_RETRYABLE_STATUSES = {"429", "500", "502", "503", "504", "520", "521", "522", "523", "524"}


if TYPE_CHECKING:
    from postgrest import APIError


@functools.cache
def sdk() -> Any:
    """supabase-py and postgrest, imported when first needed (a tenant's memory opens, an
    error is translated): imported with the plugin, they cost every ``maxcore`` command
    about 0.25 s, whether or not a tenant uses Supabase."""
    import postgrest
    import supabase
    from postgrest.types import CountMethod, ReturnMethod

    return SimpleNamespace(APIError=postgrest.APIError, CountMethod=CountMethod,
                           ReturnMethod=ReturnMethod, acreate_client=supabase.acreate_client,
                           AsyncClientOptions=supabase.AsyncClientOptions)


def api_error() -> type[APIError]:
    """postgrest's ``APIError`` (for ``except`` clauses, evaluated only when one is raised)."""
    return sdk().APIError  # type: ignore[no-any-return]


APPLY_MIGRATIONS = ("apply deploy/supabase/migrations to the project (supabase db push, or psql -f "
                    "each file; see deploy/supabase/README.md)")
_MISSING_OBJECT_CODES = ("PGRST202", "PGRST205", "42P01", "42883")


def health_fix(exc: BaseException, mode: str) -> str:
    """The remedy ``maxcore doctor`` prints for a failed health probe."""
    if isinstance(exc, httpx.HTTPError):
        return "check memory.url (https://<ref>.supabase.co) and that the project is reachable"
    code = (exc.code or "") if isinstance(exc, api_error()) else ""
    if code in _MISSING_OBJECT_CODES:
        return APPLY_MIGRATIONS
    if code.startswith("PGRST3"):
        return "set memory.jwt_secret to the project's JWT secret (Settings › API)"
    if not code:
        key = "anon" if mode == "tenant-jwt" else "service_role"
        return f"set memory.key to the project's {key} key (Settings › API)"
    if code == "42501":
        return f"re-apply deploy/supabase/migrations (its grants and RLS policies); {APPLY_MIGRATIONS}"
    if is_retryable_code(code):
        return "the database is unavailable or overloaded: check the project's status, then retry"
    return "check the memory block of the tenant YAML"


def is_retryable_code(code: str | None) -> bool:
    return code is not None and (code in _RETRYABLE_STATUSES or code.startswith(_RETRYABLE_PREFIXES))


def translate(exc: BaseException, what: str) -> MaxcoreError:
    """The maxcore error for a failed ``what`` (e.g. ``"write to max_logs"``)."""
    if isinstance(exc, httpx.TimeoutException):
        return RetryableError(f"Supabase {what} timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.TransportError):
        return RetryableError(redact(f"Supabase {what} failed: cannot reach the server "
                                     f"({type(exc).__name__}: {exc})"))
    if isinstance(exc, api_error()):
        code = exc.code or ""
        message = redact(str(exc.message or "")[:300])
        if is_retryable_code(code):
            return RetryableError(f"Supabase {what} failed, will retry: {code} {message}".strip())
        if not code:
            # The API gateway (bad or missing apikey) answers {message, hint} without a code.
            return PermanentError(f"Supabase {what} refused: {message or 'unauthorised'}; "
                                  "check memory.key (and memory.jwt_secret) in the tenant YAML")
        if code == "42501":
            hint = "row-level security or grants refused it"
        elif code.startswith("23"):
            hint = "a constraint refused the data"
        elif code in ("PGRST202", "PGRST205", "42P01", "42883"):
            hint = "are the migrations in deploy/supabase/migrations applied?"
        elif code.startswith("PGRST3"):
            hint = "the JWT was refused; check memory.jwt_secret"
        else:
            hint = "not retried"
        return PermanentError(f"Supabase {what} failed: {code} {message} ({hint})")
    return PermanentError(redact(f"Supabase {what} failed: {type(exc).__name__}: {exc}"))
