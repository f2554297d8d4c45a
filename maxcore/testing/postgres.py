"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl into a temp dir, free port.

``initdb`` refuses to run as root, so when the tests run as root (CI does) every
server command runs as the ``postgres`` system user through ``runuser``; the data
directory is created for that user. Authentication is ``trust`` on 127.0.0.1 only.

Use the session-scoped fixture from a ``conftest.py``::

    from maxcore.testing.postgres import postgres_cluster  # noqa: F401 (pytest fixture)

    def test_x(postgres_cluster):
        dsn = postgres_cluster.create_database("mine")

When the binaries are missing the fixture skips with the reason, except under
``CI=true`` where a missing PostgreSQL is a failure, not a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .server import free_port

SUPERUSER = "postgres"


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<v>/bin`` (or ``$MAXCORE_PG_BIN``) holding initdb."""
    candidates = [os.environ.get("MAXCORE_PG_BIN", "")]
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PostgresCluster:
    """One PostgreSQL server owned by the test session."""

    def __init__(self, bin_dir: Path, base_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="maxcore-pg-"))
        self.data_dir = self.base_dir / "data"
        self.port = free_port()
        self.host = "127.0.0.1"
        self._run_as: str | None = None
        if os.geteuid() == 0:
            # initdb/postgres refuse root: run them as the packaged ``postgres`` user.
            try:
                pwd.getpwnam(SUPERUSER)
            except KeyError as exc:
                raise RuntimeError("running as root needs a 'postgres' system user") from exc
            self._run_as = SUPERUSER
            shutil.chown(self.base_dir, user=SUPERUSER)
        self._started = False

    def _cmd(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self._run_as, "--"] if self._run_as else []
        return [*prefix, *args]

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            self._cmd(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}): "
                               f"{result.stderr.strip() or result.stdout.strip()}")

    def start(self) -> PostgresCluster:
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
        )
        # PostgreSQL cannot bind port 0 and report it: take a free port, and if another
        # process grabbed it in between, start again on a new one.
        for attempt in range(5):
            # Loopback only, no unix socket in a shared directory, fast and disposable.
            options = (
                f"-h {self.host} -p {self.port} -k {self.base_dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=100 -c shared_buffers=32MB"
            )
            try:
                self._run(
                    str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l",
                    str(self.base_dir / "server.log"), "-o", options, "-w", "-t", "30", "start",
                )
            except RuntimeError:
                if attempt == 4 or "could not bind" not in self.log_tail():
                    raise
                self.port = free_port()
                continue
            break
        self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            with contextlib.suppress(Exception):
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate",
                          "-w", "stop", timeout=30)
            self._started = False
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return f"host={self.host} port={self.port} dbname={dbname} user={user}"

    def url(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}?sslmode=disable"

    def create_database(self, name: str) -> str:
        """Create (or recreate) database ``name`` and return its DSN."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join((self.base_dir / "server.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def skip_or_fail(reason: str) -> None:
    """Skip locally, fail under CI: a missing server must not turn CI green."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing binary is a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A running PostgreSQL cluster for the whole test session."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        skip_or_fail("PostgreSQL binaries (initdb, pg_ctl) not found; apt-get install postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        skip_or_fail("psycopg is not installed (pip install 'psycopg[binary]')")
    cluster = PostgresCluster(bin_dir)  # type: ignore[arg-type]
    try:
        cluster.start()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        # The binaries are there: a server that does not start is a real failure.
        log = cluster.log_tail()
        cluster.stop()
        pytest.fail(f"cannot start PostgreSQL from {bin_dir}: {exc}\n{log}")
    try:
        yield cluster
    finally:
        cluster.stop()


# What a Supabase project has before any migration: the API roles and the ``auth``
# helpers, as supabase/postgres and supabase/auth define them
# in their migrations. Idempotent. Run it as a superuser.
SUPABASE_BOOTSTRAP_SQL = """
do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
end
$$;
grant anon, authenticated, service_role to authenticator;
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';

create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;

-- nullif matters: after a transaction ends current_setting(name, true) is '' not NULL.
create or replace function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;
create or replace function auth.uid() returns uuid language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
create or replace function auth.role() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
create or replace function auth.email() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;
grant execute on all functions in schema auth to anon, authenticated, service_role;

-- Supabase's default privileges: grants are not the isolation, RLS is.
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
"""


def apply_sql_files(dsn: str, paths: list[Path]) -> None:
    """Run each SQL file in order, each in its own transaction (as a migration tool would)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for path in paths:
            with conn.transaction():
                conn.execute(path.read_text())  # type: ignore[arg-type]  # trusted local file


def prepare_supabase_database(cluster: PostgresCluster, name: str,
                              migrations_dir: Path | None = None) -> str:
    """A fresh database shaped like a Supabase project, with ``migrations_dir`` applied.

    Returns the superuser DSN; the API connects as ``authenticator`` (``cluster.dsn(name,
    "authenticator")``), exactly like PostgREST.
    """
    import psycopg

    dsn = cluster.create_database(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SUPABASE_BOOTSTRAP_SQL)  # type: ignore[arg-type]  # a constant
    if migrations_dir is not None:
        apply_sql_files(dsn, sorted(migrations_dir.glob("*.sql")))
    return dsn
