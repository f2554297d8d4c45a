"""backup.sh / restore.sh, the shipped scripts, against a real throwaway MariaDB and a
real restic repository (plus an off-site one).

COMPOSE points at bin/fake-compose, which runs ``exec``/``run`` of a service on this
machine: the mariadb "service" is a local mariadbd (its client my.cnf found through
MYSQL_HOME, its credentials in the environment as the container has them), the volumes
are temp directories named by ESPOCRM_HTML_DIR / MAXCORE_DATA_PATH; the host files
(env files, certificate, config) are temp files named by the scripts' variables.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from .conftest import DEPLOY, require_binary
from .mariadb_server import DATABASE, MariaDB, start_mariadb

SCRIPTS = DEPLOY / "scripts"
FAKE_COMPOSE = Path(__file__).parent / "bin" / "fake-compose"


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDB]:
    require_binary("mariadb-dump")
    server = start_mariadb(require_binary("mariadbd", "mysqld"), require_binary("mariadb-install-db"))
    yield server
    server.stop()


@attrs.define
class Stack:
    root: Path
    db: MariaDB
    html: Path
    data: Path
    config: Path
    backups: Path
    compose_log: Path

    @property
    def env_file(self) -> Path:
        return self.root / "env.production"

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.db.env(), "COMPOSE": str(FAKE_COMPOSE),
                "FAKE_COMPOSE_LOG": str(self.compose_log), "ESPOCRM_HTML_DIR": str(self.html),
                "MAXCORE_DATA_PATH": str(self.data), "MAXCORE_CONFIG_DIR": str(self.config),
                "ENV_FILE": str(self.env_file), "MAXCORE_ENV_FILE": str(self.root / "maxcore.env"),
                "SSL_DIR": str(self.root / "ssl"), "BACKUP_STAGING": str(self.root),
                "RESTIC_FORGET_ARGS": "--keep-last 2", **extra}

    def run(self, script: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SCRIPTS / script), *args], env=self.env(**extra),
                              capture_output=True, text=True, timeout=120, check=False)

    def backup(self, *args: str) -> str:
        result = self.run("backup.sh", *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    def restic(self, *args: str, offsite: bool = False) -> str:
        repo = self.backups / ("offsite" if offsite else "local")
        env = {**os.environ, "RESTIC_REPOSITORY": str(repo),
               "RESTIC_PASSWORD": "offsite-pw" if offsite else "local-pw"}
        return subprocess.run([require_binary("restic"), *args], env=env, capture_output=True,
                              text=True, timeout=120, check=True).stdout

    def restore_to_dir(self, snapshot: str) -> Path:
        target = self.root / f"restored-{snapshot}"
        self.restic("restore", snapshot, "--target", str(target))
        return next(target.rglob("SHA256SUMS")).parent

    def calls(self) -> list[str]:
        return self.compose_log.read_text().splitlines() if self.compose_log.exists() else []


def seed_database(db: MariaDB) -> None:
    db.sql(f"DROP DATABASE IF EXISTS {DATABASE}")
    db.sql(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
    db.sql("CREATE TABLE lead (id VARCHAR(17) PRIMARY KEY, name VARCHAR(100), phone VARCHAR(36), "
           "tenant_id VARCHAR(64), photo BLOB, created_at DATETIME, KEY (tenant_id))", DATABASE)
    db.sql("CREATE TABLE diagnostic_i_a (id INT AUTO_INCREMENT PRIMARY KEY, lead_id VARCHAR(17), "
           "score DECIMAL(5,2), notes TEXT)", DATABASE)
    rows = ",".join(
        f"('l{i:05d}', 'Zoë Müller-{i} l''Étoile', '+3361234{i:04d}', 'tenant{i % 3}', "
        f"UNHEX('{hashlib.sha256(str(i).encode()).hexdigest()}'), '2026-01-{1 + i % 28:02d} 10:00:00')"
        for i in range(600)
    )
    db.sql(f"INSERT INTO lead VALUES {rows}", DATABASE)
    db.sql("INSERT INTO diagnostic_i_a (lead_id, score, notes) SELECT id, 42.5, CONCAT('note ', name) "
           "FROM lead WHERE tenant_id = 'tenant1'", DATABASE)


def snapshot(db: MariaDB) -> dict[str, tuple[str, str]]:
    tables = db.sql(f"SELECT table_name FROM information_schema.tables WHERE table_schema='{DATABASE}' "
                    "ORDER BY table_name").split()
    out = {}
    for table in tables:
        count = db.sql(f"SELECT COUNT(*) FROM {table}", DATABASE).strip()
        checksum = db.sql(f"CHECKSUM TABLE {table} EXTENDED", DATABASE).split()[-1]
        out[table] = (count, checksum)
    return out


def tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def stack(mariadb: MariaDB, tmp_path: Path) -> Stack:
    seed_database(mariadb)
    s = Stack(tmp_path, mariadb, tmp_path / "html", tmp_path / "data", tmp_path / "config",
              tmp_path / "backups", tmp_path / "compose.log")
    s.env_file.write_text(f"API_HOST=api.test\nRESTIC_REPOSITORY={s.backups / 'local'}\n"
                          f"RESTIC_PASSWORD=local-pw\nRESTIC_OFFSITE_REPOSITORY={s.backups / 'offsite'}\n"
                          "RESTIC_OFFSITE_PASSWORD=offsite-pw\n")
    (tmp_path / "maxcore.env").write_text("OPENAI_API_KEY=sk-test\n")
    (tmp_path / "ssl").mkdir()
    (tmp_path / "ssl" / "origin.pem").write_text("certificate")
    (tmp_path / "ssl" / "origin.key").write_text("private key")
    (s.html / "data" / "upload").mkdir(parents=True)
    (s.html / "data" / "config.php").write_text("<?php return ['siteUrl' => 'https://crm.test'];\n")
    (s.html / "data" / "upload" / "a1b2").write_bytes(os.urandom(4096))
    (s.html / "custom" / "Espo" / "Custom").mkdir(parents=True)
    (s.html / "custom" / "Espo" / "Custom" / "x.json").write_text('{"fields": {}}')
    s.data.mkdir()
    (s.data / "inbox.sqlite3").write_bytes(os.urandom(8192))
    (s.config / "tenants").mkdir(parents=True)
    (s.config / "maxcore.yaml").write_text("server:\n  port: 3005\n")
    (s.config / "tenants" / "acme.yaml").write_text("tenant: acme\n")
    return s


def test_backup_then_restore_round_trips_database_and_volumes(stack: Stack) -> None:
    before_db, before_html, before_data = snapshot(stack.db), tree(stack.html), tree(stack.data)
    assert before_db["lead"][0] == "600" and before_db["diagnostic_i_a"][0] == "200"
    (stack.html / "data" / "cache").mkdir()
    (stack.html / "data" / "cache" / "rebuilt.php").write_text("cache")
    snapshot_id = stack.backup()
    # Encrypted at rest, copied off-site, and the parts are all there.
    assert snapshot_id in stack.restic("snapshots")
    assert stack.restic("snapshots", "--json", offsite=True).count('"id"') == 1
    assert b"Zo\xc3\xab M\xc3\xbcller" not in b"".join(
        p.read_bytes() for p in (stack.backups / "local").rglob("*") if p.is_file())
    parts = stack.restore_to_dir(snapshot_id)
    assert sorted(p.name for p in parts.iterdir()) == sorted(
        ["mariadb.sql.gz", "espocrm-html.tar.gz", "maxcore-data.tar.gz", "maxcore-config.tar.gz",
         "host-files.tar.gz", "MANIFEST", "SHA256SUMS"])
    listing = subprocess.run(["tar", "-tzf", str(parts / "host-files.tar.gz")], capture_output=True,
                             text=True, check=True).stdout.split()
    assert sorted(listing) == sorted(["./", "./env.production", "./maxcore.env", "./origin.pem",
                                      "./origin.key"])
    html_listing = subprocess.run(["tar", "-tzf", str(parts / "espocrm-html.tar.gz")],
                                  capture_output=True, text=True, check=True).stdout
    assert "data/cache" not in html_listing and "data/config.php" in html_listing
    shutil.rmtree(stack.html / "data" / "cache")
    before_html = tree(stack.html)

    # Damage everything the backup holds.
    stack.db.sql("DELETE FROM lead WHERE tenant_id = 'tenant2'", DATABASE)
    stack.db.sql("DROP TABLE diagnostic_i_a", DATABASE)
    stack.db.sql("CREATE TABLE junk (id INT)", DATABASE)
    (stack.html / "data" / "config.php").write_text("broken")
    (stack.html / "stray.txt").write_text("not in the backup")
    (stack.data / "inbox.sqlite3").unlink()
    (stack.root / "ssl" / "origin.key").unlink()
    (stack.root / "maxcore.env").write_text("OPENAI_API_KEY=changed-since\n")

    refused = stack.run("restore.sh", snapshot_id)
    assert refused.returncode != 0
    assert "--force" in refused.stderr and "table(s)" in refused.stderr
    assert "junk" in snapshot(stack.db)  # nothing was touched
    assert not any(call.startswith("stop") for call in stack.calls())

    restored = stack.run("restore.sh", "--force", snapshot_id)
    assert restored.returncode == 0, restored.stderr
    assert snapshot(stack.db) == before_db
    assert tree(stack.html) == before_html
    assert tree(stack.data) == before_data
    # A missing host file comes back; a changed one is left alone, the backup's beside it.
    assert (stack.root / "ssl" / "origin.key").read_text() == "private key"
    assert (stack.root / "maxcore.env").read_text() == "OPENAI_API_KEY=changed-since\n"
    assert (stack.root / "maxcore.env.restored").read_text() == "OPENAI_API_KEY=sk-test\n"
    calls = stack.calls()
    stop = calls.index("stop nginx maxcore espocrm-daemon espocrm")
    load = next(i for i, c in enumerate(calls) if c.startswith("exec -T mariadb") and "DROP DATABASE" in c)
    unpack = [i for i, c in enumerate(calls) if c.startswith("run --rm --no-deps -T") and "-xzf" in c]
    assert stop < load < min(unpack)
    assert calls[-1] == "up -d --no-build --wait"


def test_restore_into_an_empty_stack_needs_no_force(stack: Stack) -> None:
    before = snapshot(stack.db)
    stack.backup()
    stack.db.sql(f"DROP DATABASE {DATABASE}")
    stack.db.sql(f"CREATE DATABASE {DATABASE}")
    for path in (stack.html, stack.data):
        subprocess.run(["find", str(path), "-mindepth", "1", "-delete"], check=True)
    result = stack.run("restore.sh", "latest")
    assert result.returncode == 0, result.stderr
    assert snapshot(stack.db) == before


def test_in_the_split_layout_restore_stops_the_worker_too(stack: Stack) -> None:
    with stack.env_file.open("a") as env_file:  # the switch, as .env.production.example has it
        env_file.write("COMPOSE_FILE=docker-compose.yml:docker-compose.split.yml\n")
    snapshot_id = stack.backup()  # the web process's volume is the worker's: nothing changes
    result = stack.run("restore.sh", "--force", snapshot_id)
    assert result.returncode == 0, result.stderr
    assert "stopping nginx, maxcore, maxcore-worker, espocrm-daemon and espocrm" in result.stderr
    calls = stack.calls()
    assert "stop nginx maxcore maxcore-worker espocrm-daemon espocrm" in calls
    assert calls[-1] == "up -d --no-build --wait"


def test_restore_from_the_off_site_copy(stack: Stack) -> None:
    before = snapshot(stack.db)
    snapshot_id = stack.backup()
    shutil.rmtree(stack.backups / "local")  # the machine's own repository is gone
    stack.db.sql("DROP TABLE lead", DATABASE)
    result = stack.run("restore.sh", "--force", "latest",
                       RESTIC_REPOSITORY=str(stack.backups / "offsite"), RESTIC_PASSWORD="offsite-pw")
    assert result.returncode == 0, result.stderr
    assert snapshot(stack.db) == before and snapshot_id


def test_corrupted_archive_is_refused_before_anything_changes(stack: Stack) -> None:
    parts = stack.restore_to_dir(stack.backup())
    stack.db.sql("CREATE TABLE after_backup (id INT)", DATABASE)
    archive = parts / "espocrm-html.tar.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    stack.compose_log.unlink(missing_ok=True)

    result = stack.run("restore.sh", "--force", "--dir", str(parts))
    assert result.returncode != 0
    assert "checksum mismatch" in result.stderr
    assert "after_backup" in snapshot(stack.db)
    assert stack.calls() == []  # not even nginx was stopped

    (parts / "SHA256SUMS").unlink()
    result = stack.run("restore.sh", "--force", "--dir", str(parts))
    assert result.returncode != 0 and "SHA256SUMS is missing" in result.stderr


def test_truncated_dump_cannot_pass_for_a_backup(stack: Stack) -> None:
    parts = stack.restore_to_dir(stack.backup())
    dump = parts / "mariadb.sql.gz"
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    result = stack.run("restore.sh", "--verify-only", "--dir", str(parts))
    assert result.returncode != 0 and "checksum mismatch" in result.stderr


def test_failed_backup_exits_non_zero_and_stores_nothing(stack: Stack) -> None:
    result = stack.run("backup.sh", FAKE_COMPOSE_FAIL=str(stack.data))  # the data volume snapshot fails
    assert result.returncode != 0
    assert "backup failed" in result.stderr
    assert not (stack.backups / "local").exists()
    assert not (stack.root / "maxcore-backup").exists()  # the staging folder is gone

    # A database that refuses the dump (wrong password) is a failure too, not an empty file.
    result = stack.run("backup.sh", MARIADB_ROOT_PASSWORD="wrong")
    assert result.returncode != 0
    assert not (stack.backups / "local").exists()

    # A wrong repository password: refused, not a second repository.
    stack.backup()
    result = stack.run("backup.sh", RESTIC_PASSWORD="not-the-password")
    assert result.returncode != 0
    assert stack.restic("snapshots", "--json").count('"id"') == 1


def test_a_file_changing_while_tar_reads_it_is_not_a_failure(stack: Stack) -> None:
    """GNU tar exits 1 when a file changes under it (a live EspoCRM log): tolerated."""
    log = stack.html / "data" / "logs" / "espo.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(os.urandom(4 * 1024 * 1024))
    stop = threading.Event()

    def keep_writing() -> None:
        with log.open("ab") as handle:
            while not stop.is_set():
                handle.write(os.urandom(65536))
                handle.flush()

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        stack.backup()
    finally:
        stop.set()
        writer.join()


def test_retention_forgets_old_snapshots(stack: Stack) -> None:
    for _ in range(3):
        stack.backup()
    assert stack.restic("snapshots", "--json").count('"id"') == 2  # --keep-last 2
    assert stack.restic("snapshots", "--json", offsite=True).count('"id"') == 2


def test_dry_run_and_help_change_nothing(stack: Stack) -> None:
    before = snapshot(stack.db)
    result = stack.run("backup.sh", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would run:" in result.stderr and "mariadb-dump" in result.stderr
    assert not (stack.backups / "local").exists()
    snapshot_id = stack.backup()
    result = stack.run("restore.sh", "--dry-run", snapshot_id)
    assert result.returncode == 0, result.stderr
    assert "would run:" in result.stderr
    assert snapshot(stack.db) == before
    for script in ("backup.sh", "restore.sh", "deploy.sh"):
        result = stack.run(script, "--help")
        assert result.returncode == 0 and "Usage:" in result.stdout and "--dry-run" in result.stdout
        result = stack.run(script, "--bogus")
        assert result.returncode != 0 and "unknown" in result.stderr


def test_live_sqlite_databases_are_backed_up_consistently(stack: Stack) -> None:
    """A WAL database whose recent rows are still in its -wal file comes back whole."""
    import sqlite3

    (stack.data / "inbox.sqlite3").unlink()
    (stack.data / "empty-dir").mkdir()
    live = sqlite3.connect(stack.data / "inbox.sqlite3")
    try:
        live.execute("PRAGMA journal_mode=WAL")
        live.execute("PRAGMA wal_autocheckpoint=0")  # keep every page in the -wal file
        live.execute("CREATE TABLE inbox (id INTEGER PRIMARY KEY, payload TEXT)")
        live.executemany("INSERT INTO inbox (payload) VALUES (?)", [(f"m{i}",) for i in range(500)])
        live.commit()
        assert (stack.data / "inbox.sqlite3-wal").stat().st_size > 0
        snapshot_id = stack.backup()
    finally:
        live.close()
    restored = stack.run("restore.sh", "--force", snapshot_id)
    assert restored.returncode == 0, restored.stderr
    names = sorted(p.name for p in stack.data.iterdir())
    assert names == ["empty-dir", "inbox.sqlite3"]  # no stale -wal/-shm next to the copy
    with sqlite3.connect(stack.data / "inbox.sqlite3") as copy:
        assert copy.execute("SELECT count(*), max(payload) FROM inbox").fetchone() == (500, "m99")
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
