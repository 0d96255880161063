"""Load sharing through the real broker: LRU dispatch across echo workers, pipelined clients.

Four echo workers run in threads on the real worker runtime (`run_agent`), the broker is a
real BrokerServer thread, and the clients are storymesh Clients pipelining on one DEALER
each. Transports: ipc:// in tmp_path and tcp://127.0.0.1. Per-worker figures come from
`mmi.storymesh.snapshot`. Heartbeat 0.1 s x 10; every wait is bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq

from storymesh.agents.echo import EchoAgent
from storymesh.broker.server import BrokerServer
from storymesh.runtime.client import Client
from storymesh.runtime.worker import run_agent
from storymesh.settings import Settings
from tests.conftest import fast_settings

WORKERS = 4
WAIT = 5.0


@dataclass
class Mesh:
    """A broker thread and echo worker threads sharing one zmq context."""

    settings: Settings
    context: zmq.Context[Any]
    server: BrokerServer
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def add_echo_workers(self, count: int) -> None:
        for _ in range(count):
            ready = threading.Event()
            thread = threading.Thread(target=run_agent, args=(EchoAgent(), self.settings),
                                      kwargs={"stop": self.stop, "ready": ready,
                                              "context": self.context}, daemon=True)
            thread.start()
            self.threads.append(thread)
            assert ready.wait(WAIT)
        self.wait_workers(count)

    def client(self, **options: Any) -> Client:
        return Client(self.settings.broker, settings=self.settings, context=self.context,
                      **options)

    def snapshot(self) -> dict[str, Any]:
        with self.client(timeout=WAIT, retries=1) as client:
            return client.snapshot()

    def wait_workers(self, count: int) -> None:
        end = time.monotonic() + WAIT
        while (snap := self.snapshot())["services"].get("echo", {}).get("workers") != count:
            assert time.monotonic() < end, f"never {count} echo workers: {snap['services']}"
            time.sleep(0.02)

    def served(self) -> list[int]:
        """Requests served per registered echo worker connection."""
        return sorted(w["served"] for w in self.snapshot()["workers"] if w["service"] == "echo")


@pytest.fixture(params=["ipc", "tcp"])
def mesh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mesh]:
    endpoint = f"ipc://{tmp_path}/broker.sock" if request.param == "ipc" else "tcp://127.0.0.1:0"
    ctx: zmq.Context[Any] = zmq.Context()
    # liveness 10 x 0.1 s: a busy two-core machine must not expire a worker mid-count
    server = BrokerServer(fast_settings(bind=endpoint, liveness=10), context=ctx)
    server.start()
    m = Mesh(fast_settings(bind=endpoint, broker=server.endpoint, liveness=10), ctx, server)
    yield m
    m.stop.set()
    for thread in m.threads:
        thread.join(WAIT)
    server.stop()
    ctx.destroy(linger=0)


def test_pipelined_requests_are_all_matched_and_shared_fairly(mesh: Mesh) -> None:
    # Given four echo workers behind the broker
    mesh.add_echo_workers(WORKERS)
    total = 200
    with mesh.client(timeout=WAIT, retries=1) as client:
        # When one client has 200 requests of 10 ms each in flight at once
        rids = {client.send("echo", {"n": n, "sleep": 0.01}): n for n in range(total)}
        assert len(rids) == total
        # Then every request gets its own FINAL, matched by id
        for rid, n in rids.items():
            env = client.result(rid)
            assert (env.id, env.ok, env.payload) == (rid, True, {"n": n, "sleep": 0.01})
    # And the work was spread: every worker served at least 10%, and nothing twice
    served = mesh.served()
    assert len(served) == WORKERS and sum(served) == total, served
    assert min(served) >= total // 10, served
    assert mesh.snapshot()["services"]["echo"]["served"] == total


def test_sequential_requests_go_round_robin_to_the_least_recently_used_worker(
        mesh: Mesh) -> None:
    # Given four idle echo workers
    mesh.add_echo_workers(WORKERS)
    # When twelve requests are sent one after another, each after the previous FINAL
    with mesh.client(timeout=WAIT, retries=1) as client:
        for n in range(12):
            assert client.call("echo", {"n": n}).payload == {"n": n}
    # Then LRU dispatch gave each worker exactly three
    assert mesh.served() == [3, 3, 3, 3]


def test_concurrent_pipelining_clients_each_get_only_their_own_replies(mesh: Mesh) -> None:
    # Given four echo workers and three clients, each in its own thread with its own socket
    mesh.add_echo_workers(WORKERS)
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            with mesh.client(timeout=WAIT, retries=1) as client:
                # When each pipelines 60 requests tagged with its own number
                rids = [client.send("echo", {"client": k, "n": n}) for n in range(60)]
                got = [client.result(rid).payload for rid in rids]
            assert all(p["client"] == k for p in got), "a reply crossed to another client"
            results[k] = [p["n"] for p in got]
        except BaseException as exc:  # noqa: BLE001  (re-raised in the test thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    # Then every client got all of its own replies, in request order, and nothing else
    assert not errors, errors
    assert results == {k: list(range(60)) for k in range(3)}
    assert sum(mesh.served()) == 180
