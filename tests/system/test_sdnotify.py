"""sd_notify from real daemons: a broker and an echo agent spawned with `NOTIFY_SOCKET` pointing
at a datagram socket this test reads, as systemd would for `Type=notify` units.

READY=1 once serving, WATCHDOG=1 while the loop (and, for an agent, its broker link) lives,
STOPPING=1 on SIGTERM, and the agent's watchdog goes quiet while its broker is gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storymesh.plumbing.sdnotify import Notifier

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
WATCHDOG_USEC = 200_000  # systemd would ask for a ping every 0.1 s


class NotifySocket:
    """The systemd side: an AF_UNIX datagram socket read all the time by a thread, as
    systemd reads it (a daemon's notices are dropped, not queued, when nobody reads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.seen: list[str] = []
        self._cond = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            with self._cond:
                self.seen.extend(data.decode().splitlines())
                self._cond.notify_all()

    def wait_for(self, line: str, timeout: float = 15.0) -> list[str]:
        """Wait until a datagram holds `line`; returns all lines seen so far."""
        with self._cond:
            if not self._cond.wait_for(lambda: line in self.seen, timeout):
                raise AssertionError(f"no {line!r} within {timeout}s; got {self.seen[-10:]}")
            return list(self.seen)

    def drain(self, seconds: float) -> list[str]:
        """The lines that arrive within the next `seconds`."""
        with self._cond:
            start = len(self.seen)
        time.sleep(seconds)
        with self._cond:
            return self.seen[start:]

    def close(self) -> None:
        self._closed = True
        self._reader.join(2)
        self.sock.close()


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes: pytest's tmp_path can be longer
    path = Path(tempfile.mkdtemp(prefix="smn-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def spawn(args: list[str], notify: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORYMESH_", "NOTIFY_"))}
    env.update(NOTIFY_SOCKET=str(notify), WATCHDOG_USEC=str(WATCHDOG_USEC), HF_HUB_OFFLINE="1",
               PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "storymesh", *args, "--config", "/dev/null",
                             "--heartbeat-interval", "0.1", "--liveness", "4"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_broker_and_agent_send_ready_watchdog_and_stopping(sockdir: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    broker_sock, agent_sock = NotifySocket(sockdir / "b"), NotifySocket(sockdir / "a")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # Given a broker started as systemd would start a Type=notify unit
        broker = spawn(["broker", "--bind", endpoint], broker_sock.path)
        procs.append(broker)
        # Then it says READY (with a STATUS line) and feeds the watchdog
        seen = broker_sock.wait_for("READY=1")
        assert any(line.startswith("STATUS=broker on tcp://127.0.0.1:") for line in seen)
        broker_sock.wait_for("WATCHDOG=1")

        # Given an agent connected to it
        agent = spawn(["agent", "echo", "--broker", endpoint], agent_sock.path)
        procs.append(agent)
        # Then it says READY once its slots sent READY, and feeds the watchdog
        seen = agent_sock.wait_for("READY=1")
        assert "STATUS=echo: 1 slot(s) on " + endpoint in seen
        agent_sock.wait_for("WATCHDOG=1")
        pings = agent_sock.drain(1.0).count("WATCHDOG=1")
        assert 3 <= pings <= 15  # rate-limited to half of WATCHDOG_USEC, not once per turn

        # When the broker stops on SIGTERM
        assert stop(broker) == 0
        # Then it said STOPPING before exiting
        broker_sock.wait_for("STOPPING=1")
        # And the agent, cut off from its broker, stops feeding the watchdog
        agent_sock.drain(1.0)  # pings from before it noticed (liveness is 0.4 s)
        assert "WATCHDOG=1" not in agent_sock.drain(1.0)

        # When the agent gets SIGTERM
        assert stop(agent) == 0
        # Then it said STOPPING
        agent_sock.wait_for("STOPPING=1")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        broker_sock.close()
        agent_sock.close()


def test_agent_watchdog_resumes_when_the_broker_returns(sockdir: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    broker_sock, agent_sock = NotifySocket(sockdir / "b"), NotifySocket(sockdir / "a")
    # (named as systemd's storymesh-agent@echo-gpu1.service would run it)
    agent = spawn(["agent", "echo-gpu1", "--broker", endpoint], agent_sock.path)
    broker = None
    try:
        # Given an agent whose broker is not there
        agent_sock.wait_for("READY=1")  # its sockets are up and its model loaded
        agent_sock.drain(1.0)
        assert "WATCHDOG=1" not in agent_sock.drain(0.8)
        # When the broker comes up
        broker = spawn(["broker", "--bind", endpoint], broker_sock.path)
        # Then the agent's watchdog pings resume
        agent_sock.wait_for("WATCHDOG=1")
    finally:
        for proc in (agent, broker):
            if proc is not None and proc.poll() is None:
                stop(proc)
        broker_sock.close()
        agent_sock.close()


def test_notifier_is_a_no_op_without_notify_socket() -> None:
    n = Notifier(env={})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog() is False
    assert n.stopping() is False


def test_notifier_abstract_socket_and_watchdog_rate(sockdir: Path) -> None:
    # Given systemd's abstract-namespace address and a 1 s watchdog
    name = f"storymesh-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(2)
    now = [100.0]
    n = Notifier(env={"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000"},
                 clock=lambda: now[0])
    try:
        # Then pings go out at most every half interval
        assert n.watchdog() is True
        now[0] += 0.2
        assert n.watchdog() is False
        now[0] += 0.4
        assert n.watchdog() is True
        assert n.status("loading model") is True
        got = [server.recv(100) for _ in range(3)]
        assert got == [b"WATCHDOG=1", b"WATCHDOG=1", b"STATUS=loading model"]
    finally:
        n.close()
        server.close()
