"""The emulator's state in one SQLite file, so objects, events and pending deliveries survive a
restart. One connection, used only from the event loop's thread; every change runs inside
`transaction()`, so a request's objects, events, deliveries and idempotent response are written
together or not at all."""

from __future__ import annotations

import json
import secrets
import sqlite3
import string
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

_ID_ALPHABET = string.ascii_letters + string.digits

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    object TEXT NOT NULL,
    parent TEXT,
    data TEXT NOT NULL,
    internal TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS objects_by_type ON objects (object, seq);
CREATE INDEX IF NOT EXISTS objects_by_parent ON objects (parent, seq);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    api_key TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (api_key, key)
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    url TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS delivery_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    attempted_at REAL NOT NULL,
    status_code INTEGER,
    error TEXT
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class StoredObject:
    data: JSON
    internal: JSON


@dataclass(frozen=True)
class Page:
    data: list[JSON]
    has_more: bool


@dataclass(frozen=True)
class Delivery:
    id: int
    event_id: str
    url: str
    payload: str
    status: str
    attempts: int
    next_attempt_at: float


@dataclass(frozen=True)
class DeliveryAttempt:
    delivery_id: int
    attempted_at: float
    status_code: int | None
    error: str | None


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The event loop's thread is the only user, but uvicorn may create the app in another.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._depth = 0

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Commit on success, roll back on error. A nested call is a savepoint, so an inner
        failure undoes only the inner writes and the caller decides what to do with the rest."""
        depth = self._depth
        self._db.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT level{depth}")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK" if depth == 0 else f"ROLLBACK TO level{depth}")
            if depth:
                self._db.execute(f"RELEASE level{depth}")
            raise
        else:
            self._db.execute("COMMIT" if depth == 0 else f"RELEASE level{depth}")
        finally:
            self._depth = depth

    # Stripe objects

    def insert(
        self, data: JSON, *, parent: str | None = None, internal: JSON | None = None
    ) -> None:
        self._db.execute(
            "INSERT INTO objects (id, object, parent, data, internal) VALUES (?, ?, ?, ?, ?)",
            (data["id"], data["object"], parent, json.dumps(data), json.dumps(internal or {})),
        )

    def update(self, data: JSON, *, internal: JSON | None = None) -> None:
        if internal is None:
            self._db.execute(
                "UPDATE objects SET data = ? WHERE id = ?", (json.dumps(data), data["id"])
            )
        else:
            self._db.execute(
                "UPDATE objects SET data = ?, internal = ? WHERE id = ?",
                (json.dumps(data), json.dumps(internal), data["id"]),
            )

    def find(self, object_id: str, object_type: str | None = None) -> StoredObject | None:
        row = self._db.execute(
            "SELECT object, data, internal FROM objects WHERE id = ?", (object_id,)
        ).fetchone()
        if row is None or (object_type is not None and row["object"] != object_type):
            return None
        return StoredObject(json.loads(row["data"]), json.loads(row["internal"]))

    def page(
        self,
        object_type: str,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        parent: str | None = None,
        equals: dict[str, str] | None = None,
        type_pattern: str | None = None,
        newest_first: bool = True,
    ) -> Page:
        """One page of a list in Stripe's order (newest first, line items oldest first).

        `equals` filters on top-level fields of the object; `type_pattern` is a GLOB on `type`.
        Cursors must be ids of objects of this type (the API layer checks that).
        """
        conditions = ["object = ?"]
        args: list[Any] = [object_type]
        if parent is not None:
            conditions.append("parent = ?")
            args.append(parent)
        for field, value in (equals or {}).items():
            conditions.append("json_extract(data, ?) = ?")
            args.extend([f"$.{field}", value])
        if type_pattern is not None:
            conditions.append("json_extract(data, '$.type') GLOB ?")
            args.append(type_pattern)
        backwards = ending_before is not None
        cursor = ending_before if backwards else starting_after
        if cursor is not None:
            # "After" in list order: older when newest first, newer when oldest first.
            after_is_older = newest_first != backwards
            comparison = "<" if after_is_older else ">"
            conditions.append(f"seq {comparison} (SELECT seq FROM objects WHERE id = ?)")  # noqa: S608
            args.append(cursor)
        descending = newest_first != backwards
        sql = (
            f"SELECT data FROM objects WHERE {' AND '.join(conditions)} "  # noqa: S608 -- fixed fragments
            f"ORDER BY seq {'DESC' if descending else 'ASC'} LIMIT ?"
        )
        rows = self._db.execute(sql, [*args, limit + 1]).fetchall()
        data = [json.loads(row["data"]) for row in rows[:limit]]
        if backwards:
            data.reverse()
        return Page(data=data, has_more=len(rows) > limit)

    def ids_where(self, object_type: str, condition: str, args: tuple[Any, ...]) -> list[str]:
        """Ids of objects matching a SQL condition over `data`/`internal` (for the timers)."""
        rows = self._db.execute(
            f"SELECT id FROM objects WHERE object = ? AND {condition} ORDER BY seq",  # noqa: S608
            (object_type, *args),
        ).fetchall()
        return [row["id"] for row in rows]

    # Idempotency keys

    def idempotent_response(self, api_key: str, key: str) -> tuple[str, int, str] | None:
        row = self._db.execute(
            "SELECT fingerprint, status, body FROM idempotency_keys WHERE api_key = ? AND key = ?",
            (api_key, key),
        ).fetchone()
        return None if row is None else (row["fingerprint"], row["status"], row["body"])

    def save_idempotent_response(
        self, api_key: str, key: str, fingerprint: str, status: int, body: str, now: float
    ) -> None:
        self._db.execute(
            "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?, ?, ?)",
            (api_key, key, fingerprint, status, body, now),
        )

    def forget_idempotency_keys_before(self, cutoff: float) -> None:
        self._db.execute("DELETE FROM idempotency_keys WHERE created < ?", (cutoff,))

    # Webhook deliveries

    def add_delivery(
        self, event_id: str, url: str, payload: str, due: float, status: str = "pending"
    ) -> None:
        """`status` "held": not due until `held_deliveries` hands it to the request that made it."""
        self._db.execute(
            "INSERT INTO deliveries (event_id, url, payload, next_attempt_at, status) "
            "VALUES (?, ?, ?, ?, ?)",
            (event_id, url, payload, due, status),
        )

    def held_deliveries(self, event_ids: list[str]) -> list[Delivery]:
        return [d for d in self.deliveries_for(event_ids) if d.status == "held"]

    def release_held_before(self, cutoff: float) -> None:
        """Queue held deliveries due before `cutoff`: their request never sent them (the
        emulator stopped, or the client went away before an after-response delivery)."""
        self._db.execute(
            "UPDATE deliveries SET status = 'pending' "
            "WHERE status = 'held' AND next_attempt_at < ?",
            (cutoff,),
        )

    def due_deliveries(self, now: float) -> list[Delivery]:
        rows = self._db.execute(
            "SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, id",
            (now,),
        ).fetchall()
        return [Delivery(**dict(row)) for row in rows]

    def record_attempt(
        self,
        delivery: Delivery,
        *,
        attempted_at: float,
        status_code: int | None,
        error: str | None,
        new_status: str,
        next_attempt_at: float,
    ) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, error) "
                "VALUES (?, ?, ?, ?)",
                (delivery.id, attempted_at, status_code, error),
            )
            self._db.execute(
                "UPDATE deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ? "
                "WHERE id = ?",
                (new_status, next_attempt_at, delivery.id),
            )

    def pending_delivery_count(self, event_id: str) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM deliveries WHERE event_id = ? AND status IN ('pending', 'held')",
            (event_id,),
        ).fetchone()
        return int(row[0])

    def deliveries_for(self, event_ids: list[str]) -> list[Delivery]:
        marks = ",".join("?" * len(event_ids))
        rows = self._db.execute(
            f"SELECT * FROM deliveries WHERE event_id IN ({marks}) ORDER BY id",  # noqa: S608
            event_ids,
        ).fetchall()
        return [Delivery(**dict(row)) for row in rows]

    def attempts_for(self, delivery_ids: list[int]) -> list[DeliveryAttempt]:
        marks = ",".join("?" * len(delivery_ids))
        rows = self._db.execute(
            "SELECT delivery_id, attempted_at, status_code, error FROM delivery_attempts "  # noqa: S608
            f"WHERE delivery_id IN ({marks}) ORDER BY id",
            delivery_ids,
        ).fetchall()
        return [DeliveryAttempt(**dict(row)) for row in rows]

    # Settings kept across restarts (the generated webhook secret)

    def setting(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def save_setting(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, value))
