"""Load sharing through the real broker: LRU dispatch across echo workers, pipelined clients.

Four echo workers run in threads on the real worker runtime (`run_agent`), the broker is a
real BrokerServer thread, and the clients are storymesh Clients pipelining on one DEALER
each. Transports: ipc:// in tmp_path and tcp://127.0.0.1. Per-worker figures come from
`mmi.storymesh.snapshot`. Heartbeat 0.1 s x 10; every wait is bounded (testkit.mesh).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.mesh import WAIT, Mesh

WORKERS = 4


@pytest.fixture(params=["ipc", "tcp"])
def mesh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mesh]:
    endpoint = f"ipc://{tmp_path}/broker.sock" if request.param == "ipc" else "tcp://127.0.0.1:0"
    # liveness 10 x 0.1 s: a busy two-core machine must not expire a worker mid-count
    with Mesh(endpoint, liveness=10) as m:
        yield m


def add_echo_workers(mesh: Mesh, count: int) -> None:
    mesh.add_echo(count=count)
    mesh.wait_workers("echo", count)


def test_pipelined_requests_are_all_matched_and_shared_fairly(mesh: Mesh) -> None:
    # Given four echo workers behind the broker
    add_echo_workers(mesh, WORKERS)
    total = 200
    with mesh.client() as client:
        # When one client has 200 requests of 10 ms each in flight at once
        rids = {client.send("echo", {"n": n, "sleep": 0.01}): n for n in range(total)}
        assert len(rids) == total
        # Then every request gets its own FINAL, matched by id
        for rid, n in rids.items():
            env = client.result(rid)
            assert (env.id, env.ok, env.payload) == (rid, True, {"n": n, "sleep": 0.01})
    # And the work was spread: every worker served at least 10%, and nothing twice
    served = mesh.served()
    assert len(served) == WORKERS, served
    assert sum(served) == total, served
    assert min(served) >= total // 10, served
    assert mesh.snapshot()["services"]["echo"]["served"] == total


def test_sequential_requests_go_round_robin_to_the_least_recently_used_worker(
        mesh: Mesh) -> None:
    # Given four idle echo workers
    add_echo_workers(mesh, WORKERS)
    # When twelve requests are sent one after another, each after the previous FINAL
    with mesh.client() as client:
        for n in range(12):
            assert client.call("echo", {"n": n}).payload == {"n": n}
    # Then LRU dispatch gave each worker exactly three
    assert mesh.served() == [3, 3, 3, 3]


def test_concurrent_pipelining_clients_each_get_only_their_own_replies(mesh: Mesh) -> None:
    # Given four echo workers and three clients, each in its own thread with its own socket
    add_echo_workers(mesh, WORKERS)
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            with mesh.client() as client:
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
