"""Files holding conversations, leads or keys are readable by their owner only."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from maxcore.builtin.sqlite_crm import SqliteCRM, SqliteCRMConfig
from maxcore.builtin.sqlite_memory import SqliteMemory, SqliteMemoryConfig
from maxcore.builtin.webchat import session_secret
from maxcore.files import connect_private, create_private_file
from maxcore.testing.contracts import context_for
from maxcore.types import ChatTurn, Role


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    # The usual default: without care, new files would be 0644.
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


async def test_embedded_databases_and_their_wal_files_are_0600(tmp_path: Path) -> None:
    memory = SqliteMemory(SqliteMemoryConfig(), context_for("acme", tmp_path / "data"))
    crm = SqliteCRM(SqliteCRMConfig(), context_for("acme", tmp_path / "data"))
    await memory.open()
    await crm.open()
    try:
        await memory.append_history("chat", [ChatTurn(role=Role.USER, content="bonjour")])
        await crm.create_record("Note", {"name": "x"})
        files = sorted((tmp_path / "data").iterdir())
        assert {f.name for f in files} >= {"memory.sqlite3", "memory.sqlite3-wal",
                                           "memory.sqlite3-shm", "crm.sqlite3"}
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert mode(tmp_path / "data") == 0o700
    finally:
        await memory.close()
        await crm.close()


def test_an_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    for name in ("old.sqlite3", "old.sqlite3-wal"):
        (tmp_path / name).write_bytes(b"")
        (tmp_path / name).chmod(0o644)
    conn = connect_private(path)
    conn.close()
    assert mode(path) == 0o600 and mode(tmp_path / "old.sqlite3-wal") == 0o600


def test_create_private_file_keeps_content_and_accepts_memory(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    path.write_text("kept")
    create_private_file(path)
    assert path.read_text() == "kept" and mode(path) == 0o600
    create_private_file(Path(":memory:"))
    assert not Path(":memory:").exists()


def test_the_webchat_signing_key_file_is_0600(tmp_path: Path) -> None:
    key = session_secret(tmp_path / "data")
    assert len(key) >= 32 and mode(tmp_path / "data" / "webchat.secret") == 0o600
    assert session_secret(tmp_path / "data") == key
