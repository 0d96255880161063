"""A throwaway PostgreSQL cluster for tests: `initdb` in a fresh folder, a server on a free
loopback port, databases made and dropped on demand, everything removed at the end.

The server comes from the Debian package `postgresql` (`make sysdeps`); its binaries live in
`/usr/lib/postgresql/VERSION/bin`, off the PATH. `initdb` refuses to run as root and CI runs
as root, so as root the cluster belongs to the `postgres` user (the package makes it): the
folder comes from `tempfile.mkdtemp` (pytest's tmp_path is not reachable for that user) and is
handed to it, and `initdb` and `pg_ctl` run through `runuser -u postgres`. As anyone else they
run as the current user.

`with PostgresCluster() as pg: url = pg.create_database()` gives a libpq URL a journal opens.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from testkit.mesh import free_port

SERVICE_USER: Final = "postgres"  # who owns the cluster when the tests run as root
SUPERUSER: Final = "storymesh"  # the cluster's superuser role, trusted on loopback
START_TIMEOUT_S: Final = 60


class PostgresMissing(RuntimeError):
    """PostgreSQL's server binaries are not installed here."""


def find_bindir() -> Path:
    """The newest `/usr/lib/postgresql/VERSION/bin` holding initdb, or `pg_config --bindir`."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for folder in reversed(candidates):
        if (folder / "initdb").exists():
            return folder
    pg_config = shutil.which("pg_config")
    if pg_config:
        folder = Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                     check=False).stdout.strip())
        if (folder / "initdb").exists():
            return folder
    raise PostgresMissing("PostgreSQL server binaries (initdb, pg_ctl) not found in "
                          "/usr/lib/postgresql/*/bin: run `make sysdeps` (it installs the "
                          "Debian package postgresql)")


class PostgresCluster:
    """One throwaway cluster; `start()` / `stop()` or use it as a context manager."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.as_root = os.geteuid() == 0
        self.port = 0
        self.folder: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        self.folder = Path(tempfile.mkdtemp(prefix="storymesh-pg-"))
        if self.as_root:
            user = pwd.getpwnam(SERVICE_USER)
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        data = self.folder / "data"
        self._run("initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        self.port = free_port()
        # A throwaway cluster: no fsync, sockets in its own folder (not /var/run/postgresql).
        options = (f"-p {self.port} -h 127.0.0.1 -k {self.folder} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(data), "-l", str(self.folder / "server.log"), "-w",
                  "-t", str(START_TIMEOUT_S), "-o", options, "start")
        return self

    def stop(self) -> None:
        if self.folder is None:
            return
        data = self.folder / "data"
        if (data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- databases ---------------------------------------------------------------------------

    def url(self, database: str = "postgres", port: int | None = None) -> str:
        """A libpq URL for `database` (through `port`, a relay say, when given)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{port or self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of `url`, closing whatever connections are still on it."""
        name = url.rsplit("/", 1)[1]
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def sql(self, statement: str) -> None:
        """Run one statement in the `postgres` database (autocommit: CREATE DATABASE)."""
        import psycopg  # the postgres extra; imported here so the module loads without it

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(statement.encode())

    def log(self) -> str:
        """The server's log so far, for a failing test's report."""
        path = self.folder / "server.log" if self.folder else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    # -- helpers -----------------------------------------------------------------------------

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        argv: Sequence[str] = [str(self.bindir / tool), *args]
        if self.as_root:
            argv = ["runuser", "-u", SERVICE_USER, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              cwd=self.folder, timeout=START_TIMEOUT_S + 30)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()}\n"
                               f"{self.log()[-2000:]}")
