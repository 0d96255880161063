"""The client runtime over real zmq sockets, against a scripted stand-in broker.

The stand-in runs in its own thread with a ROUTER on tcp://127.0.0.1:<random port>. For each
client REQUEST it calls the test's `script(request, nth)`, which returns the replies to send
(each a `(final, body)` pair), so a test decides per request: answer, stay silent, answer
`busy`, answer out of order. Every request it saw is recorded with the client's routing id.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import zmq

from storymesh.core import envelope, mdp
from storymesh.core.mdp import Frame
from storymesh.errors import RequestFailed, RequestTimeout
from storymesh.runtime.client import Client
from testkit.mesh import Mesh

Out = list[tuple[bool, list[Frame]]]  # replies to send: (final, body frames)


@dataclass
class Got:
    """One REQUEST the stand-in received."""

    cid: bytes
    service: bytes
    body: tuple[bytes, ...]

    @property
    def env(self) -> envelope.Envelope:
        return envelope.unpack(self.body)


def ok(got: Got, payload: dict[str, Any], final: bool = True) -> tuple[bool, list[Frame]]:
    env = got.env
    return final, envelope.pack(envelope.make_header(env.id, corr=env.corr, ok=True), payload)


def error(got: Got, code: str, retry_after: float | None = None) -> tuple[bool, list[Frame]]:
    return True, envelope.error_body(got.env.id, code, f"{code} from the stand-in",
                                     retry_after=retry_after)


Script = Callable[[Got, int], Out]


@dataclass
class StandIn:
    """A ROUTER in its own thread that answers client requests as `script` says."""

    context: zmq.Context[Any]
    script: Script = lambda got, nth: [ok(got, got.env.payload)]
    seen: list[Got] = field(default_factory=list)
    raw_out: list[list[bytes]] = field(default_factory=list)  # sent before scripted replies
    endpoint: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _bound: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._bound.wait(2.0)

    def _run(self) -> None:
        sock = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        self.endpoint = f"tcp://127.0.0.1:{sock.bind_to_random_port('tcp://127.0.0.1')}"
        self._bound.set()
        try:
            while not self._stop.is_set():
                if not sock.poll(20):
                    continue
                frames = sock.recv_multipart()
                msg = mdp.parse(frames[1:])
                assert isinstance(msg, mdp.ClientRequest)
                got = Got(frames[0], msg.service, tuple(bytes(f) for f in msg.body))
                self.seen.append(got)
                for raw in self.raw_out:
                    sock.send_multipart([got.cid, *raw])
                self.raw_out = []
                for final, body in self.script(got, len(self.seen)):
                    reply = mdp.ClientReply(msg.service, tuple(body), final)
                    sock.send_multipart([got.cid, *mdp.encode(reply)])
        finally:
            sock.close(linger=0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)


@pytest.fixture
def stand_in(context: zmq.Context[Any]) -> Iterator[StandIn]:
    broker = StandIn(context)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def client(stand_in: StandIn, context: zmq.Context[Any]) -> Iterator[Client]:
    with Client(stand_in.endpoint, context=context, timeout=0.3, retries=3) as c:
        yield c


def test_call_returns_the_final_envelope(stand_in: StandIn, client: Client) -> None:
    # Given a broker that echoes payloads (bytes included)
    blob = b"\x89PNG" + bytes(8000)
    # When the client calls a service
    env = client.call("echo", {"text": "hi", "png": blob}, corr="story-1")
    # Then it gets the FINAL with its payload, id and corr
    assert env.payload == {"text": "hi", "png": blob}
    assert env.corr == "story-1"
    assert env.id == stand_in.seen[0].env.id
    assert stand_in.seen[0].service == b"echo"


def test_stream_yields_partials_then_the_final(stand_in: StandIn, client: Client) -> None:
    # Given a broker that sends two PARTIALs before the FINAL
    stand_in.script = lambda got, nth: [ok(got, {"i": 0}, False), ok(got, {"i": 1}, False),
                                        ok(got, {"done": True})]
    # When the client streams the request
    replies = list(client.stream("echo", {}))
    # Then it sees both partials in order and the final last
    assert [(r.final, r.payload) for r in replies] == [
        (False, {"i": 0}), (False, {"i": 1}), (True, {"done": True})]


def test_pipelined_requests_are_matched_by_id_out_of_order(
        stand_in: StandIn, client: Client) -> None:
    # Given a broker that holds the first two requests and answers all three, in reverse
    # order, when the third arrives (with a partial for each interleaved)
    held: list[Got] = []

    def script(got: Got, nth: int) -> Out:
        held.append(got)
        if nth < 3:
            return []
        out: Out = []
        for g in reversed(held):
            out.append(ok(g, {"partial_of": g.env.payload["n"]}, False))
        for g in reversed(held):
            out.append(ok(g, {"final_of": g.env.payload["n"]}))
        return out

    stand_in.script = script
    # When the client pipelines three requests on one socket, then reads them in send order
    rids = [client.send("echo", {"n": n}) for n in range(3)]
    got = {rid: [client.recv(rid), client.recv(rid)] for rid in rids}
    # Then each id got its own partial then its own final
    for n, rid in enumerate(rids):
        assert [(r.final, r.payload) for r in got[rid]] == [
            (False, {"partial_of": n}), (True, {"final_of": n})]
    assert len({g.cid for g in stand_in.seen}) == 1  # one socket, no retries


def test_timeout_resends_every_request_with_the_same_id_on_a_fresh_socket(
        stand_in: StandIn, client: Client) -> None:
    # Given a broker that ignores the first two requests it sees, then answers everything
    stand_in.script = lambda got, nth: [] if nth <= 2 else [ok(got, {"nth": nth})]
    # When two requests are in flight and the attempt timeout (0.3 s) passes
    first = client.send("echo", {"a": 1})
    second = client.send("echo", {"b": 2})
    final_first = client.recv(first)
    final_second = client.recv(second)
    # Then both were resent once, with the same ids, from a new routing id
    assert final_first.final
    assert final_second.final
    ids = [g.env.id for g in stand_in.seen]
    assert ids == [first, second, first, second]
    assert stand_in.seen[0].cid == stand_in.seen[1].cid != stand_in.seen[2].cid
    assert stand_in.seen[2].cid == stand_in.seen[3].cid


def test_retries_exhausted_raise_request_timeout(stand_in: StandIn,
                                                 context: zmq.Context[Any]) -> None:
    # Given a broker that never answers, and a client with 2 attempts of 0.15 s
    stand_in.script = lambda got, nth: []
    # When the client calls / Then it raises RequestTimeout after both attempts
    with (Client(stand_in.endpoint, context=context, timeout=0.15, retries=2) as client,
          pytest.raises(RequestTimeout, match="after 2 attempt")):
        client.call("echo", {})
    assert len(stand_in.seen) == 2
    assert stand_in.seen[0].env.id == stand_in.seen[1].env.id


def test_error_final_raises_request_failed(stand_in: StandIn, client: Client) -> None:
    # Given a broker that answers with a `worker_lost` error FINAL
    stand_in.script = lambda got, nth: [error(got, "worker_lost")]
    # When the client calls
    with pytest.raises(RequestFailed) as caught:
        client.call("echo", {})
    # Then the error carries the code, message and retryability, and it was not retried
    assert caught.value.code == "worker_lost"
    assert caught.value.retryable is True
    assert "stand-in" in caught.value.message
    assert len(stand_in.seen) == 1


def test_busy_is_retried_after_retry_after_within_the_budget(
        stand_in: StandIn, client: Client) -> None:
    # Given a broker that answers `busy` (retry in 0.1 s) once, then serves
    stand_in.script = lambda got, nth: ([error(got, "busy", retry_after=0.1)] if nth == 1
                                        else [ok(got, {"served": nth})])
    # When the client calls
    env = client.call("echo", {})
    # Then it succeeded on the second attempt, with the same id (the delay itself is a
    # timing rule: tests/unit/test_runtime_units.py checks it on a fake clock)
    assert env.payload == {"served": 2}
    assert [g.env.id for g in stand_in.seen] == [env.id, env.id]


def test_busy_is_not_retried_past_the_deadline_on_the_injected_wall_clock(
        stand_in: StandIn, context: zmq.Context[Any]) -> None:
    # Given a broker that is always busy (retry in 0.02 s), and a client whose wall clock
    # says an hour has passed
    stand_in.script = lambda got, nth: [error(got, "busy", retry_after=0.02)]
    late = time.time() + 3600.0
    # When it calls with a deadline a minute from now
    with (Client(stand_in.endpoint, context=context, timeout=0.3, retries=3,
                 wall=lambda: late) as client,
          pytest.raises(RequestFailed) as caught):
        client.call("echo", {}, deadline=time.time() + 60.0)
    # Then the deadline has passed on its clock: the `busy` is raised, never retried
    assert caught.value.code == "busy"
    assert len(stand_in.seen) == 1


def test_busy_past_the_retry_budget_raises(stand_in: StandIn, client: Client) -> None:
    # Given a broker that is always busy
    stand_in.script = lambda got, nth: [error(got, "busy", retry_after=0.02)]
    # When the client (3 attempts) calls / Then the last `busy` is raised
    with pytest.raises(RequestFailed) as caught:
        client.call("echo", {})
    assert caught.value.code == "busy"
    assert caught.value.retry_after == 0.02
    assert len(stand_in.seen) == 3


def test_malformed_and_unknown_replies_are_dropped(stand_in: StandIn, client: Client) -> None:
    # Given a broker that first sends garbage, a reply for an unknown id and a bad body
    stranger = envelope.pack(envelope.make_header("not-mine", ok=True), {"x": 1})
    bad_body = [envelope.pack(envelope.make_header("placeholder"), {})[0], b"\xc1"]
    stand_in.raw_out = [
        [b"GARBAGE"],
        [b"MDPC02", b"\x09", b"echo", b"x"],
        mdp.encode(mdp.ClientReply(b"echo", tuple(stranger))),
        mdp.encode(mdp.ClientReply(b"echo", (b"not-an-envelope",))),
    ]

    def script(got: Got, nth: int) -> Out:
        header = envelope.make_header(got.env.id)
        return [(True, [envelope.pack(header, {})[0], bad_body[1]]), ok(got, {"real": True})]

    stand_in.script = script
    # When the client calls
    env = client.call("echo", {})
    # Then only the real reply came through, on the first attempt
    assert env.payload == {"real": True}
    assert len(stand_in.seen) == 1


def test_service_available_uses_mmi_service(stand_in: StandIn, client: Client) -> None:
    # Given a broker that knows only the service "echo"
    def script(got: Got, nth: int) -> Out:
        assert got.service == b"mmi.service"
        return [(True, [b"200" if got.body == (b"echo",) else b"404"])]

    stand_in.script = script
    # When / Then the client asks for a known and an unknown service
    assert client.service_available("echo") is True
    assert client.service_available("nope") is False


def test_service_available_is_none_without_an_answer(stand_in: StandIn, client: Client) -> None:
    # Given a broker that never answers
    stand_in.script = lambda got, nth: []
    # When / Then the question times out once and gives None
    assert client.service_available("echo", timeout=0.1) is None
    assert len(stand_in.seen) == 1


def test_snapshot_returns_the_mmi_storymesh_payload(stand_in: StandIn, client: Client) -> None:
    # Given a broker answering mmi.storymesh.snapshot with an envelope
    stand_in.script = lambda got, nth: [ok(got, {"version": 1, "services": {}})]
    # When the client asks for a snapshot
    snap = client.snapshot()
    # Then it gets the payload, and it sent an envelope request with an empty payload
    assert snap == {"version": 1, "services": {}}
    assert stand_in.seen[0].service == b"mmi.storymesh.snapshot"
    assert stand_in.seen[0].env.payload == {}


def test_snapshot_against_a_broker_without_it_raises(stand_in: StandIn, client: Client) -> None:
    # Given a broker that answers 501 (not implemented), raw, as RFC 8 says
    stand_in.script = lambda got, nth: [(True, [b"501"])]
    # When / Then the snapshot fails with a clear error instead of hanging
    with pytest.raises(RequestFailed, match="501"):
        client.snapshot()


# --- through the real broker (testkit.mesh.Mesh) ------------------------------------------

@pytest.fixture
def mesh() -> Iterator[Mesh]:
    with Mesh() as m:
        yield m


def test_real_broker_echo_streams_pipelines_and_reports_services(mesh: Mesh) -> None:
    # Given the real broker with one echo worker process of two slots
    mesh.add_echo(slots=2)
    mesh.wait_services("echo")
    with mesh.client() as client:
        # When a client streams one request and pipelines ten more
        streamed = list(client.stream("echo", {"partials": 3, "png": bytes(6000)}))
        rids = [client.send("echo", {"n": n, "sleep": 0.05}) for n in range(10)]
        results = [client.result(rid).payload["n"] for rid in rids]
        # Then partials, then the final, came through the broker; every id got its own reply
        assert [r.final for r in streamed] == [False, False, False, True]
        assert streamed[-1].payload == {"partials": 3, "png": bytes(6000)}
        assert results == list(range(10))
        # And MMI and the snapshot describe the registered workers
        assert client.service_available("echo") is True
        assert client.service_available("nobody") is False
        snap = client.snapshot()
    workers = [w for w in snap["workers"] if w["service"] == "echo"]
    assert len(workers) == 2
    assert all(w["meta"]["hb_busy"] is True for w in workers)


def test_real_broker_error_final_raises_and_the_worker_keeps_serving(mesh: Mesh) -> None:
    # Given an echo worker behind the real broker
    mesh.add_echo()
    mesh.wait_services("echo")
    with mesh.client() as client:
        # When a request fails inside the agent
        with pytest.raises(RequestFailed) as caught:
            client.call("echo", {"fail": "not_found"})
        # Then the client gets the agent's code, and the next request is served
        assert caught.value.code == "not_found"
        assert client.call("echo", {"x": 1}).payload == {"x": 1}


def test_workers_re_register_after_a_broker_restart_and_a_client_retry_succeeds(
        mesh: Mesh) -> None:
    # Given an echo worker registered with the real broker
    mesh.add_echo()
    mesh.wait_services("echo")
    # When the broker is stopped and a new one binds the same endpoint
    mesh.restart_broker()
    with mesh.client(timeout=1.0, retries=4) as client:
        env = client.call("echo", {"after": "restart"})
        # Then the worker came back to the new broker and the request was served within
        # the client's attempts (4 x 1 s)
        assert env.payload == {"after": "restart"}
        assert client.service_available("echo") is True
