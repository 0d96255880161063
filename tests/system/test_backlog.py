"""A client that pipelines big requests and never reads its replies cannot make the broker
hold more than `client_backlog_bytes`, and other clients keep being served."""

from __future__ import annotations

import time
from typing import Any

import pytest
import zmq

from storymesh.core import envelope, mdp
from testkit.mesh import Spawner

from .conftest import client

pytestmark = [pytest.mark.timeout(240)]

MIB = 1024 * 1024
REQUESTS = 2_500
BACKLOG = 256 * MIB   # client_backlog_bytes, the default
SLACK = 150 * 1000 * 1000


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_a_client_that_never_reads_is_bounded_and_others_are_served(
        spawner: Spawner, endpoint: str) -> None:
    # Given a broker with an echo worker
    broker = spawner.broker(endpoint)
    echo = spawner.echo(endpoint)
    spawner.workers(endpoint, "echo", [echo.pid])
    context: zmq.Context[Any] = zmq.Context()
    flood = context.socket(zmq.DEALER)
    flood.setsockopt(zmq.SNDHWM, 20)  # the test process holds little of its own flood
    flood.setsockopt(zmq.RCVHWM, 10)  # and takes in little: it never reads
    flood.setsockopt(zmq.LINGER, 0)
    flood.connect(endpoint)
    payload = b"\x5a" * MIB
    peak = 0
    try:
        # When one client pipelines 2,500 requests of 1 MiB and never reads a reply
        end = time.monotonic() + 150
        for i in range(REQUESTS):
            body = envelope.pack(envelope.make_header(f"flood-{i}"), {"data": payload})
            frames = mdp.encode(mdp.ClientRequest(b"echo", tuple(body)))
            while True:
                try:
                    flood.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                    break
                except zmq.Again:
                    assert time.monotonic() < end, f"broker stopped taking requests at {i}"
                    time.sleep(0.005)
            if i % 25 == 0:
                peak = max(peak, rss_bytes(broker.pid))
        settle = time.monotonic() + 5
        while time.monotonic() < settle:
            peak = max(peak, rss_bytes(broker.pid))
            time.sleep(0.1)
        # Then another client is still served, within a bounded time
        other = client(endpoint, timeout=10.0)
        try:
            assert other.call("echo", {"text": "still here"}).payload["text"] == "still here"
        finally:
            other.close()
        peak = max(peak, rss_bytes(broker.pid))
        # And the broker never held more than client_backlog_bytes + 150 MB
        assert peak < BACKLOG + SLACK, f"broker RSS peaked at {peak / MIB:.0f} MiB"
        # And what it could not take or deliver was answered `busy` or counted, not lost
        snap = spawner.wait_until(lambda: _snapshot(endpoint), 10, "a snapshot")
        counters = snap["counters"]
        assert counters["busy"] > 0
        assert broker.alive()
    finally:
        flood.close(0)
        context.term()


def _snapshot(endpoint: str) -> dict[str, Any] | None:
    other = client(endpoint, timeout=5.0)
    try:
        return other.snapshot()
    finally:
        other.close()
