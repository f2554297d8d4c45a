"""A throwaway MariaDB server: own datadir, socket and pid file in a temp dir, no TCP."""

from __future__ import annotations

import getpass
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import attrs

ROOT_PASSWORD = "test-root-pw"
DATABASE = "espocrm"


@attrs.define
class MariaDB:
    base: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.base / "mysqld.sock"

    @property
    def client_home(self) -> Path:
        """MYSQL_HOME for clients: its my.cnf (read after /etc/mysql) points at our socket."""
        return self.base / "client"

    def env(self) -> dict[str, str]:
        """What the mariadb container's environment would give the scripts' commands."""
        return {"MYSQL_HOME": str(self.client_home), "MARIADB_HOME": str(self.client_home),
                "MARIADB_ROOT_PASSWORD": ROOT_PASSWORD, "MARIADB_DATABASE": DATABASE}

    def sql(self, statement: str, database: str | None = None) -> str:
        command = ["mariadb", "--no-defaults", f"--socket={self.socket}", "--user=root",
                   f"--password={ROOT_PASSWORD}", "--batch", "--skip-column-names", "-e", statement]
        if database:
            command.append(database)
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)


def start_mariadb(mariadbd: str, install_db: str, timeout: float = 60.0) -> MariaDB:
    # A short path: a unix socket path must stay under ~108 bytes.
    base = Path(tempfile.mkdtemp(prefix="mdb-"))
    server = MariaDB(base)
    user = getpass.getuser()
    (base / "data").mkdir()
    server.client_home.mkdir()
    (server.client_home / "my.cnf").write_text(f"[client-server]\nsocket = {server.socket}\n")
    subprocess.run(
        [install_db, "--no-defaults", f"--datadir={base / 'data'}", f"--user={user}",
         "--auth-root-authentication-method=normal", "--skip-test-db"],
        check=True, capture_output=True, timeout=120,
    )
    server.process = subprocess.Popen(
        [mariadbd, "--no-defaults", f"--datadir={base / 'data'}", f"--socket={server.socket}",
         f"--pid-file={base / 'mysqld.pid'}", "--skip-networking", f"--user={user}",
         f"--log-error={base / 'error.log'}", "--innodb-buffer-pool-size=32M",
         "--innodb-log-file-size=16M"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            log = (base / "error.log").read_text() if (base / "error.log").exists() else ""
            raise RuntimeError(f"mariadbd exited: {log}")
        ping = subprocess.run(["mariadb-admin", "--no-defaults", f"--socket={server.socket}",
                               "--user=root", "ping"], capture_output=True, timeout=10, check=False)
        if ping.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise TimeoutError("mariadbd did not answer within the timeout")
        time.sleep(0.1)
    subprocess.run(
        ["mariadb", "--no-defaults", f"--socket={server.socket}", "--user=root", "-e",
         f"ALTER USER root@localhost IDENTIFIED BY '{ROOT_PASSWORD}'"],
        check=True, capture_output=True, timeout=30,
    )
    return server
