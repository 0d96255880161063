"""The story journal: the story service's durable memory, behind one interface with two
backends: a SQLite file (WAL) on one host, the embedded default (`journal_sqlite`), and a
PostgreSQL database that story services on several boxes share (`journal_pg`).

It owns everything a restarted story service needs to resume a story from its last finished
step without computing a finished chapter or picture twice: the request, the status, each
step's result (outline, chapters, pictures, cover), the publications, the message history,
and the lease that says which story-service instance runs a story right now.

Rules the rest of the story service can rely on, whichever the backend:

- Several `Journal` objects (threads, processes, or services on other boxes for PostgreSQL)
  may share one store. Every write is one transaction; writers of one story queue on each
  other (SQLite's write lock, PostgreSQL's lock on the story's row) instead of failing.
- Steps are write-once: the first `save_step` for (corr, kind, index) wins, later ones only
  bump `StepRow.attempts` and return False. Step kinds are `outline` (index 0), `chapter`
  (index n), `picture` (index n, the picture of chapter n) and `cover` (index 0): the cover
  is its own kind, so chapter numbering is the caller's choice (0- or 1-based).
- Finished statuses (complete, failed, cancelled) are sticky: `set_status` on a finished
  story changes nothing and returns False, so a late "complete" cannot undo a cancel.
- A lease is taken with one conditional UPDATE (free, ours, or expired), so of two services
  racing for an expired lease exactly one wins.
- A store that cannot be reached raises JournalUnavailable, whichever the call.
- Unknown story ids never raise: reads return None / [] / {}, writes return False (or 0).
  Misuse by our own code (an unknown step kind or status) raises ValueError; data that is
  not JSON-serialisable raises TypeError from `json`. Binary data goes in `blob`.
- Times are wall-clock seconds from the injected `clock` (they are shared between processes
  and boxes through the store, so the boxes' clocks must agree to well within `lease_ttl`);
  tests pass a fake clock.
- Lease ids should be unique per process run (e.g. host-pid-random): a live lease held by an
  instance is never offered by `claimable`, so a restart that reused its id would wait for
  its own leases to expire.
- The schema is created on first use and carries a version number; a store written by a
  newer storymesh is refused with a ConfigError.

`open_journal(target)` picks the backend from the `journal` setting: a `postgresql://` (or
`postgres://`) URL, or a file path; any other `scheme://` is a configuration error.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Protocol, Self

from storymesh.core.schema import Status
from storymesh.errors import ConfigError, StorymeshError
from storymesh.settings import JOURNAL_SCHEMES, journal_scheme

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
DEFAULT_LEASE_TTL: Final = 30.0

UNFINISHED: Final = (Status.ACCEPTED, Status.RUNNING)
FINISHED: Final = (Status.COMPLETE, Status.FAILED, Status.CANCELLED)


# The tables, in the SQL both backends speak; each fills in its own column types.
SCHEMA_TEMPLATE: Final = """
CREATE TABLE IF NOT EXISTS stories (
    seq           {id_key},
    corr          TEXT NOT NULL UNIQUE,
    status        TEXT NOT NULL,
    request       TEXT NOT NULL,
    title         TEXT,
    error         TEXT,
    principal     TEXT,
    lease_owner   TEXT,
    lease_expires {real},
    created       {real} NOT NULL,
    updated       {real} NOT NULL,
    size          {bigint} NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS stories_status ON stories (status, created);
CREATE INDEX IF NOT EXISTS stories_lease ON stories (lease_owner);
CREATE TABLE IF NOT EXISTS steps ({step_seq}
    corr     TEXT NOT NULL REFERENCES stories (corr) ON DELETE CASCADE,
    kind     TEXT NOT NULL,
    idx      INTEGER NOT NULL,
    data     TEXT,
    blob     {blob},
    started  {real} NOT NULL,
    finished {real},
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (corr, kind, idx)
);
CREATE TABLE IF NOT EXISTS publications (
    corr TEXT NOT NULL REFERENCES stories (corr) ON DELETE CASCADE,
    fmt  TEXT NOT NULL,
    data {blob} NOT NULL,
    PRIMARY KEY (corr, fmt)
);
CREATE TABLE IF NOT EXISTS history (
    seq          {id_key},
    corr         TEXT NOT NULL REFERENCES stories (corr) ON DELETE CASCADE,
    sender       TEXT NOT NULL,
    receiver     TEXT NOT NULL,
    message_type TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    time         {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS history_corr ON history (corr, seq)
"""



class JournalUnavailable(StorymeshError):
    """The journal cannot be reached right now (the database is down or cut off, or locked
    past the busy timeout); the caller leaves its work to the lease and tries later."""


class StepKind(StrEnum):
    """What a journalled step holds."""

    OUTLINE = "outline"
    CHAPTER = "chapter"
    PICTURE = "picture"
    COVER = "cover"


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


class Cursor(Protocol):
    """The slice of a DB-API cursor the shared SQL uses (`?` placeholders)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


class Journal(ABC):
    """The story journal; a backend gives it transactions, reads and its schema.

    The statements below are the same on both backends (`?` placeholders, `ON CONFLICT`
    upserts); what differs is how a write transaction is taken and how a story's row is
    locked inside it (`_LOCK_ROW`).
    """

    _LOCK_ROW: str = ""  # appended to the existence check: PostgreSQL locks the story's row
    _STEP_ORDER: str = "started"  # ties between equal start times, in insertion order

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    @property
    @abstractmethod
    def target(self) -> str:
        """Where the journal lives, fit for a log line (no password)."""

    @abstractmethod
    def _write(self) -> AbstractContextManager[Cursor]:
        """One write transaction; rolled back if the block raises."""

    @abstractmethod
    def _read(self, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        """One read, committed data only."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    def _after_prune(self) -> None:  # noqa: B027 - a hook; most backends need nothing
        """Give freed space back (SQLite checkpoints its WAL); nothing by default."""

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
                "INSERT INTO stories (corr, status, request, principal, lease_owner, "
                "lease_expires, created, updated, size) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (corr) DO NOTHING",
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
                "WHERE steps.finished IS NULL", (corr, kind, index, now))
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
            # Only an unfinished row is overwritten; a finished one keeps its first result,
            # which is what makes a step write-once under concurrent savers.
            cur.execute(
                "INSERT INTO steps (corr, kind, idx, data, blob, started, finished, attempts) "
                "VALUES (?,?,?,?,?,?,?,1) ON CONFLICT (corr, kind, idx) DO UPDATE SET "
                "data = excluded.data, blob = excluded.blob, finished = excluded.finished, "
                "attempts = steps.attempts + 1 WHERE steps.finished IS NULL",
                (corr, kind, index, text, blob, now, now))
            if cur.rowcount != 1:
                cur.execute("UPDATE steps SET attempts = attempts + 1 WHERE corr = ? AND "
                            "kind = ? AND idx = ?", (corr, kind, index))
                return False
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
        rows = self._read(f"SELECT {cols} FROM steps WHERE corr = ? "
                          f"ORDER BY {self._STEP_ORDER}", (corr,))
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
            cur.execute("INSERT INTO publications (corr, fmt, data) VALUES (?,?,?) "
                        "ON CONFLICT (corr, fmt) DO UPDATE SET data = excluded.data",
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

    def count_by_status(self) -> dict[str, int]:
        """How many stories are in each status (statuses without one are absent)."""
        rows = self._read("SELECT status, count(*) FROM stories GROUP BY status")
        return {str(status): int(count) for status, count in rows}

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
            self._after_prune()
            log.info("journal: pruned %d finished stories", removed)
        return removed

    def _prune_size(self, cur: Cursor, max_bytes: int, finished: list[str]) -> int:
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

    def _exists(self, cur: Cursor, corr: str) -> bool:
        """Whether the story exists; on PostgreSQL also locks its row to the transaction's
        end, so the writers of one story take turns."""
        found = cur.execute(f"SELECT 1 FROM stories WHERE corr = ?{self._LOCK_ROW}", (corr,))
        return found.fetchone() is not None

    @staticmethod
    def _grow(cur: Cursor, corr: str, delta: int, now: float) -> None:
        """Keep the story's running size (for cheap retention) and its update time."""
        cur.execute("UPDATE stories SET size = size + ?, updated = ? WHERE corr = ?",
                    (delta, now, corr))


def open_journal(target: str | Path, *, clock: Callable[[], float] = time.time) -> Journal:
    """The journal named by the `journal` setting: a PostgreSQL URL or a SQLite file path.

    Any other `scheme://` is a ConfigError naming the key, never a file of that name.
    """
    text = str(target)
    scheme = journal_scheme(text)
    if scheme in JOURNAL_SCHEMES:
        from storymesh.story.journal_pg import PostgresJournal  # psycopg: the postgres extra
        return PostgresJournal(text, clock=clock)
    if scheme is not None:
        raise ConfigError(f"journal = {text!r}: unknown scheme {scheme}://; use a file path "
                          "for SQLite or a postgresql://USER@HOST/DB URL")
    from storymesh.story.journal_sqlite import SqliteJournal
    return SqliteJournal(Path(text).expanduser(), clock=clock)
