"""The emulator's records: one SQLite table, attribute maps stored as JSON.

Filtering happens in Python (``query.matches``) so that the where semantics stay in one
place; SQLite gives insertion order, soft deletes and a store the test thread can read
while the server thread writes (every access holds the lock). The live records of each
entity are also kept decoded in memory (:meth:`Store.scan`): a list request filters
every record, and decoding each one's JSON per request made the emulator, not the
client under test, the bottleneck of a benchmark with thousands of leads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entity TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    deleted INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_entity ON records (entity, deleted);
"""


def new_id() -> str:
    """17 hex characters, the shape of EspoCRM's ids."""
    return uuid.uuid4().hex[:17]


class Store:
    def __init__(self, path: str = ":memory:") -> None:
        """In memory, or in a file that outlives the process (the served emulator)."""
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._conn.executescript(_SCHEMA)
        # entity -> id -> (insertion sequence, attributes), loaded on first scan.
        self._live: dict[str, dict[str, tuple[int, dict[str, Any]]]] = {}

    def reset(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM records")
            self._conn.commit()
            self._live.clear()

    def insert(self, entity: str, data: dict[str, Any]) -> None:
        with self._lock:
            text = json.dumps(data)
            cursor = self._conn.execute(
                "INSERT INTO records (entity, id, data) VALUES (?, ?, ?)", (entity, data["id"], text))
            self._conn.commit()
            if entity in self._live:
                self._live[entity][data["id"]] = (int(cursor.lastrowid or 0), json.loads(text))

    def update(self, entity: str, record_id: str, data: dict[str, Any]) -> None:
        with self._lock:
            text = json.dumps(data)
            self._conn.execute(
                "UPDATE records SET data = ? WHERE entity = ? AND id = ? AND deleted = 0",
                (text, entity, record_id),
            )
            self._conn.commit()
            live = self._live.get(entity)
            if live is not None and record_id in live:
                live[record_id] = (live[record_id][0], json.loads(text))

    def delete(self, entity: str, record_id: str) -> bool:
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE records SET deleted = 1 WHERE entity = ? AND id = ? AND deleted = 0",
                (entity, record_id),
            )
            self._conn.commit()
            self._live.get(entity, {}).pop(record_id, None)
            return cursor.rowcount > 0

    def scan(self, entity: str) -> list[tuple[int, dict[str, Any]]]:
        """Like :meth:`all`, from memory: the records are shared, read them only."""
        with self._lock:
            live = self._live.get(entity)
            if live is None:
                rows = self._conn.execute(
                    "SELECT seq, id, data FROM records WHERE entity = ? AND deleted = 0 ORDER BY seq",
                    (entity,),
                ).fetchall()
                live = self._live[entity] = {
                    record_id: (int(seq), json.loads(data)) for seq, record_id, data in rows}
            # Insertion order is sequence order: loaded sorted, inserts appended, updates in place.
            return list(live.values())

    def get(self, entity: str, record_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT data FROM records WHERE entity = ? AND id = ? AND deleted = 0",
                (entity, record_id),
            ).fetchone()
        return json.loads(row[0]) if row else None

    def all(self, entity: str) -> list[tuple[int, dict[str, Any]]]:
        """``(insertion sequence, attributes)`` of every live record, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, data FROM records WHERE entity = ? AND deleted = 0 ORDER BY seq",
                (entity,),
            ).fetchall()
        return [(int(seq), json.loads(data)) for seq, data in rows]
