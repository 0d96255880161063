"""The story journal in one SQLite file (WAL): the embedded default, one host.

Several `SqliteJournal` objects (threads, or processes on one host) may share one file.
Every write runs in its own `BEGIN IMMEDIATE` transaction, so writers queue on SQLite's busy
timeout instead of failing with "database is locked". The schema version is the file's
`PRAGMA user_version`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from storymesh.errors import ConfigError
from storymesh.story.journal import (
    SCHEMA_TEMPLATE,
    SCHEMA_VERSION,
    Journal,
    JournalUnavailable,
)

BUSY_TIMEOUT_S: Final = 5.0

# steps keep SQLite's implicit rowid as their order
_SCHEMA: Final = SCHEMA_TEMPLATE.format(
    id_key="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL", bigint="INTEGER", blob="BLOB",
    step_seq="") + ";"


class SqliteJournal(Journal):
    """The story journal over one SQLite file; one connection, safe to share across threads."""

    _STEP_ORDER = "started, rowid"

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.path = Path(path)
        self._lock = threading.Lock()
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                     check_same_thread=False)
        self._configure()
        self._migrate()

    @property
    def target(self) -> str:
        return str(self.path)

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
            try:
                cur.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # locked past the busy timeout
                raise JournalUnavailable(f"journal {self.path}: {exc}") from exc
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _read(self, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def _after_prune(self) -> None:
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        """Close the connection; the last one to close checkpoints the WAL into the file."""
        with self._lock:
            self._conn.close()
