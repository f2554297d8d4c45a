"""The emulator's records: one SQLite table, attribute maps stored as JSON.

Filtering happens in Python (``query.matches``) so that the where semantics stay in one
place; SQLite gives insertion order, soft deletes and a store the test thread can read
while the server thread writes (every access holds the lock). The live records of each
entity are also kept decoded in memory (:meth:`Store.scan`): a list request filters
every record, and decoding each one's JSON per request made the emulator, not the
client under test, the bottleneck of a benchmark with thousands of leads. For the same
reason an ``equals`` filter can start from an index of one attribute's values
(:meth:`Store.lookup`) instead of every record; the filter still runs on what it finds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Hashable, Iterable
from typing import Any

Row = tuple[int, dict[str, Any]]
KeysOf = Callable[[dict[str, Any]], Iterable[Hashable]]

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
        # (entity, attribute) -> (key -> ids holding it, how a record's keys are read).
        self._indexes: dict[tuple[str, str], tuple[dict[Hashable, dict[str, None]], KeysOf]] = {}

    def reset(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM records")
            self._conn.commit()
            self._live.clear()
            self._indexes.clear()

    def insert(self, entity: str, data: dict[str, Any]) -> None:
        with self._lock:
            text = json.dumps(data)
            cursor = self._conn.execute(
                "INSERT INTO records (entity, id, data) VALUES (?, ?, ?)", (entity, data["id"], text))
            self._conn.commit()
            if entity in self._live:
                self._live[entity][data["id"]] = (int(cursor.lastrowid or 0), json.loads(text))
                for (indexed, attribute), (index, keys_of) in list(self._indexes.items()):
                    if indexed == entity and not self._index_record(index, keys_of, data):
                        del self._indexes[(indexed, attribute)]

    def update(self, entity: str, record_id: str, data: dict[str, Any]) -> None:
        with self._lock:
            text = json.dumps(data)
            self._conn.execute(
                "UPDATE records SET data = ? WHERE entity = ? AND id = ? AND deleted = 0",
                (text, entity, record_id),
            )
            self._conn.commit()
            live = self._live.get(entity)
            if live is None or record_id not in live:
                for key in [key for key in self._indexes if key[0] == entity]:
                    del self._indexes[key]
                return
            old = live[record_id][1]
            new = json.loads(text)
            live[record_id] = (live[record_id][0], new)
            # The record's old keys are dropped from each index of the entity, its new ones added.
            for (indexed, attribute), (index, keys_of) in list(self._indexes.items()):
                if indexed != entity:
                    continue
                try:
                    for value in keys_of(old):
                        index.get(value, {}).pop(record_id, None)
                except TypeError:
                    pass
                if not self._index_record(index, keys_of, new):
                    del self._indexes[(indexed, attribute)]

    def delete(self, entity: str, record_id: str) -> bool:
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE records SET deleted = 1 WHERE entity = ? AND id = ? AND deleted = 0",
                (entity, record_id),
            )
            self._conn.commit()
            self._live.get(entity, {}).pop(record_id, None)
            return cursor.rowcount > 0

    def _loaded(self, entity: str) -> dict[str, Row]:
        live = self._live.get(entity)
        if live is None:
            rows = self._conn.execute(
                "SELECT seq, id, data FROM records WHERE entity = ? AND deleted = 0 ORDER BY seq",
                (entity,),
            ).fetchall()
            live = self._live[entity] = {
                record_id: (int(seq), json.loads(data)) for seq, record_id, data in rows}
        return live

    def scan(self, entity: str) -> list[Row]:
        """Like :meth:`all`, from memory: the records are shared, read them only."""
        with self._lock:
            # Insertion order is sequence order: loaded sorted, inserts appended, updates in place.
            return list(self._loaded(entity).values())

    @staticmethod
    def _index_record(index: dict[Hashable, dict[str, None]], keys_of: KeysOf,
                      record: dict[str, Any]) -> bool:
        try:
            for key in keys_of(record):
                index.setdefault(key, {})[record["id"]] = None
        except TypeError:  # an unhashable value (a list): this attribute is not indexed
            return False
        return True

    def lookup(self, entity: str, attribute: str, keys_of: KeysOf, key: Hashable) -> list[Row] | None:
        """The live records whose ``keys_of(record)`` holds ``key``, oldest first (a superset
        of an ``equals`` filter's matches when ``keys_of`` lists what it compares); None when
        the attribute cannot be indexed."""
        with self._lock:
            live = self._loaded(entity)
            entry = self._indexes.get((entity, attribute))
            if entry is None:
                index: dict[Hashable, dict[str, None]] = {}
                for _seq, record in live.values():
                    if not self._index_record(index, keys_of, record):
                        return None
                entry = self._indexes[(entity, attribute)] = (index, keys_of)
            try:
                ids = entry[0].get(key, {})
            except TypeError:
                return None
            return sorted((live[i] for i in ids if i in live), key=lambda row: row[0])

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
