"""The real broker over real sockets, spoken to in every MDP dialect it accepts.

Clients and workers here are raw zmq sockets that write the frames by hand, byte for byte as
../shared/MDP.md and DESIGN.md section 2 spell them (no storymesh.core.mdp on the peer side, so a
codec bug cannot hide behind itself), next to the storymesh worker runtime with EchoAgent.
The broker is tests/conftest.py's `broker` (a BrokerServer thread on tcp://127.0.0.1:<port>,
heartbeat 0.1 s x 4). Every wait is bounded.

Dialects:
    client  0.1     ["" | MDPC01 | svc | body]            reply ["" | MDPC01 | svc | body]
            0.1-req the same from a REQ socket, which adds and strips the "" itself
            0.2     [MDPC02 | 0x01 | svc | body]          reply [MDPC02 | 0x02 P / 0x03 F | svc | body]
            0.2e    ["" | MDPC02 | 0x02 | svc | body]     reply ["" | MDPC02 | 0x03 P / 0x04 F | body]
    worker  0.1     ["" | MDPW01 | cmd ...]  READY 1, REQUEST 2, REPLY 3, HEARTBEAT 4, DISCONNECT 5
            0.2     [MDPW02 | cmd ...]       READY 1, REQUEST 2, PARTIAL 3, FINAL 4, HB 5, DISC 6
            0.2e    ["" | MDPW02 | cmd ...]  the 0.2 numbering with a leading ""
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest
import zmq

from storymesh.core import envelope
from storymesh.errors import BodyError
from storymesh.runtime.client import Client
from testkit.mesh import Mesh, wait_for

INTERVAL = 0.1  # the broker fixture's heartbeat interval (tests/conftest.py fast_settings)
WAIT = 3.0      # the longest any single reply may take here

C01, C02, W01, W02 = b"MDPC01", b"MDPC02", b"MDPW01", b"MDPW02"
CLIENTS = ("0.1-req", "0.1", "0.2", "0.2e")
WORKERS = ("raw-0.1", "raw-0.2", "raw-0.2e", "runtime-0.2")
BLOB = bytes(range(256)) * 20  # 5120 bytes: travels as its own binary frame


# --- the wire, written out by hand --------------------------------------------------------

def client_request(dialect: str, service: bytes, body: list[bytes]) -> list[bytes]:
    """A client REQUEST as the client socket sends it."""
    return {
        "0.1-req": [C01, service, *body],  # REQ prepends the empty delimiter itself
        "0.1": [b"", C01, service, *body],
        "0.2": [C02, b"\x01", service, *body],
        "0.2e": [b"", C02, b"\x02", service, *body],
    }[dialect]


def client_final(dialect: str, service: bytes, body: list[bytes]) -> list[bytes]:
    """The FINAL (0.1: the one REPLY) as the client socket receives it."""
    return {
        "0.1-req": [C01, service, *body],  # REQ strips the empty delimiter
        "0.1": [b"", C01, service, *body],
        "0.2": [C02, b"\x03", service, *body],
        "0.2e": [b"", C02, b"\x04", *body],  # this dialect's replies carry no service frame
    }[dialect]


def client_partial(dialect: str, service: bytes, body: list[bytes]) -> list[bytes]:
    return {
        "0.2": [C02, b"\x02", service, *body],
        "0.2e": [b"", C02, b"\x03", *body],
    }[dialect]


@dataclass(frozen=True)
class WorkerWire:
    """One worker dialect: its prefix and its command bytes."""

    prefix: tuple[bytes, ...]
    ready: bytes
    request: bytes
    partial: bytes | None
    final: bytes
    heartbeat: bytes
    disconnect: bytes


WIRES = {
    "0.1": WorkerWire((b"", W01), b"\x01", b"\x02", None, b"\x03", b"\x04", b"\x05"),
    "0.2": WorkerWire((W02,), b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06"),
    "0.2e": WorkerWire((b"", W02), b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06"),
}


def request_body(rid: str, payload: dict[str, Any]) -> list[bytes]:
    return [bytes(f) for f in envelope.pack(envelope.make_header(rid), payload)]


# --- raw peers ----------------------------------------------------------------------------

@dataclass
class RawWorker:
    """A hand-written worker thread: READY, heartbeats, and an echo of each request body.

    A request whose storymesh payload has `partials: n` gets n PARTIALs first (dialects that
    have PARTIAL), each `[request header | {"index": i}]`. Everything the broker sent is kept.
    """

    context: zmq.Context[Any]
    endpoint: str
    dialect: str
    service: bytes = b"echo"
    received: list[list[bytes]] = field(default_factory=list)
    requests: list[list[bytes]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    ready_sent: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def wire(self) -> WorkerWire:
        return WIRES[self.dialect]

    def start(self) -> RawWorker:
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"raw-worker-{self.dialect}")
        self.thread.start()
        assert self.ready_sent.wait(WAIT)
        return self

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(WAIT)

    def _run(self) -> None:
        wire = self.wire
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        sock.send_multipart([*wire.prefix, wire.ready, self.service])
        self.ready_sent.set()
        next_beat = time.monotonic() + INTERVAL
        try:
            while not self.stop.is_set():
                if sock.poll(10):
                    frames = sock.recv_multipart()
                    self.received.append(frames)
                    self._on(sock, frames)
                if time.monotonic() >= next_beat:
                    sock.send_multipart([*wire.prefix, wire.heartbeat])
                    next_beat = time.monotonic() + INTERVAL
        finally:
            sock.close(linger=0)

    def _on(self, sock: zmq.Socket[Any], frames: list[bytes]) -> None:
        wire = self.wire
        n = len(wire.prefix)
        if frames[:n + 1] != [*wire.prefix, wire.request]:
            return  # a heartbeat (checked by the tests from `received`)
        self.requests.append(frames)
        client, delimiter, body = frames[n + 1], frames[n + 2], frames[n + 3:]
        assert delimiter == b""
        if wire.partial is not None:
            for i in range(_partials_asked(body)):
                sock.send_multipart([*wire.prefix, wire.partial, client, b"",
                                     body[0], msgpack.packb({"index": i})])
        sock.send_multipart([*wire.prefix, wire.final, client, b"", *body])


def _partials_asked(body: list[bytes]) -> int:
    try:
        n = envelope.unpack(body).payload.get("partials", 0)
    except BodyError:
        return 0
    return n if isinstance(n, int) else 0


@dataclass
class Peers:
    """Raw workers and sockets beside a Mesh (real broker, runtime echo agents); all of it
    is stopped at teardown."""

    mesh: Mesh
    raw_workers: list[RawWorker] = field(default_factory=list)
    sockets: list[zmq.Socket[Any]] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return self.mesh.endpoint

    @property
    def context(self) -> zmq.Context[Any]:
        return self.mesh.context

    def worker(self, kind: str, service: bytes = b"echo") -> RawWorker | None:
        """Start a worker of `kind` (see WORKERS); the raw ones are returned for inspection."""
        if kind == "runtime-0.2":
            self.mesh.add_echo()
            return None
        raw = RawWorker(self.context, self.endpoint, kind.removeprefix("raw-"), service).start()
        self.raw_workers.append(raw)
        return raw

    def client_socket(self, dialect: str) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = self.context.socket(
            zmq.REQ if dialect == "0.1-req" else zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        self.sockets.append(sock)
        return sock

    def client(self, timeout: float = WAIT) -> Client:
        return self.mesh.client(timeout=timeout)

    def wait_workers(self, service: str, count: int) -> dict[str, Any]:
        """Poll `mmi.storymesh.snapshot` until `service` has `count` registered workers."""
        return self.mesh.wait_workers(service, count, timeout=WAIT)


@pytest.fixture(params=["native", "pure"])
def peers(request: pytest.FixtureRequest) -> Iterator[Peers]:
    """Every test here runs on both socket paths of the broker: the compiled helper (a whole
    message per call, storymesh.broker.wire) and pyzmq's per-frame calls."""
    with Mesh(native_wire=request.param == "native") as mesh:
        assert (mesh.broker.wire is not None) == (request.param == "native")
        p = Peers(mesh)
        try:
            yield p
        finally:
            for raw in p.raw_workers:
                raw.close()
            for sock in p.sockets:
                sock.close(linger=0)


def recv(sock: zmq.Socket[Any], timeout: float = WAIT) -> list[bytes]:
    assert sock.poll(int(timeout * 1000)), f"no message within {timeout}s"
    frames: list[bytes] = sock.recv_multipart()
    return frames


def nothing_more(sock: zmq.Socket[Any], seconds: float = 0.3) -> None:
    assert not sock.poll(int(seconds * 1000)), f"unexpected message: {sock.recv_multipart()}"


def echoed(final_body: list[bytes], rid: str, payload: dict[str, Any]) -> None:
    """The FINAL body is the echo of request `rid`: ok header with its id, same payload."""
    env = envelope.unpack(final_body)
    assert (env.id, env.ok) == (rid, True)
    assert env.payload == payload


# --- the dialect matrix -------------------------------------------------------------------

@pytest.mark.parametrize("worker_kind", WORKERS)
@pytest.mark.parametrize("client_dialect", CLIENTS)
def test_every_client_dialect_gets_its_reply_in_its_own_dialect_from_every_worker_dialect(
        peers: Peers, client_dialect: str, worker_kind: str) -> None:
    # Given one echo worker of `worker_kind` registered with the real broker
    raw = peers.worker(worker_kind)
    peers.wait_workers("echo", 1)
    # When a raw client of `client_dialect` sends a three-frame request (header, payload, blob)
    rid = f"{client_dialect}->{worker_kind}"
    payload = {"n": 7, "blob": BLOB}
    body = request_body(rid, payload)
    assert len(body) == 3
    sock = peers.client_socket(client_dialect)
    sock.send_multipart(client_request(client_dialect, b"echo", body))
    reply = recv(sock)
    # Then the reply is a FINAL in the client's own dialect, echoing the request
    head = client_final(client_dialect, b"echo", [])
    assert reply[:len(head)] == head, reply[:4]
    echoed(reply[len(head):], rid, payload)
    if raw is None:
        return
    # And a raw worker got the REQUEST in its own dialect with the body frames unchanged,
    wire = raw.wire
    assert len(raw.requests) == 1
    frames = raw.requests[0]
    n = len(wire.prefix)
    assert frames[:n + 1] == [*wire.prefix, wire.request]
    assert frames[n + 1]
    assert frames[n + 2] == b""
    assert frames[n + 3:] == body
    # so the relayed FINAL is byte for byte the worker's body,
    assert reply[len(head):] == body
    # and everything else the broker sent it was a HEARTBEAT of its own dialect.
    others = [f for f in raw.received if f is not frames]
    assert all(f == [*wire.prefix, wire.heartbeat] for f in others), others[:3]


@pytest.mark.parametrize("worker_kind", ["raw-0.2", "raw-0.2e", "runtime-0.2"])
@pytest.mark.parametrize("client_dialect", ["0.1-req", "0.1"])
def test_a_01_client_served_by_a_streaming_02_worker_gets_exactly_one_reply(
        peers: Peers, client_dialect: str, worker_kind: str) -> None:
    # Given a 0.2 worker that streams PARTIALs before its FINAL
    peers.worker(worker_kind)
    peers.wait_workers("echo", 1)
    # When a 0.1 client asks for five partials
    payload = {"partials": 5, "text": "once"}
    sock = peers.client_socket(client_dialect)
    sock.send_multipart(client_request(client_dialect, b"echo", request_body("r01", payload)))
    reply = recv(sock)
    # Then its one REPLY is the FINAL (no PARTIAL reaches it) and nothing follows
    head = client_final(client_dialect, b"echo", [])
    assert reply[:len(head)] == head
    echoed(reply[len(head):], "r01", payload)
    if client_dialect == "0.1":  # a REQ socket could not even receive a second message
        nothing_more(sock)
    # And the broker did receive the five PARTIALs, and dropped them
    with peers.client() as client:
        assert client.snapshot()["counters"]["partials"] == 5


@pytest.mark.parametrize("worker_kind", ["raw-0.2", "raw-0.2e", "runtime-0.2"])
@pytest.mark.parametrize("client_dialect", ["0.2", "0.2e"])
def test_partials_arrive_in_order_before_the_final(
        peers: Peers, client_dialect: str, worker_kind: str) -> None:
    # Given a streaming 0.2 worker
    peers.worker(worker_kind)
    peers.wait_workers("echo", 1)
    # When a 0.2 client asks echo for twenty partials
    payload = {"partials": 20}
    sock = peers.client_socket(client_dialect)
    sock.send_multipart(client_request(client_dialect, b"echo", request_body("s1", payload)))
    replies = [recv(sock) for _ in range(21)]
    # Then twenty PARTIALs come first, indices 0..19 in order, then the one FINAL
    p_head = client_partial(client_dialect, b"echo", [])
    f_head = client_final(client_dialect, b"echo", [])
    for i, frames in enumerate(replies[:20]):
        assert frames[:len(p_head)] == p_head, (i, frames[:3])
        env = envelope.unpack(frames[len(p_head):])
        assert (env.id, env.payload) == ("s1", {"index": i})
    assert replies[20][:len(f_head)] == f_head
    echoed(replies[20][len(f_head):], "s1", payload)
    nothing_more(sock, 0.1)


def test_the_dialects_share_one_service_queue(peers: Peers) -> None:
    # Given one worker of every dialect on the same service
    for kind in WORKERS:
        peers.worker(kind)
    snap = peers.wait_workers("echo", 4)
    assert sorted(w["dialect"] for w in snap["workers"]) == ["0.1", "0.2", "0.2", "0.2e"]
    # When clients of every dialect pipeline requests (eight per DEALER client)
    socks = {d: peers.client_socket(d) for d in CLIENTS}
    for d, sock in socks.items():
        for i in range(1 if d == "0.1-req" else 8):
            sock.send_multipart(client_request(d, b"echo", request_body(f"{d}:{i}", {"i": i})))
    # Then every request gets its own FINAL in its client's dialect, whoever served it
    for d, sock in socks.items():
        head = client_final(d, b"echo", [])
        got = set()
        for _ in range(1 if d == "0.1-req" else 8):
            reply = recv(sock)
            assert reply[:len(head)] == head
            env = envelope.unpack(reply[len(head):])
            assert env.ok
            assert env.id == f"{d}:{env.payload['i']}"
            got.add(env.id)
        assert len(got) == (1 if d == "0.1-req" else 8)


# --- MMI through a real socket ------------------------------------------------------------

@pytest.mark.parametrize("client_dialect", CLIENTS)
def test_mmi_service_answers_200_404_and_501_in_the_client_dialect(
        peers: Peers, client_dialect: str) -> None:
    # Given an echo worker (a raw 0.1 one) and nothing for `nobody`
    peers.worker("raw-0.1")
    peers.wait_workers("echo", 1)
    sock = peers.client_socket(client_dialect)
    cases = [(b"mmi.service", b"echo", b"200"), (b"mmi.service", b"nobody", b"404"),
             (b"mmi.nope", b"echo", b"501")]
    for service, target, code in cases:
        # When the client asks MMI
        sock.send_multipart(client_request(client_dialect, service, [target]))
        # Then the broker answers it itself, with the raw code, in the client's dialect
        assert recv(sock) == client_final(client_dialect, service, [code])


@pytest.mark.parametrize("client_dialect", CLIENTS)
def test_mmi_storymesh_snapshot_describes_workers_and_counters(
        peers: Peers, client_dialect: str) -> None:
    # Given a raw 0.1, a raw 0.2e and a runtime worker, and one request served
    for kind in ("raw-0.1", "raw-0.2e", "runtime-0.2"):
        peers.worker(kind)
    peers.wait_workers("echo", 3)
    with peers.client() as client:
        assert client.call("echo", {"x": 1}).payload == {"x": 1}
    # When a raw client asks for the snapshot with an envelope header
    sock = peers.client_socket(client_dialect)
    sock.send_multipart(client_request(client_dialect, b"mmi.storymesh.snapshot",
                                       request_body("snap-1", {})))
    reply = recv(sock)
    head = client_final(client_dialect, b"mmi.storymesh.snapshot", [])
    assert reply[:len(head)] == head
    env = envelope.unpack(reply[len(head):])
    # Then it is a versioned envelope answering that id, with services, workers and counters
    assert (env.id, env.ok) == ("snap-1", True)
    snap = env.payload
    assert snap["version"] == 1
    assert snap["services"]["echo"]["workers"] == 3
    assert snap["services"]["echo"]["served"] == 1
    assert sorted(w["dialect"] for w in snap["workers"]) == ["0.1", "0.2", "0.2e"]
    assert sum(w["served"] for w in snap["workers"]) == 1
    runtime = [w for w in snap["workers"] if w["meta"]]
    assert len(runtime) == 1
    assert runtime[0]["meta"]["hb_busy"] is True
    assert snap["counters"]["replies"] == 1
    assert snap["counters"]["mmi"] >= 1


@pytest.mark.parametrize("dialect", ["0.1", "0.2", "0.2e"])
def test_ready_for_an_mmi_name_is_disconnected_in_the_worker_dialect(
        peers: Peers, dialect: str) -> None:
    # Given a raw worker socket
    wire = WIRES[dialect]
    sock = peers.client_socket("0.1")  # any DEALER
    # When it sends READY for mmi.x
    sock.send_multipart([*wire.prefix, wire.ready, b"mmi.x"])
    # Then the broker answers DISCONNECT in that worker's dialect and registers nothing
    assert recv(sock) == [*wire.prefix, wire.disconnect]
    with peers.client() as client:
        assert client.service_available("mmi.x") is False
        assert client.snapshot()["counters"]["violations"] == 1


def test_ready_metadata_nested_too_deep_does_not_break_the_snapshot(peers: Peers) -> None:
    # Given a worker whose READY metadata frame is valid msgpack but nested 40 maps deep
    # (each map small, so the broker's container and string limits all pass)
    meta: dict[str, Any] = {"hb_busy": True}
    for _ in range(40):
        meta = {"m": meta}
    sock = peers.client_socket("0.2")
    sock.send_multipart([W02, b"\x01", b"deep", msgpack.packb(meta)])
    # When a monitor asks for the snapshot
    with peers.client(timeout=1.0) as client:
        wait_for(lambda: client.service_available("deep") is True, WAIT,
                 "the worker to register")
        # Then the snapshot still decodes within the envelope limits for every client
        # (the broker must bound the metadata it keeps, as it bounds everything else)
        snap = client.snapshot()
    assert any(w["service"] == "deep" for w in snap["workers"])

