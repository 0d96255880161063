"""Unit tests of BrokerCore: frames and a fake clock in, `(routing_id, frames)` out.

No sockets and no sleeping: `Mesh` holds a BrokerCore and a float clock that tests move by
hand; `tick_until` calls on_tick a few times per heartbeat interval, as the server does.
Every output is decoded with the pure codec (mdp.parse_to_worker / parse_to_client) and
error bodies with envelope.unpack, so these tests check the bytes a peer would really get.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from storymesh.core import envelope, mdp, schema
from storymesh.core.broker import BrokerCore, Send
from storymesh.core.mdp import ClientReply, Dialect, Disconnect, Heartbeat, WorkerRequest
from testkit.mesh import fast_settings

V01, V02, V02E = Dialect.V01, Dialect.V02, Dialect.V02E
WALL_OFFSET = 1_700_000_000.0  # the wall clock runs this far ahead of the monotonic one
HB_BUSY = msgpack.packb({"hb_busy": True, "backend": "embedded", "model": "tiny",
                         "device": "cpu", "dtype": "auto", "slots": 1, "host": "box",
                         "pid": 4242})


class Mesh:
    """A BrokerCore with a hand-driven clock; heartbeat 1 s x liveness 3 unless overridden."""

    def __init__(self, **flags: Any) -> None:
        base: dict[str, Any] = {"heartbeat_interval": 1.0, "liveness": 3, "service_wait": 30.0,
                                "busy_timeout": 100.0}
        base.update(flags)
        self.settings = fast_settings(**base)
        self.now = 0.0
        self.core = BrokerCore(self.settings.broker_section(), self.now)

    @property
    def wall(self) -> float:
        return self.now + WALL_OFFSET

    # --- peers send -------------------------------------------------------------------

    def send(self, sender: bytes, frames: list[Any]) -> list[Send]:
        return self.core.on_frames(sender, list(frames), self.now, self.wall)

    def ready(self, wid: bytes, service: bytes = b"echo", dialect: Dialect = V02,
              meta: bytes | None = HB_BUSY) -> list[Send]:
        return self.send(wid, mdp.encode(mdp.Ready(service, meta, dialect)))

    def request(self, cid: bytes, rid: str = "r1", service: bytes = b"echo",
                dialect: Dialect = V02, payload: dict[str, Any] | None = None,
                **header: Any) -> list[Send]:
        body = envelope.pack(envelope.make_header(rid, **header), payload or {"text": rid})
        return self.send(cid, mdp.encode(mdp.ClientRequest(service, tuple(body), dialect)))

    def reply(self, wid: bytes, cid: bytes, body: tuple[Any, ...], final: bool = True,
              dialect: Dialect = V02) -> list[Send]:
        return self.send(wid, mdp.encode(mdp.WorkerReply(cid, body, final, dialect)))

    def heartbeat(self, wid: bytes, dialect: Dialect = V02) -> list[Send]:
        return self.send(wid, mdp.encode(Heartbeat(dialect)))

    # --- time -------------------------------------------------------------------------

    def tick_until(self, until: float, step: float = 0.25) -> list[Send]:
        """Advance the clock to `until` in `step`s, ticking at each; all sends, in order."""
        out: list[Send] = []
        while self.now + step <= until + 1e-9:
            self.now = round(self.now + step, 6)
            out += self.core.on_tick(self.now, self.wall)
        if self.now < until:
            self.now = until
            out += self.core.on_tick(self.now, self.wall)
        return out

    def snapshot(self) -> dict[str, Any]:
        return self.core.snapshot(self.now)


# --- decoding what the broker sent --------------------------------------------------------

def to_worker(out: list[Send], wid: bytes) -> list[mdp.ToWorker]:
    return [mdp.parse_to_worker(frames) for ident, frames in out if ident == wid]


def to_client(out: list[Send], cid: bytes) -> list[ClientReply]:
    return [mdp.parse_to_client(frames) for ident, frames in out if ident == cid]


def requests_to(out: list[Send], wid: bytes) -> list[WorkerRequest]:
    return [m for m in to_worker(out, wid) if isinstance(m, WorkerRequest)]


def rid_of(req: WorkerRequest | ClientReply) -> str:
    return str(envelope.read_header(req.body[0])["id"])


def error_of(reply: ClientReply) -> dict[str, Any]:
    env = envelope.unpack(reply.body)
    assert env.header["ok"] is False
    error: dict[str, Any] = env.payload["error"]
    return error


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


def final_body(rid: str, **payload: Any) -> tuple[Any, ...]:
    return tuple(envelope.pack(envelope.make_header(rid, ok=True), payload or {"done": rid}))


# --- dispatch -----------------------------------------------------------------------------

def test_the_least_recently_used_idle_worker_gets_the_next_request() -> None:
    # Given three idle workers that registered in the order w1, w2, w3
    m = Mesh()
    for wid in (b"w1", b"w2", b"w3"):
        m.ready(wid)
    m.heartbeat(b"w1")  # a heartbeat is life, not use: it must not reorder the LRU list
    # When a request arrives, Then w1 (idle longest) gets it
    assert rid_of(only(requests_to(m.request(b"c1", "a"), b"w1"))) == "a"
    # When w1 finishes, it goes to the back: the next two go to w2, then w3
    m.reply(b"w1", b"c1", final_body("a"))
    assert requests_to(m.request(b"c1", "b"), b"w2")
    m.reply(b"w2", b"c1", final_body("b"))
    assert requests_to(m.request(b"c1", "c"), b"w3")
    # And after w3 is busy, w1 (used before w2) is next
    assert requests_to(m.request(b"c1", "d"), b"w1")


def test_request_reaches_the_worker_with_client_address_and_untouched_body() -> None:
    m = Mesh()
    m.ready(b"w1", dialect=V01)
    body = tuple(envelope.pack(envelope.make_header("x"), {"text": "hi"}))
    out = m.send(b"c1", [b"MDPC02", b"\x01", b"echo", *body])
    ident, frames = only(out)
    assert ident == b"w1"
    assert frames[:5] == [b"", b"MDPW01", b"\x02", b"c1", b""]
    assert frames[5] is body[0]
    assert frames[6] is body[1]


def test_partials_are_relayed_in_order_then_final_and_the_worker_is_idle_again() -> None:
    # Given a 0.2 client whose request a 0.2 worker holds
    m = Mesh()
    m.ready(b"w1")
    m.request(b"c1", "r1")
    # When the worker streams two PARTIALs and a FINAL
    out = m.reply(b"w1", b"c1", (b"h", b"p1"), final=False)
    out += m.reply(b"w1", b"c1", (b"h", b"p2"), final=False)
    out += m.reply(b"w1", b"c1", (b"h", b"end"))
    # Then the client gets them in order as PARTIAL 0x02, PARTIAL 0x02, FINAL 0x03
    assert [ident for ident, _ in out] == [b"c1", b"c1", b"c1"]
    assert [f for _, f in out] == [
        [b"MDPC02", b"\x02", b"echo", b"h", b"p1"],
        [b"MDPC02", b"\x02", b"echo", b"h", b"p2"],
        [b"MDPC02", b"\x03", b"echo", b"h", b"end"],
    ]
    # And the worker is idle and takes the next request
    assert only(m.snapshot()["workers"])["state"] == "idle"
    assert requests_to(m.request(b"c2", "r2"), b"w1")
    assert m.core.counters["partials"] == 2
    assert m.core.counters["replies"] == 1


def test_a_partial_keeps_the_worker_busy() -> None:
    m = Mesh()
    m.ready(b"w1")
    m.request(b"c1", "r1")
    m.reply(b"w1", b"c1", (b"h", b"p1"), final=False)
    assert only(m.snapshot()["workers"])["state"] == "busy"
    # a second request must queue, not go to the worker still streaming
    assert m.request(b"c2", "r2") == []
    assert m.snapshot()["services"]["echo"]["queue"] == 1


def test_a_0_1_client_served_by_a_0_2_worker_gets_only_the_final_as_one_reply() -> None:
    m = Mesh()
    m.ready(b"w1", dialect=V02)
    m.request(b"c1", "r1", dialect=V01)
    # When the worker sends PARTIALs, Then nothing reaches the 0.1 client
    assert m.reply(b"w1", b"c1", (b"h", b"p1"), final=False) == []
    assert m.reply(b"w1", b"c1", (b"h", b"p2"), final=False) == []
    # When it sends FINAL, Then the client gets exactly one 0.1 REPLY with the FINAL body
    out = m.reply(b"w1", b"c1", (b"h", b"end"))
    assert out == [(b"c1", [b"", b"MDPC01", b"echo", b"h", b"end"])]
    assert m.core.counters["partials"] == 2


def test_a_0_1_worker_serving_a_0_2_client_replies_as_final() -> None:
    m = Mesh()
    m.ready(b"w1", dialect=V01)
    out = m.request(b"c1", "r1", dialect=V02)
    assert only(requests_to(out, b"w1")).dialect is V01
    out = m.send(b"w1", [b"", b"MDPW01", b"\x03", b"c1", b"", b"h", b"done"])
    assert out == [(b"c1", [b"MDPC02", b"\x03", b"echo", b"h", b"done"])]


def test_a_0_2e_client_gets_replies_in_its_own_dialect_without_service() -> None:
    # Given a majortomo-style client: "" | MDPC02 | 0x02 | service | body
    m = Mesh()
    m.ready(b"w1")
    out = m.send(b"c1", [b"", b"MDPC02", b"\x02", b"echo", b"h", b"p"])
    assert only(requests_to(out, b"w1")).body == (b"h", b"p")
    # When the worker streams, Then PARTIAL is 0x03 and FINAL 0x04, with no service frame
    out = m.reply(b"w1", b"c1", (b"h", b"part"), final=False)
    out += m.reply(b"w1", b"c1", (b"h", b"end"))
    assert out == [(b"c1", [b"", b"MDPC02", b"\x03", b"h", b"part"]),
                   (b"c1", [b"", b"MDPC02", b"\x04", b"h", b"end"])]


def test_a_0_2e_worker_gets_requests_and_heartbeats_in_its_dialect() -> None:
    m = Mesh()
    m.send(b"w1", [b"", b"MDPW02", b"\x01", b"echo"])
    out = m.request(b"c1", "r1")
    _, frames = only(out)
    assert frames[:5] == [b"", b"MDPW02", b"\x02", b"c1", b""]
    out = m.send(b"w1", [b"", b"MDPW02", b"\x04", b"c1", b"", b"h", b"ok"])
    assert out == [(b"c1", [b"MDPC02", b"\x03", b"echo", b"h", b"ok"])]
    assert (b"w1", [b"", b"MDPW02", b"\x05"]) in m.tick_until(1.0)


def test_foreign_bodies_are_relayed_untouched() -> None:
    # Given a client body that is not a storymesh envelope (zero-copy buffer frames)
    m = Mesh()
    m.ready(b"w1", meta=None)
    ask, extra = memoryview(b"\x00not msgpack"), memoryview(b"second")
    out = m.send(b"c1", [b"MDPC02", b"\x01", b"echo", ask, extra])
    # Then the worker gets the very same frame objects
    request = only(out)[1]
    assert request[-2] is ask
    assert request[-1] is extra
    # And the worker's foreign reply reaches the client untouched as well
    answer = memoryview(b"plain answer")
    out = m.send(b"w1", [b"MDPW02", b"\x04", b"c1", b"", answer])
    assert only(out)[1][-1] is answer


# --- heartbeats and liveness --------------------------------------------------------------

def test_heartbeats_go_to_idle_and_busy_workers_each_interval() -> None:
    # Given an idle 0.1 worker and a busy 0.2 worker
    m = Mesh()
    m.ready(b"idle", dialect=V01)
    m.ready(b"busy")
    m.request(b"c1", "r1")  # goes to "idle" (registered first, so least recently used) ...
    m.request(b"c2", "r2")  # ... and this one to "busy"
    states = {w["id"]: w["state"] for w in m.snapshot()["workers"]}
    assert states == {b"idle".hex(): "busy", b"busy".hex(): "busy"}
    m.reply(b"idle", b"c1", final_body("r1"))  # "idle" is idle again, "busy" stays busy
    for t in (1.0, 2.0):
        # When one interval passes (each worker keeps talking, so nobody expires)
        m.heartbeat(b"idle", V01)
        m.heartbeat(b"busy")
        out = m.tick_until(t)
        # Then each got exactly one HEARTBEAT, in its own dialect
        assert [f for i, f in out if i == b"idle"] == [[b"", b"MDPW01", b"\x04"]]
        assert [f for i, f in out if i == b"busy"] == [[b"MDPW02", b"\x05"]]


def test_a_silent_worker_is_dropped_after_liveness_and_its_request_goes_first() -> None:
    # Given two heartbeating workers, each holding a request, and a third request queued
    m = Mesh(heartbeat_interval=1.0, liveness=3)
    m.tick_until(0.0)
    m.ready(b"w1")
    m.ready(b"w2")
    m.request(b"c1", "lost")   # -> w1, which will fall silent
    m.request(b"c2", "slow")   # -> w2
    m.request(b"c3", "later")  # queued
    # When only w2 keeps heartbeating
    dropped_at = None
    for step in range(1, 30):
        t = step * 0.25
        if t % 1.0 == 0:
            m.heartbeat(b"w2")
        m.tick_until(t)
        if dropped_at is None and b"w1" not in m.core.workers:
            dropped_at = t
    # Then w1 is forgotten after liveness x interval (3 s), within one interval of it
    assert dropped_at is not None
    assert 3.0 < dropped_at <= 4.0
    assert b"w2" in m.core.workers
    assert m.core.counters["workers_expired"] == 1
    # And when w2 finishes, it gets w1's lost request before the queued one
    out = m.reply(b"w2", b"c2", final_body("slow"))
    req = only(requests_to(out, b"w2"))
    assert req.client == b"c1"
    assert rid_of(req) == "lost"
    assert m.core.counters["redispatched"] == 1


def test_the_lost_request_goes_to_an_idle_worker_at_once() -> None:
    m = Mesh()
    m.ready(b"w1")
    m.request(b"c1", "r1")
    m.ready(b"w2")  # idle, heartbeating
    out: list[Send] = []
    for t in (1.0, 2.0, 3.0, 4.0):
        m.heartbeat(b"w2")
        out += m.tick_until(t)
    req = only(requests_to(out, b"w2"))
    assert req.client == b"c1"
    assert rid_of(req) == "r1"


def test_any_command_from_a_worker_refreshes_its_liveness() -> None:
    m = Mesh()
    m.ready(b"w1")
    m.request(b"c1", "r1")
    for t in (2.0, 4.0, 6.0, 8.0):
        m.tick_until(t)
        m.reply(b"w1", b"c1", (b"h", b"p"), final=False)  # a PARTIAL is life too
    assert b"w1" in m.core.workers


def test_a_busy_worker_without_hb_busy_waits_for_busy_timeout_not_liveness() -> None:
    # Given a foreign busy worker (no hb_busy meta) and a storymesh one (hb_busy)
    m = Mesh(heartbeat_interval=1.0, liveness=3, busy_timeout=20.0)
    m.ready(b"foreign", meta=None)
    m.ready(b"native", meta=HB_BUSY)
    m.request(b"c1", "f")
    m.request(b"c2", "n")
    assert m.core.workers[b"foreign"].request is not None
    # When both fall silent past liveness x interval
    m.tick_until(5.0)
    # Then the storymesh worker is dropped, the foreign one is kept (it may be computing)
    assert b"native" not in m.core.workers
    assert b"foreign" in m.core.workers
    m.tick_until(19.0)
    assert b"foreign" in m.core.workers
    # And after busy_timeout the foreign one is dropped too
    m.tick_until(22.0)
    assert b"foreign" not in m.core.workers


def test_an_idle_worker_without_hb_busy_still_follows_liveness() -> None:
    m = Mesh(heartbeat_interval=1.0, liveness=3, busy_timeout=100.0)
    m.ready(b"foreign", meta=None)
    m.tick_until(5.0)
    assert b"foreign" not in m.core.workers


# --- attempts, re-dispatch, unreachable ---------------------------------------------------

def test_after_max_attempts_dispatches_the_client_gets_worker_lost() -> None:
    # Given max_attempts 2 and a request from a 0.2 client
    m = Mesh(max_attempts=2)
    m.ready(b"w1")
    m.request(b"c1", "job", corr="story-1")
    # When its first worker disconnects, Then it is re-queued, no reply yet
    assert m.send(b"w1", [b"MDPW02", b"\x06"]) == []
    # When a second worker takes it and also dies
    assert requests_to(m.ready(b"w2"), b"w2")
    out = m.send(b"w2", [b"MDPW02", b"\x06"])
    # Then the client gets an error FINAL worker_lost, with its id and corr echoed
    reply = only(to_client(out, b"c1"))
    assert reply.final
    assert reply.service == b"echo"
    env = envelope.unpack(reply.body)
    assert env.id == "job"
    assert env.corr == "story-1"
    assert env.header["ok"] is False
    assert env.payload["error"]["code"] == "worker_lost"
    assert env.payload["error"]["retryable"] is True
    assert m.core.counters["worker_lost"] == 1
    # And a third worker gets nothing
    assert m.ready(b"w3") == []


def test_an_unreachable_worker_request_is_requeued_without_counting_the_attempt() -> None:
    # Given max_attempts 1 and a REQUEST the broker tried to send to w1
    m = Mesh(max_attempts=1)
    m.ready(b"w1")
    ident, frames = only(m.request(b"c1", "r1"))
    assert ident == b"w1"
    # When the send fails (EHOSTUNREACH)
    out = m.core.on_unreachable(b"w1", frames, m.now)
    # Then w1 is forgotten and the request is not failed: it was never delivered
    assert out == []
    assert b"w1" not in m.core.workers
    assert m.core.counters["unreachable"] == 1
    # And the next worker gets it, as its first attempt
    req = only(requests_to(m.ready(b"w2"), b"w2"))
    assert rid_of(req) == "r1"
    assert only(m.snapshot()["workers"])["request"]["attempt"] == 1


def test_an_unreachable_heartbeat_drops_the_worker_and_counts_the_attempt() -> None:
    m = Mesh(max_attempts=1)
    m.ready(b"w1")
    m.request(b"c1", "r1")
    out = m.core.on_unreachable(b"w1", mdp.encode(Heartbeat(V02)), m.now)
    assert error_of(only(to_client(out, b"c1")))["code"] == "worker_lost"


def test_unreachable_client_is_only_counted() -> None:
    m = Mesh()
    assert m.core.on_unreachable(b"gone-client", [b"MDPC02", b"\x03", b"echo"], m.now) == []
    assert m.core.counters["unreachable"] == 1


# --- queue bounds, deadlines, missing services ---------------------------------------------

def test_a_full_queue_answers_busy_with_a_retry_hint() -> None:
    m = Mesh(queue_limit=2)
    assert m.request(b"c1", "a") == []
    assert m.request(b"c1", "b") == []
    reply = only(to_client(m.request(b"c2", "c"), b"c2"))
    error = error_of(reply)
    assert error["code"] == "busy"
    assert error["retryable"] is True
    assert isinstance(error["retry_after"], float)
    assert error["retry_after"] > 0
    assert envelope.unpack(reply.body).id == "c"
    assert m.core.counters["busy"] == 1
    assert m.snapshot()["services"]["echo"]["queue"] == 2


def test_a_deadline_already_past_is_expired_at_once() -> None:
    m = Mesh()
    m.ready(b"w1")
    out = m.request(b"c1", "late", deadline=m.wall - 0.5)
    reply = only(to_client(out, b"c1"))
    assert error_of(reply)["code"] == "expired"
    assert requests_to(out, b"w1") == []
    assert m.core.counters["expired"] == 1


def test_a_deadline_passing_while_queued_is_expired_on_tick() -> None:
    # Given a busy service and a request with a deadline 5 s ahead (wall clock)
    m = Mesh(service_wait=60.0, liveness=100)
    m.now = 10.0
    m.ready(b"w1")
    m.request(b"c0", "holding")
    assert m.request(b"c1", "soon", deadline=m.wall + 5.0) == []
    # When the clock passes it, Then the client gets `expired` (and nothing before)
    out = m.tick_until(14.5)
    assert to_client(out, b"c1") == []
    out = m.tick_until(15.25)
    assert error_of(only(to_client(out, b"c1")))["code"] == "expired"
    assert m.snapshot()["services"]["echo"]["queue"] == 0


def test_a_deadline_is_converted_with_the_wall_clock_at_receipt() -> None:
    # Given a request whose deadline is 2 s after the wall time it arrives at
    m = Mesh(service_wait=60.0)
    m.now = 500.0
    m.request(b"c1", "r", deadline=m.wall + 2.0)
    # Then it expires 2 s later on the monotonic clock, not at some absolute time
    assert to_client(m.tick_until(501.75), b"c1") == []
    assert error_of(only(to_client(m.tick_until(502.25), b"c1")))["code"] == "expired"


def test_no_worker_for_a_service_waits_then_no_such_service() -> None:
    m = Mesh(service_wait=5.0)
    assert m.request(b"c1", "r1", service=b"nobody") == []
    assert to_client(m.tick_until(4.75), b"c1") == []
    reply = only(to_client(m.tick_until(5.25), b"c1"))
    assert reply.service == b"nobody"
    error = error_of(reply)
    assert error["code"] == "no_such_service"
    assert error["retryable"] is True
    assert m.core.counters["no_such_service"] == 1


def test_a_worker_arriving_within_service_wait_serves_the_request() -> None:
    m = Mesh(service_wait=5.0)
    m.request(b"c1", "r1", service=b"late")
    m.tick_until(4.0)
    out = m.ready(b"w1", service=b"late")
    assert rid_of(only(requests_to(out, b"w1"))) == "r1"
    out = []
    for t in (5.0, 6.0, 7.0, 8.0):
        m.heartbeat(b"w1")
        out += m.tick_until(t)
    assert to_client(out, b"c1") == []
    assert m.reply(b"w1", b"c1", final_body("r1"))[0][0] == b"c1"


def test_a_request_requeued_after_its_worker_died_waits_service_wait_again() -> None:
    # Given the only worker of a service taking a request 25 s after it was queued
    m = Mesh(service_wait=30.0, heartbeat_interval=1.0, liveness=3)
    m.request(b"c1", "r1")
    for t in range(1, 26):
        m.tick_until(float(t))
    assert requests_to(m.ready(b"w1"), b"w1")
    # When that worker dies (DISCONNECT) and the request is re-queued
    m.send(b"w1", [b"MDPW02", b"\x06"])
    # Then the request waits a full service_wait for a worker to come back; it is not
    # failed as no_such_service because it was first queued long ago
    out = m.tick_until(40.0)
    assert to_client(out, b"c1") == []
    req = only(requests_to(m.ready(b"w2"), b"w2"))
    assert rid_of(req) == "r1"


def test_a_lost_request_is_not_dispatched_to_a_worker_that_expires_in_the_same_tick() -> None:
    # Given an agent with two slots: w1 busy with a request, w2 idle; and max_attempts 2
    m = Mesh(max_attempts=2, heartbeat_interval=1.0, liveness=3)
    m.ready(b"w1")
    m.ready(b"w2")
    m.request(b"c1", "r1")
    assert b"w1" in m.core.workers
    assert m.core.workers[b"w1"].request is not None
    # When the agent process dies: both connections fall silent and expire together
    out = m.tick_until(5.0)
    assert not m.core.workers
    # Then the request was not sent to w2 (already dead), and it is still held, not failed
    assert requests_to(out, b"w2") == []
    assert to_client(out, b"c1") == []
    # And a restarted worker gets it as its second and last attempt
    req = only(requests_to(m.ready(b"w3"), b"w3"))
    assert rid_of(req) == "r1"


# --- protocol violations -----------------------------------------------------------------

def test_ready_twice_disconnects_in_the_workers_dialect_and_requeues_its_request() -> None:
    # Given a busy 0.1 worker and an idle 0.2 one
    m = Mesh()
    m.ready(b"w1", dialect=V01)
    m.request(b"c1", "r1")
    m.ready(b"w2")
    # When w1 sends READY again
    out = m.ready(b"w1", dialect=V01)
    # Then w1 gets a 0.1 DISCONNECT, is forgotten, and w2 gets its request
    assert (b"w1", [b"", b"MDPW01", b"\x05"]) in out
    assert b"w1" not in m.core.workers
    assert rid_of(only(requests_to(out, b"w2"))) == "r1"
    assert m.core.counters["violations"] == 1


@pytest.mark.parametrize(("name", "frames"), [
    ("heartbeat before ready", [b"MDPW02", b"\x05"]),
    ("partial before ready", [b"MDPW02", b"\x03", b"c1", b"", b"x"]),
    ("final before ready", [b"MDPW02", b"\x04", b"c1", b"", b"x"]),
])
def test_commands_before_ready_get_disconnect(name: str, frames: list[bytes]) -> None:
    m = Mesh()
    out = m.send(b"w9", frames)
    assert out == [(b"w9", [b"MDPW02", b"\x06"])]
    assert b"w9" not in m.core.workers
    assert m.core.counters["violations"] == 1


def test_a_0_1_heartbeat_before_ready_gets_a_0_1_disconnect() -> None:
    m = Mesh()
    assert m.send(b"w9", [b"", b"MDPW01", b"\x04"]) == [(b"w9", [b"", b"MDPW01", b"\x05"])]


def test_a_reply_from_an_idle_worker_gets_disconnect() -> None:
    m = Mesh()
    m.ready(b"w1")
    out = m.reply(b"w1", b"c1", (b"x",))
    assert out == [(b"w1", [b"MDPW02", b"\x06"])]
    assert b"w1" not in m.core.workers
    assert m.snapshot()["services"].get("echo", {"workers": 0})["workers"] == 0


def test_a_reply_to_the_wrong_client_disconnects_and_requeues() -> None:
    # Given w1 serving c1's request and w2 idle
    m = Mesh()
    m.ready(b"w1")
    m.request(b"c1", "r1")
    m.ready(b"w2")
    # When w1 sends a FINAL addressed to c2
    out = m.reply(b"w1", b"c2", (b"forged",))
    # Then c2 gets nothing, w1 is disconnected, and w2 now serves c1's request
    assert to_client(out, b"c2") == []
    assert (b"w1", [b"MDPW02", b"\x06"]) in out
    req = only(requests_to(out, b"w2"))
    assert req.client == b"c1"
    assert rid_of(req) == "r1"


def test_ready_for_an_mmi_name_is_disconnected_and_not_registered() -> None:
    m = Mesh()
    assert m.ready(b"w1", service=b"mmi.x", dialect=V01) == [(b"w1", [b"", b"MDPW01", b"\x05"])]
    assert m.ready(b"w2", service=b"mmi.service") == [(b"w2", [b"MDPW02", b"\x06"])]
    assert not m.core.workers
    # and the names are not services a client could reach through a worker
    reply = only(to_client(m.send(b"c1", [b"MDPC02", b"\x01", b"mmi.service", b"mmi.x"]),
                           b"c1"))
    assert reply.body == (b"404",)


def test_ready_for_an_invalid_service_name_is_disconnected() -> None:
    m = Mesh()
    assert m.ready(b"w1", service=b"bad name") == [(b"w1", [b"MDPW02", b"\x06"])]
    assert m.ready(b"w2", service=b"x" * (schema.MAX_SERVICE_NAME + 1)) == [
        (b"w2", [b"MDPW02", b"\x06"])]
    assert not m.core.workers


def test_a_worker_sending_request_is_disconnected() -> None:
    m = Mesh()
    m.ready(b"w1")
    out = m.send(b"w1", [b"MDPW02", b"\x02", b"c1", b"", b"x"])
    assert out == [(b"w1", [b"MDPW02", b"\x06"])]
    assert b"w1" not in m.core.workers
    assert m.core.counters["malformed"] == 1


def test_disconnect_before_ready_is_accepted_silently() -> None:
    m = Mesh()
    assert m.send(b"w9", [b"MDPW02", b"\x06"]) == []
    assert m.send(b"w8", [b"", b"MDPW01", b"\x05"]) == []
    assert m.core.counters["violations"] == 0
    assert m.core.counters["malformed"] == 0


def test_a_worker_disconnect_gets_no_answer_and_it_is_forgotten() -> None:
    m = Mesh()
    m.ready(b"w1")
    assert m.send(b"w1", [b"MDPW02", b"\x06"]) == []
    assert not m.core.workers
    assert m.tick_until(2.0) == []  # no heartbeat to a worker that left


MALFORMED = [
    [],
    [b""],
    [b"HTTP/1.1 200 OK"],
    [b"MDPC01", b"echo", b"x"],
    [b"MDPC02", b"\x01"],
    [b"MDPC02", b"\x02", b"echo", b"x"],
    [b"MDPC02", b"\x01", b"", b"x"],
    [b"MDPW02", b"\x09"],
    [b"MDPW02", b"\x04", b"c1", b"no delimiter"],
    [b"MDPW02", b"\x01", b"echo", b"a", b"b", b"c"],
    [b"", b"MDPW01", b"\x06"],
]


@pytest.mark.parametrize("frames", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_messages_are_counted_and_dropped(frames: list[bytes]) -> None:
    m = Mesh()
    assert m.send(b"stranger", frames) == []
    assert m.core.counters["malformed"] == 1
    assert not m.core.workers
    assert m.core.queued() == 0


def test_a_malformed_message_from_a_registered_worker_disconnects_it() -> None:
    m = Mesh()
    m.ready(b"w1")
    m.request(b"c1", "r1")
    m.ready(b"w2")
    out = m.send(b"w1", [b"MDPW02", b"\x04", b"c1"])  # FINAL without the delimiter
    assert (b"w1", [b"MDPW02", b"\x06"]) in out
    assert m.core.counters["malformed"] == 1
    assert rid_of(only(requests_to(out, b"w2"))) == "r1"


def test_too_many_frames_are_dropped_as_malformed() -> None:
    m = Mesh(max_frames=6)
    m.ready(b"w1")
    assert m.send(b"c1", [b"MDPC02", b"\x01", b"echo", b"1", b"2", b"3", b"4"]) == []
    assert m.core.counters["malformed"] == 1
    assert m.core.counters["requests"] == 0
    assert m.send(b"c1", [b"MDPC02", b"\x01", b"echo", b"1", b"2", b"3"]) != []


# --- client-side errors --------------------------------------------------------------------

def test_an_oversized_request_is_answered_too_large() -> None:
    m = Mesh(max_message_bytes=1000)
    m.ready(b"w1")
    out = m.request(b"c1", "big", payload={"blob": "x" * 2000})
    reply = only(to_client(out, b"c1"))
    assert error_of(reply)["code"] == "too_large"
    assert envelope.unpack(reply.body).id == "big"
    assert requests_to(out, b"w1") == []


def test_a_newer_envelope_version_is_answered_unsupported_version() -> None:
    m = Mesh()
    m.ready(b"w1")
    header = msgpack.packb({"v": 2, "id": "future"})
    out = m.send(b"c1", [b"MDPC02", b"\x01", b"echo", header, msgpack.packb({})])
    reply = only(to_client(out, b"c1"))
    assert error_of(reply)["code"] == "unsupported_version"
    assert envelope.unpack(reply.body).id == "future"


def test_a_request_for_an_invalid_service_name_is_a_bad_request() -> None:
    m = Mesh()
    reply = only(to_client(m.request(b"c1", "r", service=b"no spaces"), b"c1"))
    assert error_of(reply)["code"] == "bad_request"


def test_errors_for_a_0_1_client_are_one_reply() -> None:
    m = Mesh(queue_limit=1)
    m.request(b"c1", "a", dialect=V01)
    _, frames = only(m.request(b"c1", "b", dialect=V01))
    assert frames[:3] == [b"", b"MDPC01", b"echo"]
    assert error_of(mdp.parse_to_client(frames))["code"] == "busy"


# --- MMI ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("dialect", "prefix"), [
    (V02, [b"MDPC02", b"\x03", b"mmi.service"]),
    (V01, [b"", b"MDPC01", b"mmi.service"]),
    (V02E, [b"", b"MDPC02", b"\x04"]),
])
def test_mmi_service_answers_200_or_404_raw(dialect: Dialect, prefix: list[bytes]) -> None:
    m = Mesh()
    m.ready(b"w1", service=b"echo")

    def ask(name: bytes) -> list[Send]:
        return m.send(b"c1", mdp.encode(mdp.ClientRequest(b"mmi.service", (name,), dialect)))

    assert ask(b"echo") == [(b"c1", [*prefix, b"200"])]
    assert ask(b"author") == [(b"c1", [*prefix, b"404"])]
    assert m.core.counters["mmi"] == 2


def test_mmi_service_is_404_for_a_service_with_only_waiting_requests() -> None:
    m = Mesh()
    m.request(b"c1", "r", service=b"ghost")
    out = m.send(b"c2", [b"MDPC02", b"\x01", b"mmi.service", b"ghost"])
    assert only(to_client(out, b"c2")).body == (b"404",)


def test_an_unknown_mmi_service_answers_501() -> None:
    m = Mesh()
    out = m.send(b"c1", [b"MDPC02", b"\x01", b"mmi.x", b"anything"])
    assert out == [(b"c1", [b"MDPC02", b"\x03", b"mmi.x", b"501"])]


def test_mmi_storymesh_snapshot_is_a_versioned_map() -> None:
    # Given a busy worker (with meta) serving a story request, one idle worker, one queued
    m = Mesh()
    m.ready(b"w1")
    m.ready(b"w2", dialect=V01, meta=None)
    m.now = 1.0
    m.request(b"c1", "r1", corr="story-7")
    m.request(b"c1", "r2")
    m.request(b"c1", "r3")
    m.now = 3.5
    m.reply(b"w2", b"c1", final_body("r2"))
    m.now = 4.0
    # When a client asks for the snapshot
    body = envelope.pack(envelope.make_header("snap-1"), {})
    out = m.send(b"mon", [b"MDPC02", b"\x01", b"mmi.storymesh.snapshot", *body])
    # Then it is one FINAL with a storymesh envelope echoing the id
    env = envelope.unpack(only(to_client(out, b"mon")).body)
    assert env.id == "snap-1"
    assert env.ok
    snap = env.payload
    assert snap["version"] == 1
    assert {"uptime", "pid", "counters", "services", "workers"} <= set(snap)
    assert snap["services"]["echo"]["workers"] == 2
    assert snap["services"]["echo"]["served"] == 1
    assert snap["counters"]["requests"] == 4
    assert snap["counters"]["replies"] == 1
    workers = {w["id"]: w for w in snap["workers"]}
    w1 = workers[b"w1".hex()]
    assert w1["state"] == "busy"
    assert w1["dialect"] == "0.2"
    assert w1["heartbeat_age"] == 4.0
    assert w1["request"]["id"] == "r1"
    assert w1["request"]["corr"] == "story-7"
    assert w1["request"]["attempt"] == 1
    assert w1["meta"]["hb_busy"] is True
    assert w1["meta"]["model"] == "tiny"
    w2 = workers[b"w2".hex()]
    assert w2["state"] == "busy"
    assert w2["dialect"] == "0.1"
    assert w2["heartbeat_age"] == 0.5
    assert w2["request"]["id"] == "r3"


def test_the_snapshot_works_without_a_storymesh_header() -> None:
    m = Mesh()
    out = m.send(b"mon", [b"MDPC02", b"\x01", b"mmi.storymesh.snapshot"])
    env = envelope.unpack(only(to_client(out, b"mon")).body)
    assert env.payload["version"] == 1
    assert env.id


# --- shutdown ------------------------------------------------------------------------------

def test_shutdown_answers_held_requests_shutting_down_and_disconnects_workers() -> None:
    # Given one request in flight on a 0.1 worker and one queued, from two clients
    m = Mesh()
    m.ready(b"w1", dialect=V01)
    m.request(b"c1", "inflight")
    m.request(b"c2", "queued", dialect=V01)
    # When the broker shuts down
    out = m.core.shutdown(m.now)
    # Then both clients get a retryable shutting_down FINAL, in their own dialect
    for cid, rid in ((b"c1", "inflight"), (b"c2", "queued")):
        reply = only(to_client(out, cid))
        error = error_of(reply)
        assert error["code"] == "shutting_down"
        assert error["retryable"] is True
        assert envelope.unpack(reply.body).id == rid
    assert only(to_client(out, b"c2")).dialect is V01
    # And the worker gets DISCONNECT in its dialect; nothing is held any more
    assert to_worker(out, b"w1") == [Disconnect(V01)]
    assert not m.core.workers
    assert m.core.queued() == 0
    assert m.core.counters["shutting_down"] == 2
