"""System-test helpers: spawn real storymesh daemons, signal them, and wait, always bounded.

Every process is `python -m storymesh ...` started from the repository root with a clean
environment (no inherited STORYMESH_* variables, `--config /dev/null`), its stdout and
stderr in a log file under tmp_path, and it is killed (SIGKILL) at teardown if still
running. Heartbeats are short (HEARTBEAT x LIVENESS) so dead peers show up in well under a
second. A failed wait names what it waited for and shows the tail of every process's log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from storymesh.errors import RequestFailed, RequestTimeout
from storymesh.runtime.client import Client
from storymesh.settings import Settings

REPO = Path(__file__).resolve().parents[2]
HEARTBEAT = 0.2
LIVENESS = 4
START_TIMEOUT = 10.0  # a cold `python -m storymesh` start on a busy two-core machine
T = TypeVar("T")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the daemon binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


@dataclass
class Proc:
    """One spawned daemon and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(5.0)

    def wait(self, timeout: float) -> int:
        """The exit code, or an AssertionError with the log if it is still running."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} (pid {self.pid}) still running after "
                                 f"{timeout}s\n{self.tail()}") from None

    def tail(self, chars: int = 1500) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return f"--- {self.name} (pid {self.pid}) ---\n{text[-chars:]}"


@dataclass
class Spawner:
    """Starts storymesh processes and kills whatever is left of them at teardown."""

    tmp_path: Path
    procs: list[Proc] = field(default_factory=list)

    @staticmethod
    def env(extra: dict[str, str] | None = None) -> dict[str, str]:
        # nothing inherited may configure the daemons (nor make them talk to systemd)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("STORYMESH_", "NOTIFY_"))}
        env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                    # a worker that lost its broker retries at most every 0.5 s
                    "STORYMESH_RECONNECT_MAX": "0.5", "STORYMESH_DRAIN_GRACE": "5"})
        env.update(extra or {})
        return env

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        log = self.tmp_path / f"{name}-{len(self.procs)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen([sys.executable, "-m", "storymesh", *args], cwd=REPO,
                                     env=self.env(env), stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def broker(self, endpoint: str, *extra: str, env: dict[str, str] | None = None,
               wait: bool = True) -> Proc:
        """A broker daemon bound to `endpoint`; with `wait`, only once it answers MMI."""
        proc = self.spawn("broker", "broker", "--bind", endpoint, *self._common(), *extra,
                          env=env)
        if wait:
            self.wait_until(lambda: snapshot(endpoint) is not None, START_TIMEOUT,
                            f"broker on {endpoint} answering")
        return proc

    def echo(self, endpoint: str, *extra: str, env: dict[str, str] | None = None) -> Proc:
        """An echo agent daemon for the broker at `endpoint` (not waited for: see workers())."""
        return self.spawn("echo", "agent", "echo", "--broker", endpoint, *self._common(),
                          *extra, env=env)

    @staticmethod
    def _common() -> list[str]:
        return ["--heartbeat-interval", str(HEARTBEAT), "--liveness", str(LIVENESS),
                "--log-level", "warning", "--config", "/dev/null"]

    def cli(self, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """A one-shot `storymesh` command, its output captured."""
        return subprocess.run([sys.executable, "-m", "storymesh", *args], cwd=REPO,
                              env=self.env(), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def workers(self, endpoint: str, service: str, pids: list[int],
                timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Wait until exactly the agent processes `pids` are registered for `service`
        (told apart by the pid in their READY metadata); return that snapshot."""
        def registered() -> dict[str, Any] | None:
            snap = snapshot(endpoint)
            if snap is None:
                return None
            found = sorted(w["meta"].get("pid") for w in snap["workers"]
                           if w["service"] == service)
            return snap if found == sorted(pids) else None
        return self.wait_until(registered, timeout, f"{service} workers {pids} registered")

    def wait_until(self, probe: Callable[[], T | None], timeout: float, what: str,
                   interval: float = 0.05) -> T:
        """`probe()` until it returns something truthy, at most `timeout` seconds."""
        end = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() >= end:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n"
                                     + self.tails())
            time.sleep(interval)

    def tails(self) -> str:
        return "\n".join(p.tail() for p in self.procs)

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.kill()
            except subprocess.TimeoutExpired:
                pass  # nothing more we can do; the OS reaps it with the test runner


def client(endpoint: str, *, timeout: float = 5.0, retries: int = 1) -> Client:
    """An in-process storymesh client (own context) for a spawned broker."""
    return Client(endpoint, settings=Settings(), timeout=timeout, retries=retries)


def snapshot(endpoint: str, timeout: float = 0.5) -> dict[str, Any] | None:
    """The broker's `mmi.storymesh.snapshot`, or None when it does not answer in time."""
    with client(endpoint, timeout=timeout) as c:
        try:
            return c.snapshot()
        except (RequestTimeout, RequestFailed):
            return None


@pytest.fixture
def spawner(tmp_path: Path) -> Iterator[Spawner]:
    s = Spawner(tmp_path)
    yield s
    s.close()


@pytest.fixture
def endpoint() -> str:
    return free_endpoint()
