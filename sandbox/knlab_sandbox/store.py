"""Objects and their history in SQLite.

One table of current objects, one of watch events (the history a watch resumes from), and one
monotonic resourceVersion counter shared by every kind, as etcd's revision is. Each write is one
transaction, so a crash (even kill -9) loses nothing that was acknowledged. Events older than the
kept history are compacted away; resuming before them is answered with 410 Expired.

The store knows nothing about Kubernetes semantics (that is resources.py); it stores, numbers and
fans events out to subscribers.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import gone

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    kind_key TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    rv INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (kind_key, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    rv INTEGER PRIMARY KEY, kind_key TEXT NOT NULL, namespace TEXT NOT NULL,
    type TEXT NOT NULL, data TEXT NOT NULL, prev TEXT
);
"""


@dataclass(frozen=True)
class Event:
    """One change: `type` is ADDED, MODIFIED or DELETED; `prev` is the object before it (None for ADDED)."""

    rv: int
    kind_key: str
    namespace: str
    type: str
    obj: dict
    prev: dict | None


class Store:
    def __init__(self, path: Path, history_size: int = 10000):
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per write.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only a power loss could drop the last commit.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self.history_size = history_size
        self._rv = int(self._meta("rv", "0"))
        self._compacted = int(self._meta("compacted", "0"))
        self._subscribers: set[asyncio.Queue[Event]] = set()

    def close(self) -> None:
        self._db.close()

    def _meta(self, key: str, default: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    # --- reads ---
    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def compacted_rv(self) -> int:
        """Watches may resume from this resourceVersion or a newer one."""
        return self._compacted

    def get(self, kind_key: str, namespace: str, name: str) -> dict | None:
        row = self._db.execute(
            "SELECT data FROM objects WHERE kind_key = ? AND namespace = ? AND name = ?",
            (kind_key, namespace, name),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def list(self, kind_key: str, namespace: str | None = None) -> list[dict]:
        if namespace is None:
            rows = self._db.execute("SELECT data FROM objects WHERE kind_key = ? ORDER BY namespace, name", (kind_key,))
        else:
            rows = self._db.execute(
                "SELECT data FROM objects WHERE kind_key = ? AND namespace = ? ORDER BY name",
                (kind_key, namespace),
            )
        return [json.loads(r[0]) for r in rows]

    def all_objects(self, namespace: str | None = None) -> Iterator[tuple[str, dict]]:
        """(kind_key, object) for every object, optionally within one namespace (garbage collection)."""
        if namespace is None:
            rows = self._db.execute("SELECT kind_key, data FROM objects").fetchall()
        else:
            rows = self._db.execute("SELECT kind_key, data FROM objects WHERE namespace = ?", (namespace,)).fetchall()
        for kind_key, data in rows:
            yield kind_key, json.loads(data)

    def events_since(self, rv: int) -> list[Event]:
        """Every event newer than `rv`; 410 Expired when part of that history was compacted."""
        if rv < self._compacted:
            raise gone(f"too old resource version: {rv} ({self._compacted})")
        rows = self._db.execute(
            "SELECT rv, kind_key, namespace, type, data, prev FROM events WHERE rv > ? ORDER BY rv", (rv,)
        )
        return [Event(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]) if r[5] else None) for r in rows]

    # --- writes ---
    def write(self, kind_key: str, obj: dict, event_type: str, prev: dict | None = None) -> dict:
        """Store (or, for DELETED, remove) `obj` under the next resourceVersion; returns it with that version."""
        rv = self._rv + 1
        obj["metadata"]["resourceVersion"] = str(rv)
        namespace = obj["metadata"].get("namespace", "")
        name = obj["metadata"]["name"]
        data = json.dumps(obj, separators=(",", ":"))
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if event_type == "DELETED":
                self._db.execute(
                    "DELETE FROM objects WHERE kind_key = ? AND namespace = ? AND name = ?", (kind_key, namespace, name)
                )
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO objects (kind_key, namespace, name, rv, data) VALUES (?, ?, ?, ?, ?)",
                    (kind_key, namespace, name, rv, data),
                )
            self._db.execute(
                "INSERT INTO events (rv, kind_key, namespace, type, data, prev) VALUES (?, ?, ?, ?, ?, ?)",
                (rv, kind_key, namespace, event_type, data, json.dumps(prev, separators=(",", ":")) if prev else None),
            )
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('rv', ?)", (str(rv),))
            self._maybe_compact(rv)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._rv = rv
        event = Event(rv, kind_key, namespace, event_type, json.loads(data), prev)
        for queue in list(self._subscribers):
            queue.put_nowait(event)
        return obj

    def _maybe_compact(self, rv: int) -> None:
        # Compact in batches (every 10% of the history size) so a write rarely pays for it.
        keep = self.history_size
        if rv - self._compacted <= keep + max(1, keep // 10):
            return
        self._compact_to(rv - keep)

    def compact(self, keep: int) -> None:
        """Drop all but the newest `keep` events (tests and fault injection)."""
        self._db.execute("BEGIN IMMEDIATE")
        self._compact_to(max(self._rv - keep, self._compacted))
        self._db.execute("COMMIT")

    def _compact_to(self, compacted: int) -> None:
        self._db.execute("DELETE FROM events WHERE rv <= ?", (compacted,))
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('compacted', ?)", (str(compacted),))
        self._compacted = compacted

    # --- fan-out ---
    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.discard(queue)
