"""The mesh as real processes: `storymesh broker` and `storymesh agent echo` daemons, real
TCP on loopback, real signals (SIGKILL, SIGTERM), and the CLI as a user runs it.

Helpers and fixtures are in conftest.py (spawner, endpoint, snapshot, client). Heartbeat
0.2 s x 4 on both sides; every wait is bounded and a failed one prints the daemons' logs.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgpack
import pytest
import zmq

from storymesh.core import envelope, schema
from storymesh.errors import RequestFailed
from testkit.mesh import HEARTBEAT, LIVENESS, Spawner, free_endpoint, snapshot
from tests.system.conftest import client

pytestmark = [pytest.mark.system, pytest.mark.timeout(90)]

CLI_TIMEOUT = 30.0  # one `storymesh` command: ~0.7 s of CPU, much longer on a loaded machine


def echo_workers(snap: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in snap["workers"] if w["service"] == "echo"]


def holder_of(endpoint: str, rid: str) -> dict[str, Any] | None:
    """The snapshot entry of the worker that holds request `rid`, if one does now."""
    snap = snapshot(endpoint)
    if snap is None:
        return None
    workers: list[dict[str, Any]] = snap["workers"]
    return next((w for w in workers if w["request"] and w["request"]["id"] == rid), None)


# --- worker death and broker restart -------------------------------------------------------

def test_a_worker_killed_while_holding_a_request_is_replaced_by_the_idle_one(
        spawner: Spawner, endpoint: str) -> None:
    # Given a broker and two echo agent processes, both registered
    spawner.broker(endpoint)
    agents = {p.pid: p for p in (spawner.echo(endpoint), spawner.echo(endpoint))}
    spawner.workers(endpoint, "echo", list(agents))
    with client(endpoint, timeout=15.0, retries=1) as c:  # no client retry: the broker must
        # When a 3-second request is being served and its worker process is SIGKILLed
        rid = c.send("echo", {"sleep": 3, "n": 1})
        holder = spawner.wait_until(lambda: holder_of(endpoint, rid), 5.0, "the dispatch")
        victim = agents.pop(holder["meta"]["pid"])
        (survivor,) = agents.values()
        victim.signal(signal.SIGKILL)
        assert victim.wait(5.0) == -signal.SIGKILL
        # Then the client still gets the FINAL
        env = c.result(rid)
    assert (env.id, env.ok, env.payload) == (rid, True, {"sleep": 3, "n": 1})
    # And it came from the other worker, after one re-dispatch
    snap = snapshot(endpoint)
    assert snap is not None
    (left,) = echo_workers(snap)
    assert (left["meta"]["pid"], left["served"]) == (survivor.pid, 1)
    assert snap["counters"]["redispatched"] == 1
    assert snap["counters"]["worker_lost"] == 0


def test_workers_re_register_with_a_restarted_broker_and_serve_again(
        spawner: Spawner, endpoint: str) -> None:
    # Given a broker and two echo agent processes that served a request
    first = spawner.broker(endpoint)
    pids = [spawner.echo(endpoint).pid, spawner.echo(endpoint).pid]
    before = spawner.workers(endpoint, "echo", pids)
    with client(endpoint) as c:
        assert c.call("echo", {"before": True}).payload == {"before": True}
    # When the broker process is SIGKILLed and a new one binds the same endpoint
    first.signal(signal.SIGKILL)
    assert first.wait(5.0) == -signal.SIGKILL
    second = spawner.broker(endpoint)  # returns once the new broker answers
    answering = time.monotonic()
    # Then both agent processes (still the same ones) register with it within a few
    # liveness periods, and requests are served again
    after = spawner.workers(endpoint, "echo", pids, timeout=8 * HEARTBEAT * LIVENESS)
    took = time.monotonic() - answering
    assert after["pid"] == second.pid != before["pid"]
    with client(endpoint) as c:
        assert c.call("echo", {"after": True}).payload == {"after": True}
        assert c.service_available("echo") is True
    assert all(p.alive() for p in spawner.procs if p.name == "echo")
    assert took < 4 * HEARTBEAT * LIVENESS, f"re-registration took {took:.2f}s"


# --- garbage -------------------------------------------------------------------------------

GOOD_BODY = [bytes(f) for f in envelope.pack(envelope.make_header("garbage"), {})]
V99_HEADER = msgpack.packb({"v": 99, "id": "v99"})

# Each: one message as a raw DEALER sends it (the broker adds the routing id).
GARBAGE: list[list[bytes]] = [
    # empty and random frames
    [b""], [b"", b""], [b"\x00"], [b"\xff" * 64], [b"", b"", b"", b""],
    # wrong headers
    [b"MDPC03", b"\x01", b"echo", b"x"], [b"", b"MDPX01", b"echo"], [b"mdpc02", b"\x01", b"echo"],
    [b"MDPC01", b"echo", b"x"],  # a 0.1 header without its leading empty frame
    [b"MDPW01", b"\x01", b"echo"], [b"", b"", b"MDPC01", b"echo"],
    # truncated commands
    [b"MDPC02"], [b"MDPC02", b"\x01"], [b"", b"MDPC01"], [b"", b"MDPC02", b"\x02"],
    [b"MDPW02"], [b"", b"MDPW01"], [b"MDPW02", b"\x01"], [b"MDPW02", b"\x04"],
    [b"MDPW02", b"\x04", b"cid"], [b"MDPW02", b"\x04", b"cid", b"x"],
    [b"MDPW02", b"\x04", b"", b""], [b"MDPC02", b"\x01", b""],
    # unknown command bytes
    [b"MDPW02", b"\x00"], [b"MDPW02", b"\x07"], [b"", b"MDPW01", b"\x06"],
    [b"MDPW02", b"\x01\x01", b"fuzz"], [b"MDPC02", b"\x09", b"echo", b"x"],
    # 0.1 / 0.2 command confusion
    [b"", b"MDPW01", b"\x04", b"cid", b"", b"body"],  # 0.2 FINAL byte under MDPW01 = HEARTBEAT+junk
    [b"", b"MDPW01", b"\x05", b"extra"], [b"MDPW02", b"\x05", b"extra"],
    [b"MDPC02", b"\x02", b"echo", b"x"],         # strict 0.2 with the 0.2e REQUEST byte
    [b"", b"MDPC02", b"\x01", b"echo", b"x"],    # 0.2e with the strict REQUEST byte
    [b"MDPC02", b"\x03", b"echo", b"x"],         # a client sending FINAL
    [b"MDPW02", b"\x02", b"cid", b"", b"x"],     # a worker sending REQUEST
    [b"", b"MDPW01", b"\x02", b"cid", b"", b"x"],
    # registration mistakes
    [b"MDPW02", b"\x01", b"mmi.x"], [b"", b"MDPW01", b"\x01", b"mmi.service"],
    [b"", b"MDPW02", b"\x01", b"mmi.storymesh.snapshot"],
    [b"MDPW02", b"\x01", b"a", b"b", b"c"], [b"MDPW02", b"\x01", b"\xff\xfe bad name"],
    [b"MDPW02", b"\x04", b"client-x", b"", b"body"],  # FINAL before READY
    [b"MDPW02", b"\x03", b"client-x", b"", b"body"],  # PARTIAL before READY
    [b"MDPW02", b"\x05"], [b"", b"MDPW01", b"\x04"],  # HEARTBEAT before READY
    [b"", b"MDPW01", b"\x03", b"client-x", b"", b"body"],
    # client requests the broker answers with an error (or relays to the agent, which does)
    [b"MDPC02", b"\x01", b"x" * 1000, *GOOD_BODY], [b"", b"MDPC01", b"\x01", b"echo"],
    [b"MDPC02", b"\x01", b"echo", b"\x93not an envelope"],
    [b"MDPC02", b"\x01", b"echo", V99_HEADER, b"\x80"], [b"MDPC02", b"\x01", b"mmi.nope"],
    [b"MDPC02", b"\x01", b"echo", msgpack.packb({"v": 1, "id": "d", "deadline": "soon"})],
    # huge frame counts
    [b"MDPC02", b"\x01", b"echo", *([b"x"] * 500)], [b""] * 5000,
]

# Conversations that need a registered garbage worker (each on its own fresh socket).
SEQUENCES: list[list[list[bytes]]] = [
    [[b"MDPW02", b"\x01", b"fuzz"], [b"MDPW02", b"\x01", b"fuzz"]],  # READY twice
    [[b"MDPW02", b"\x01", b"fuzz"], [b"MDPW02", b"\x04", b"c", b"", b"b"]],  # FINAL while idle
    [[b"", b"MDPW01", b"\x01", b"fuzz"], [b"MDPW02", b"\x09"]],  # registered, then invalid
    [[b"MDPW02", b"\x01", b"fuzz", b"\xc1\xff\x00"], [b"MDPW02", b"\x06"]],  # bad metadata
    [[b"MDPW02", b"\x06"], [b"", b"MDPW01", b"\x05"]],  # DISCONNECT before READY (allowed)
    [[b"MDPW02", b"\x01", b"fuzz"], [b"", b"MDPW01", b"\x03", b"c", b"", b"b"]],  # dialect switch
]

TEMPLATES: list[list[bytes]] = [
    [b"MDPC02", b"\x01", b"fuzz", *GOOD_BODY], [b"", b"MDPC01", b"fuzz", *GOOD_BODY],
    [b"", b"MDPC02", b"\x02", b"fuzz", *GOOD_BODY], [b"MDPW02", b"\x01", b"fuzz"],
    [b"", b"MDPW01", b"\x01", b"fuzz"], [b"MDPW02", b"\x04", b"cid", b"", *GOOD_BODY],
    [b"", b"MDPW01", b"\x03", b"cid", b"", b"x"], [b"MDPW02", b"\x05"], [b"", b"MDPW01", b"\x04"],
]


def mutate(rng: random.Random) -> list[bytes]:
    """A valid-looking message with one random defect, or pure noise (never for `echo`)."""
    frames = list(rng.choice(TEMPLATES))
    i = rng.randrange(len(frames))
    how = rng.randrange(6)
    if how == 0 and len(frames) > 1:
        del frames[i]
    elif how == 1:
        frames[i] = frames[i][:rng.randrange(len(frames[i]) + 1)]
    elif how == 2 and frames[i]:
        b = bytearray(frames[i])
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        frames[i] = bytes(b)
    elif how == 3:
        frames.insert(i, rng.randbytes(rng.randrange(12)))
    elif how == 4:
        frames = [frames[0], *frames[1:][::-1]]
    else:
        frames = [rng.randbytes(rng.randrange(40)) for _ in range(rng.randrange(1, 6))]
    return frames


class RealTraffic(threading.Thread):
    """A client that keeps calling echo until stopped; records what it got."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.stop = threading.Event()
        self.served: list[int] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        with client(self.endpoint, timeout=5.0, retries=1) as c:
            n = 0
            while not self.stop.is_set():
                try:
                    payload = c.call("echo", {"n": n, "blob": bytes(5000)})
                except BaseException as exc:  # noqa: BLE001  (the test asserts on it)
                    self.errors.append(exc)
                    return
                if payload.payload != {"n": n, "blob": bytes(5000)}:
                    self.errors.append(AssertionError(f"request {n} got {payload.payload}"))
                    return
                self.served.append(n)
                n += 1


def test_garbage_of_every_shape_never_stops_the_broker_serving(
        spawner: Spawner, endpoint: str) -> None:
    # Given a broker (1 MiB frame limit) and one echo agent, and a client calling echo nonstop
    broker = spawner.broker(endpoint, env={"STORYMESH_MAX_MESSAGE_BYTES": str(1 << 20)})
    agent = spawner.echo(endpoint)
    spawner.workers(endpoint, "echo", [agent.pid])
    traffic = RealTraffic(endpoint)
    traffic.start()
    ctx: zmq.Context[Any] = zmq.Context()
    rng = random.Random(20240611)
    try:
        def dealer() -> zmq.Socket[Any]:
            sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
            return sock

        # When raw DEALERs throw malformed messages of every shape at it, with a
        # fixed catalogue, stateful conversations, an over-limit frame and 400 mutations
        junk = dealer()
        for frames in GARBAGE:
            junk.send_multipart(frames)
        for conversation in SEQUENCES:
            sock = dealer()
            for frames in conversation:
                sock.send_multipart(frames)
            sock.close(linger=200)
        dealer().send_multipart([b"MDPC02", b"\x01", b"echo", bytes(2 << 20)])  # > MAXMSGSIZE
        for k in range(400):
            junk.send_multipart(mutate(rng))
            if k % 50 == 0:
                time.sleep(0.02)  # let real requests interleave with the noise
        mmi_ready = dealer()
        mmi_ready.send_multipart([b"MDPW02", b"\x01", b"mmi.x"])
        # Then a READY for an mmi. name is answered with DISCONNECT
        assert mmi_ready.poll(3000)
        assert mmi_ready.recv_multipart() == [b"MDPW02", b"\x06"]
        time.sleep(0.3)  # real traffic keeps flowing after the noise has stopped
    finally:
        traffic.stop.set()
        traffic.join(10.0)
        ctx.destroy(linger=0)
    # And every real request was served, and the broker process is alive
    assert not traffic.errors, f"{traffic.errors}\n{spawner.tails()}"
    assert traffic.served == list(range(len(traffic.served)))
    assert len(traffic.served) >= 10
    assert broker.alive(), spawner.tails()
    # And it counted what it dropped, and the real agent is still its only echo worker
    snap = snapshot(endpoint, timeout=3.0)
    assert snap is not None
    counters = snap["counters"]
    assert counters["malformed"] > len(GARBAGE) // 2, counters
    assert counters["violations"] > 0, counters
    assert counters["bad_request"] >= 2, counters
    assert [w["meta"]["pid"] for w in echo_workers(snap)] == [agent.pid]


# --- SIGTERM -------------------------------------------------------------------------------

def test_sigterm_on_the_broker_answers_queued_requests_shutting_down_and_exits_0(
        spawner: Spawner, endpoint: str) -> None:
    # Given a broker whose requests for `nobody` wait up to a minute for a worker
    broker = spawner.broker(endpoint, env={"STORYMESH_SERVICE_WAIT": "60"})
    ctx: zmq.Context[Any] = zmq.Context()
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(endpoint)
    try:
        with client(endpoint, timeout=10.0, retries=1) as c:
            # And three storymesh requests and one raw MDP/0.1 request queued for it
            rids = [c.send("nobody", {"n": n}) for n in range(3)]
            raw.send_multipart([b"", b"MDPC01", b"nobody",
                                *envelope.pack(envelope.make_header("raw-01"), {})])
            spawner.wait_until(
                lambda: (s := snapshot(endpoint)) is not None
                and s["services"].get("nobody", {}).get("queue") == 4, 5.0, "4 queued")
            # When the broker gets SIGTERM
            broker.signal(signal.SIGTERM)
            # Then every queued request is answered with a retryable `shutting_down`
            for rid in rids:
                with pytest.raises(RequestFailed) as caught:
                    c.result(rid)
                assert (caught.value.code, caught.value.retryable) == ("shutting_down", True)
        assert raw.poll(5000)
        reply = raw.recv_multipart()
        assert reply[:3] == [b"", b"MDPC01", b"nobody"]  # in the 0.1 client's own dialect
        env = envelope.unpack(reply[3:])
        assert (env.id, env.ok, env.payload["error"]["code"]) == ("raw-01", False,
                                                                  "shutting_down")
    finally:
        raw.close(linger=0)
        ctx.term()
    # And the broker exits 0
    assert broker.wait(5.0) == 0, broker.tail()


def test_sigterm_on_an_idle_agent_exits_0_at_once_and_it_leaves_the_broker(
        spawner: Spawner, endpoint: str) -> None:
    # Given an idle registered echo agent
    spawner.broker(endpoint)
    agent = spawner.echo(endpoint)
    spawner.workers(endpoint, "echo", [agent.pid])
    # When it gets SIGTERM
    agent.signal(signal.SIGTERM)
    # Then it exits 0 quickly
    assert agent.wait(3.0) == 0, agent.tail()

    # And the broker no longer offers echo
    def echo_gone() -> dict[str, Any] | None:
        snap = snapshot(endpoint)
        return snap if snap is not None and not echo_workers(snap) else None

    snap = spawner.wait_until(echo_gone, 3.0, "echo gone from the broker")
    # by its DISCONNECT: not by a failed send to it, nor by heartbeat expiry
    counters = snap["counters"]
    assert (counters["unreachable"], counters["workers_expired"]) == (0, 0), counters


def test_sigterm_on_a_busy_agent_finishes_the_job_then_exits_0(
        spawner: Spawner, endpoint: str) -> None:
    # Given an echo agent serving a request that takes a second
    spawner.broker(endpoint)
    agent = spawner.echo(endpoint)
    spawner.workers(endpoint, "echo", [agent.pid])
    with client(endpoint, timeout=10.0, retries=1) as c:
        rid = c.send("echo", {"sleep": 1, "n": 9})
        spawner.wait_until(lambda: holder_of(endpoint, rid), 5.0, "the dispatch")
        # When the agent gets SIGTERM in the middle of it
        agent.signal(signal.SIGTERM)
        # Then the client still gets its FINAL
        env = c.result(rid)
    assert (env.id, env.ok, env.payload) == (rid, True, {"sleep": 1, "n": 9})
    # And the agent exits 0, and the request was served once, not re-dispatched
    assert agent.wait(5.0) == 0, agent.tail()
    snap = snapshot(endpoint)
    assert snap is not None
    assert (snap["counters"]["replies"], snap["counters"]["redispatched"]) == (1, 0)


# --- the CLI -------------------------------------------------------------------------------

def test_cli_health_and_request_exit_codes(spawner: Spawner, endpoint: str) -> None:
    # Given a broker with one echo agent, and an endpoint where nothing listens
    spawner.broker(endpoint)
    agent = spawner.echo(endpoint)
    spawner.workers(endpoint, "echo", [agent.pid])
    nowhere = free_endpoint()
    commands = {
        "healthy": ["health", "--broker", endpoint, "--timeout", "5"],
        "down": ["health", "--broker", nowhere, "--timeout", "0.5"],
        "ok": ["request", "echo", "--json", '{"a": 1}', "--broker", endpoint],
        "bad": ["request", "echo", "--json", '{"fail": "bad_request"}', "--broker", endpoint],
        "timeout": ["request", "echo", "--json", "{}", "--broker", nowhere, "--timeout", "0.5",
                    "--retries", "1"],
    }
    # When each command runs as its own process (three at a time: two cores)
    with ThreadPoolExecutor(3) as pool:
        runs = dict(zip(commands, pool.map(
            lambda args: spawner.cli(*args, "--config", "/dev/null", timeout=CLI_TIMEOUT),
            commands.values()), strict=True))
    codes = {name: run.returncode for name, run in runs.items()}
    everything = {n: (r.returncode, r.stdout[-200:], r.stderr[-300:]) for n, r in runs.items()}
    # Then health exits 0 with a broker and 2 without one (1, degraded: tests/system/test_health.py)
    assert (codes["healthy"], codes["down"]) == (0, 2), everything
    assert runs["healthy"].stdout.startswith("healthy")
    # And a request prints the echoed payload as the FINAL and exits 0
    assert codes["ok"] == 0, everything
    assert json.loads(runs["ok"].stdout) == {"final": True, "payload": {"a": 1}}
    # And an agent error exits with the code documented for it
    assert codes["bad"] == schema.exit_code_for("bad_request") == 15, everything
    assert "bad_request" in runs["bad"].stderr
    # And a request nobody answers gives up with the timeout exit code
    assert codes["timeout"] == schema.EXIT_TIMEOUT, everything
