"""The story journal in PostgreSQL: one database shared by story services on several boxes.

`journal = "postgresql://USER@HOST/DB"` (any libpq URL or its `postgres://` spelling;
passwords, TLS and the rest as libpq takes them, also from PGPASSWORD or ~/.pgpass). Needs the
`postgres` extra (psycopg 3).

How the shared rules hold across boxes:

- Each write is one transaction (READ COMMITTED). A write that touches a story first locks
  the story's row (`SELECT ... FOR UPDATE`), so the writers of one story take turns, as they
  do behind SQLite's single write lock; stories do not wait on each other.
- A step is write-once through `INSERT ... ON CONFLICT DO UPDATE ... WHERE finished IS NULL`:
  of two services saving the same step, exactly one writes it.
- A lease is taken by one conditional UPDATE; PostgreSQL re-checks its WHERE on the row's
  newest version after waiting for a concurrent taker, so exactly one of two wins.
- The schema is created on first use under a transaction-level advisory lock (services that
  start together do not race on CREATE TABLE); its version is the one row of
  `schema_version`, for later migrations.

One connection per journal, shared by the service's threads under a lock (the journal's
statements are short). A connection the server dropped (a restart, a fail-over) is replaced
on the next call; the call that saw it break raises, as any journal error does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from storymesh.errors import ConfigError
from storymesh.story.journal import (
    SCHEMA_TEMPLATE,
    SCHEMA_VERSION,
    Journal,
    JournalUnavailable,
)

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigError("journal: a postgresql:// journal needs psycopg; "
                      "pip install 'storymesh[postgres]'") from exc

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10
# Any constant works: it names the lock the services take while creating the schema.
_MIGRATION_LOCK: Final = 0x73746F7279  # "story"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);""" + SCHEMA_TEMPLATE.format(
    id_key="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", real="DOUBLE PRECISION",
    bigint="BIGINT", blob="BYTEA", step_seq="\n    seq      BIGINT GENERATED ALWAYS AS IDENTITY,")


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    params.pop("password", None)
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


class _Cursor:
    """A psycopg cursor that takes the shared SQL's `?` placeholders (psycopg wants `%s`)."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> _Cursor:
        # The journal's SQL has no literal '?' or '%', so the swap is exact.
        self._cur.execute(sql.replace("?", "%s"), params)
        return self

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()


class PostgresJournal(Journal):
    """The story journal in a PostgreSQL database; safe to share across threads."""

    _LOCK_ROW = " FOR UPDATE"
    _STEP_ORDER = "started, seq"

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.url = url
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        with self._lock:
            self._connection()
        self._migrate()

    @property
    def target(self) -> str:
        return redact(self.url)

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection, reconnecting if the server dropped the last one."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        if self._conn is not None:
            log.warning("journal: connection to %s lost; reconnecting", self.target)
            self._conn.close()
        try:
            self._conn = psycopg.connect(self.url, autocommit=True,
                                         connect_timeout=CONNECT_TIMEOUT_S,
                                         application_name="storymesh-story")
        except psycopg.ProgrammingError as exc:  # a malformed URL: the operator's to fix
            raise ConfigError(f"journal {self.target}: {exc}") from exc
        return self._conn

    def _migrate(self) -> None:
        with self._write() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            found = cur.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
            version = 0
            if found[0]:
                row = cur.execute("SELECT max(version) FROM schema_version").fetchone()
                version = row[0] or 0
            if version > SCHEMA_VERSION:
                raise ConfigError(f"journal {self.target} has schema version {version}, newer "
                                  f"than this storymesh ({SCHEMA_VERSION}); upgrade storymesh")
            if version < SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    cur.execute(statement)
                cur.execute("DELETE FROM schema_version")
                cur.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                log.info("journal: schema version %d created in %s", SCHEMA_VERSION, self.target)

    @contextmanager
    def _write(self) -> Iterator[_Cursor]:
        with self._lock, self._reachable():
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                yield _Cursor(cur)

    def _read(self, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._reachable():
            conn = self._connection()
            with conn.cursor() as cur:
                return _Cursor(cur).execute(sql, tuple(params)).fetchall()

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """Connection trouble (and deadlocks, which psycopg files with it) as the journal's
        JournalUnavailable; the next call reconnects."""
        try:
            yield
        except psycopg.OperationalError as exc:
            raise JournalUnavailable(f"journal {self.target}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
