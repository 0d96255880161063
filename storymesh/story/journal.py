"""The story journal: the story service's durable memory, one SQLite file (WAL) per host.

It owns everything a restarted story service needs to resume a story from its last finished
step without computing a finished chapter or picture twice: the request, the status, each
step's result (outline, chapters, pictures, cover), the publications, the message history,
and the lease that says which story-service instance runs a story right now.

Rules the rest of the story service can rely on:

- Several `Journal` objects (threads, or processes on one host) may share one file. Every
  write runs in its own `BEGIN IMMEDIATE` transaction, so writers queue on SQLite's busy
  timeout instead of failing with "database is locked".
- Steps are write-once: the first `save_step` for (corr, kind, index) wins, later ones only
  bump `StepRow.attempts` and return False. Step kinds are `outline` (index 0), `chapter`
  (index n), `picture` (index n, the picture of chapter n) and `cover` (index 0): the cover
  is its own kind, so chapter numbering is the caller's choice (0- or 1-based).
- Finished statuses (complete, failed, cancelled) are sticky: `set_status` on a finished
  story changes nothing and returns False, so a late "complete" cannot undo a cancel.
- Unknown story ids never raise: reads return None / [] / {}, writes return False (or 0).
  Misuse by our own code (an unknown step kind or status) raises ValueError; data that is
  not JSON-serialisable raises TypeError from `json`. Binary data goes in `blob`.
- Times are wall-clock seconds from the injected `clock` (they are shared between
  processes through the file); tests pass a fake clock.
- Lease ids should be unique per process run (e.g. host-pid-random): a live lease held by an
  instance is never offered by `claimable`, so a restart that reused its id would wait for
  its own leases to expire.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Self

from storymesh.core.schema import Status
from storymesh.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_S: Final = 5.0
DEFAULT_LEASE_TTL: Final = 30.0

UNFINISHED: Final = (Status.ACCEPTED, Status.RUNNING)
FINISHED: Final = (Status.COMPLETE, Status.FAILED, Status.CANCELLED)


class StepKind(StrEnum):
    """What a journalled step holds."""

    OUTLINE = "outline"
    CHAPTER = "chapter"
    PICTURE = "picture"
    COVER = "cover"


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS stories (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    corr          TEXT NOT NULL UNIQUE,
    status        TEXT NOT NULL,
    request       TEXT NOT NULL,
    title         TEXT,
    error         TEXT,
    principal     TEXT,
    lease_owner   TEXT,
    lease_expires REAL,
    created       REAL NOT NULL,
    updated       REAL NOT NULL,
    size          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS stories_status ON stories (status, created);
CREATE INDEX IF NOT EXISTS stories_lease ON stories (lease_owner);
CREATE TABLE IF NOT EXISTS steps (
    corr     TEXT NOT NULL REFERENCES stories (corr) ON DELETE CASCADE,
    kind     TEXT NOT NULL,
    idx      INTEGER NOT NULL,
    data     TEXT,
    blob     BLOB,
    started  REAL NOT NULL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (corr, kind, idx)
);
CREATE TABLE IF NOT EXISTS publications (
    corr TEXT NOT NULL REFERENCES stories (corr) ON DELETE CASCADE,
    fmt  TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (corr, fmt)
);
CREATE TABLE IF NOT EXISTS history (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    corr         TEXT NOT NULL REFERENCES stories (corr) ON DELETE CASCADE,
    sender       TEXT NOT NULL,
    receiver     TEXT NOT NULL,
    message_type TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    time         REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS history_corr ON history (corr, seq);
"""

_STORY_COLS: Final = ("corr, status, request, title, error, principal, lease_owner, "
                      "lease_expires, created, updated, size")
_STEP_COLS: Final = "corr, kind, idx, data, blob, started, finished, attempts"


@dataclass(frozen=True, slots=True)
class StoryRow:
    """One story: its request, where it stands, and who holds its lease."""

    corr: str
    status: Status
    request: dict[str, Any]
    title: str | None
    error: str | None
    principal: str | None
    lease_owner: str | None
    lease_expires: float | None
    created: float
    updated: float
    size: int

    @property
    def done(self) -> bool:
        """Whether the story reached a finished status."""
        return self.status in FINISHED


@dataclass(frozen=True, slots=True)
class StepRow:
    """One step; `data` is None (and `finished` None) while it is only started."""

    corr: str
    kind: str
    index: int
    data: dict[str, Any] | None
    blob: bytes | None
    started: float
    finished: float | None
    attempts: int

    @property
    def done(self) -> bool:
        """Whether the step's result is saved."""
        return self.finished is not None


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One message of a story, as `story.query` op `history` reports it."""

    sender: str
    receiver: str
    message_type: str
    time: float
    id: str


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _nbytes(text: str | None, blob: bytes | None = None) -> int:
    """The stored size that counts toward retention: UTF-8 text plus binary."""
    return (len(text.encode()) if text is not None else 0) + (len(blob) if blob else 0)


def _story(row: tuple[Any, ...]) -> StoryRow:
    return StoryRow(row[0], Status(row[1]), json.loads(row[2]), *row[3:])


def _step(row: tuple[Any, ...]) -> StepRow:
    data = json.loads(row[3]) if row[3] is not None else None
    return StepRow(row[0], row[1], row[2], data, row[4], row[5], row[6], row[7])


def _placeholders(values: Iterable[object]) -> str:
    return ",".join("?" for _ in values)


class Journal:
    """The story journal over one SQLite file; one connection, safe to share across threads."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                     check_same_thread=False)
        self._configure()
        self._migrate()

    # -- connection -------------------------------------------------------------------------

    def _configure(self) -> None:
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            # Cascading deletes keep prune() to one statement per story.
            self._conn.execute("PRAGMA foreign_keys = ON")

    def _migrate(self) -> None:
        with self._write() as cur:
            version = cur.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(f"journal {self.path} has schema version {version}, newer than "
                                  f"this storymesh ({SCHEMA_VERSION}); upgrade storymesh")
            if version < SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        cur.execute(statement)
                cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction, taking SQLite's write lock up front.

        BEGIN IMMEDIATE (not a deferred BEGIN) matters in WAL mode: a read transaction that
        later upgrades to a write fails at once with SQLITE_BUSY instead of waiting.
        """
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _read(self, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        """Close the connection; the last one to close checkpoints the WAL into the file."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- stories ----------------------------------------------------------------------------

    def create_story(self, corr: str, request: dict[str, Any], owner: str | None,
                     principal: str | None = None, *,
                     ttl: float = DEFAULT_LEASE_TTL) -> StoryRow:
        """Journal a new story as `accepted`, leased to `owner` for `ttl` seconds if given.

        Idempotent per corr (clients retry with the same id): an existing story is returned
        unchanged.
        """
        now = self._clock()
        text = _dumps(request)
        with self._write() as cur:
            cur.execute(
                "INSERT OR IGNORE INTO stories (corr, status, request, principal, lease_owner, "
                "lease_expires, created, updated, size) VALUES (?,?,?,?,?,?,?,?,?)",
                (corr, Status.ACCEPTED.value, text, principal, owner,
                 now + ttl if owner is not None else None, now, now, _nbytes(text)))
            row = cur.execute(f"SELECT {_STORY_COLS} FROM stories WHERE corr = ?",
                              (corr,)).fetchone()
        return _story(row)

    def get_story(self, corr: str) -> StoryRow | None:
        """The story, or None if there is no such story."""
        rows = self._read(f"SELECT {_STORY_COLS} FROM stories WHERE corr = ?", (corr,))
        return _story(rows[0]) if rows else None

    def set_status(self, corr: str, status: Status | str, *, error: str | None = None,
                   title: str | None = None) -> bool:
        """Move an unfinished story to `status` (and set error/title when given).

        Returns False for an unknown story or one already finished (finished is final).
        """
        status = Status(status)
        with self._write() as cur:
            cur.execute(
                "UPDATE stories SET status = ?, error = coalesce(?, error), "
                "title = coalesce(?, title), updated = ? "
                f"WHERE corr = ? AND status IN ({_placeholders(UNFINISHED)})",
                (status.value, error, title, self._clock(), corr, *UNFINISHED))
            return cur.rowcount == 1

    def list_stories(self, limit: int = 50,
                     statuses: Iterable[Status | str] | None = None) -> list[StoryRow]:
        """Stories newest first, optionally only those in `statuses`."""
        where, params = "", []
        if statuses is not None:
            wanted = [Status(s).value for s in statuses]
            if not wanted:
                return []
            where = f"WHERE status IN ({_placeholders(wanted)})"
            params = wanted
        rows = self._read(f"SELECT {_STORY_COLS} FROM stories {where} "
                          "ORDER BY created DESC, seq DESC LIMIT ?", (*params, limit))
        return [_story(r) for r in rows]

    # -- steps ------------------------------------------------------------------------------

    def mark_step_started(self, corr: str, kind: str, index: int) -> bool:
        """Record that a step began now (a retry after a takeover moves the time forward).

        Returns False for an unknown story or a step already saved (its times stay as they are).
        """
        kind = StepKind(kind).value
        now = self._clock()
        with self._write() as cur:
            if not self._exists(cur, corr):
                return False
            cur.execute(
                "INSERT INTO steps (corr, kind, idx, started) VALUES (?,?,?,?) "
                "ON CONFLICT (corr, kind, idx) DO UPDATE SET started = excluded.started "
                "WHERE finished IS NULL", (corr, kind, index, now))
            return cur.rowcount == 1

    def save_step(self, corr: str, kind: str, index: int, data: dict[str, Any],
                  blob: bytes | None = None) -> bool:
        """Save a step's result once; True if this call wrote it.

        A step already saved keeps its first data and blob; the call only counts an attempt
        and returns False. An unknown story returns False and stores nothing.
        """
        kind = StepKind(kind).value
        text = _dumps(data)
        now = self._clock()
        with self._write() as cur:
            if not self._exists(cur, corr):
                log.warning("journal: step %s %s for unknown story %s ignored", kind, index, corr)
                return False
            found = cur.execute("SELECT finished FROM steps WHERE corr = ? AND kind = ? AND "
                                "idx = ?", (corr, kind, index)).fetchone()
            if found is not None and found[0] is not None:
                cur.execute("UPDATE steps SET attempts = attempts + 1 WHERE corr = ? AND "
                            "kind = ? AND idx = ?", (corr, kind, index))
                return False
            cur.execute(
                "INSERT INTO steps (corr, kind, idx, data, blob, started, finished, attempts) "
                "VALUES (?,?,?,?,?,?,?,1) ON CONFLICT (corr, kind, idx) DO UPDATE SET "
                "data = excluded.data, blob = excluded.blob, finished = excluded.finished, "
                "attempts = attempts + 1", (corr, kind, index, text, blob, now, now))
            self._grow(cur, corr, _nbytes(text, blob), now)
            return True

    def get_step(self, corr: str, kind: str, index: int) -> StepRow | None:
        """The saved step, or None if it is not saved (unknown, or only started)."""
        rows = self._read(f"SELECT {_STEP_COLS} FROM steps WHERE corr = ? AND kind = ? AND "
                          "idx = ? AND finished IS NOT NULL", (corr, StepKind(kind).value, index))
        return _step(rows[0]) if rows else None

    def steps(self, corr: str, *, with_blobs: bool = True) -> list[StepRow]:
        """Every step of a story, started ones included, in the order they began."""
        cols = _STEP_COLS if with_blobs else _STEP_COLS.replace("blob", "NULL")
        rows = self._read(f"SELECT {cols} FROM steps WHERE corr = ? ORDER BY started, rowid",
                          (corr,))
        return [_step(r) for r in rows]

    # -- publications -----------------------------------------------------------------------

    def save_publication(self, corr: str, fmt: str, data: bytes) -> bool:
        """Store (or replace) one publication; False for an unknown story."""
        now = self._clock()
        with self._write() as cur:
            if not self._exists(cur, corr):
                return False
            old = cur.execute("SELECT length(data) FROM publications WHERE corr = ? AND fmt = ?",
                              (corr, fmt)).fetchone()
            cur.execute("INSERT OR REPLACE INTO publications (corr, fmt, data) VALUES (?,?,?)",
                        (corr, fmt, data))
            self._grow(cur, corr, len(data) - (old[0] if old else 0), now)
            return True

    def publications(self, corr: str) -> dict[str, bytes]:
        """Every publication of a story by format ({} if none or unknown)."""
        rows = self._read("SELECT fmt, data FROM publications WHERE corr = ? ORDER BY fmt",
                          (corr,))
        return {fmt: bytes(data) for fmt, data in rows}

    # -- history ----------------------------------------------------------------------------

    def record(self, corr: str, sender: str, receiver: str, message_type: str,
               request_id: str, time: float | None = None) -> bool:
        """Append one message to a story's history; False for an unknown story."""
        when = self._clock() if time is None else time
        with self._write() as cur:
            cur.execute(
                "INSERT INTO history (corr, sender, receiver, message_type, request_id, time) "
                "SELECT ?,?,?,?,?,? WHERE EXISTS (SELECT 1 FROM stories WHERE corr = ?)",
                (corr, sender, receiver, message_type, request_id, when, corr))
            return cur.rowcount == 1

    def history(self, corr: str) -> list[HistoryRow]:
        """A story's messages in the order they were recorded ([] if unknown)."""
        rows = self._read("SELECT sender, receiver, message_type, time, request_id FROM history "
                          "WHERE corr = ? ORDER BY seq", (corr,))
        return [HistoryRow(*r) for r in rows]

    # -- leases -----------------------------------------------------------------------------

    def acquire(self, corr: str, instance: str, ttl: float) -> bool:
        """Take or extend the lease if it is free, ours or expired; False otherwise."""
        now = self._clock()
        with self._write() as cur:
            cur.execute(
                "UPDATE stories SET lease_owner = ?, lease_expires = ? WHERE corr = ? AND "
                "(lease_owner IS NULL OR lease_owner = ? OR lease_expires <= ?)",
                (instance, now + ttl, corr, instance, now))
            return cur.rowcount == 1

    def renew(self, instance: str, ttl: float) -> int:
        """Extend every lease `instance` still holds; returns how many.

        A lease that expired but was not taken over is still held (no one else owns it).
        """
        with self._write() as cur:
            cur.execute("UPDATE stories SET lease_expires = ? WHERE lease_owner = ?",
                        (self._clock() + ttl, instance))
            return cur.rowcount

    def release(self, corr: str, instance: str) -> bool:
        """Give the lease up if `instance` holds it."""
        with self._write() as cur:
            cur.execute("UPDATE stories SET lease_owner = NULL, lease_expires = NULL "
                        "WHERE corr = ? AND lease_owner = ?", (corr, instance))
            return cur.rowcount == 1

    def lease_owner(self, corr: str) -> str | None:
        """Who holds a live (unexpired) lease on the story, or None."""
        rows = self._read("SELECT lease_owner FROM stories WHERE corr = ? AND "
                          "lease_expires > ?", (corr, self._clock()))
        return rows[0][0] if rows else None

    def claimable(self, instance: str, limit: int) -> list[str]:
        """Unfinished stories with a free or expired lease, oldest first.

        `instance` is the caller; a live lease it holds is not offered (it runs there).
        """
        rows = self._read(
            f"SELECT corr FROM stories WHERE status IN ({_placeholders(UNFINISHED)}) AND "
            "(lease_owner IS NULL OR lease_expires IS NULL OR lease_expires <= ?) "
            "ORDER BY created, seq LIMIT ?", (*UNFINISHED, self._clock(), limit))
        log.debug("journal: %s may claim %d stories", instance, len(rows))
        return [r[0] for r in rows]

    # -- retention --------------------------------------------------------------------------

    def total_bytes(self) -> int:
        """Stored bytes counted for retention: requests, step JSON, blobs, publications."""
        return int(self._read("SELECT coalesce(sum(size), 0) FROM stories")[0][0])

    def prune(self, max_age: float | None, max_bytes: int | None) -> int:
        """Delete finished stories past `max_age` seconds since their last update, then the
        oldest finished ones until the total is at most `max_bytes`. Unfinished stories are
        never deleted. Returns how many stories were removed."""
        removed = 0
        finished = [s.value for s in FINISHED]
        with self._write() as cur:
            if max_age is not None:
                cur.execute(f"DELETE FROM stories WHERE status IN ({_placeholders(finished)}) "
                            "AND updated < ?", (*finished, self._clock() - max_age))
                removed += cur.rowcount
            if max_bytes is not None:
                removed += self._prune_size(cur, max_bytes, finished)
        if removed:
            with self._lock:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            log.info("journal: pruned %d finished stories", removed)
        return removed

    def _prune_size(self, cur: sqlite3.Cursor, max_bytes: int, finished: list[str]) -> int:
        total = cur.execute("SELECT coalesce(sum(size), 0) FROM stories").fetchone()[0]
        if total <= max_bytes:
            return 0
        candidates = cur.execute(
            f"SELECT corr, size FROM stories WHERE status IN ({_placeholders(finished)}) "
            "ORDER BY updated, seq", finished).fetchall()
        removed = 0
        for corr, size in candidates:
            if total <= max_bytes:
                break
            cur.execute("DELETE FROM stories WHERE corr = ?", (corr,))
            total -= size
            removed += 1
        return removed

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _exists(cur: sqlite3.Cursor, corr: str) -> bool:
        return cur.execute("SELECT 1 FROM stories WHERE corr = ?", (corr,)).fetchone() is not None

    @staticmethod
    def _grow(cur: sqlite3.Cursor, corr: str, delta: int, now: float) -> None:
        """Keep the story's running size (for cheap retention) and its update time."""
        cur.execute("UPDATE stories SET size = size + ?, updated = ? WHERE corr = ?",
                    (delta, now, corr))
