"""`storymesh health` against spawned daemons: exit 0 healthy, 1 degraded (an expected service
has no worker), 2 down (the broker does not answer), each with one line of reason.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
TIMING = ["--config", "/dev/null", "--heartbeat-interval", "0.1", "--liveness", "4"]


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STORYMESH_", "NOTIFY_"))}
    return {**clean, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def storymesh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "storymesh", *args], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=60, check=False)


def daemon(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "storymesh", *args, *TIMING], cwd=ROOT,
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def mesh(endpoint: str) -> Iterator[subprocess.Popen[bytes]]:
    """A broker and one echo agent, as separate processes; yields the broker."""
    broker = daemon("broker", "--bind", endpoint)
    agent = daemon("agent", "echo", "--broker", endpoint)
    yield broker
    for proc in (agent, broker):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_served(endpoint: str, service: str, timeout: float = 20.0) -> None:
    """Wait (in-process, cheaply) until the broker has a worker for `service`."""
    from storymesh.runtime.client import Client

    end = time.monotonic() + timeout
    with Client(endpoint, timeout=0.5, retries=1) as client:
        while not client.service_available(service):
            assert time.monotonic() < end, f"{service} never registered"
            time.sleep(0.1)


def test_health_healthy_degraded_and_down(mesh: subprocess.Popen[bytes], endpoint: str) -> None:
    # Given a broker with an echo agent
    # When health asks for the service the deployment expects
    wait_served(endpoint, "echo")
    result = storymesh("health", "--broker", endpoint, "--service", "echo")
    # Then it is healthy, in one line
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"healthy: broker {endpoint} answers (echo served)"]

    # When health also expects a service nobody serves
    result = storymesh("health", "--broker", endpoint, "--service", "echo",
                       "--service", "story.illustrator")
    # Then it is degraded and names the missing service
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["degraded: no workers for story.illustrator"]

    # When only the broker is asked about
    result = storymesh("health", "--broker", endpoint)
    assert result.returncode == 0
    assert result.stdout.startswith("healthy: broker")

    # When the broker is gone
    mesh.send_signal(signal.SIGKILL)
    mesh.wait(5)
    result = storymesh("health", "--broker", endpoint, "--service", "echo", "--timeout", "0.5")
    # Then it is down
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        f"down: broker {endpoint} did not answer within 0.5 s"]


def test_health_rejects_a_bad_timeout(endpoint: str) -> None:
    result = storymesh("health", "--broker", endpoint, "--timeout", "0")
    assert result.returncode == 2
    assert "--timeout" in result.stderr
