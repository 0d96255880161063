"""The worker runtime over real zmq sockets, against a stand-in broker written here.

The stand-in is a raw ROUTER on tcp://127.0.0.1:<random port> driven by storymesh.core.mdp: it
receives READY, sends REQUESTs, heartbeats (or goes silent), and records everything the
worker sends. Heartbeat intervals are short (0.1 s) and every wait is bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack
import pytest
import zmq

from storymesh.agents.echo import EchoAgent
from storymesh.core import envelope, mdp
from storymesh.errors import RetryableAgentError
from storymesh.runtime.agent import Agent, AgentInfo, Final, Partial, Reply, Request
from storymesh.runtime.worker import run_agent
from storymesh.settings import Settings
from testkit.clock import FakeClock

INTERVAL = 0.1
LIVENESS = 4


@dataclass
class Seen:
    """One message the stand-in received: the worker's routing id, its frames, parsed."""

    wid: bytes
    frames: list[bytes]
    msg: mdp.FromWorker


@dataclass
class StandInBroker:
    """A minimal ROUTER-side broker for one test: heartbeats known workers while it waits."""

    context: zmq.Context[Any]
    sock: zmq.Socket[Any] = field(init=False)
    endpoint: str = field(init=False)
    silent: bool = False  # True: stop heartbeating (the worker should think we are dead)
    workers: dict[bytes, float] = field(default_factory=dict)  # wid -> last heartbeat sent

    def __post_init__(self) -> None:
        self.sock = self.context.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"

    def send(self, wid: bytes, msg: mdp.ToWorker) -> None:
        self.sock.send_multipart([wid, *mdp.encode(msg)])

    def request(self, wid: bytes, payload: dict[str, Any], rid: str, *, corr: str | None = None,
                client: bytes = b"client-1", deadline: float | None = None) -> None:
        body = envelope.pack(envelope.make_header(rid, corr=corr, deadline=deadline), payload)
        self.send(wid, mdp.WorkerRequest(client, tuple(body)))

    def _beat(self) -> None:
        now = time.monotonic()
        for wid, last in list(self.workers.items()):
            if not self.silent and now - last >= INTERVAL:
                self.send(wid, mdp.Heartbeat())
                self.workers[wid] = now

    def next(self, timeout: float = 3.0,
             match: Callable[[Seen], bool] = lambda s: True) -> Seen:
        """The next message that matches, heartbeating meanwhile; skipped ones are dropped."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self._beat()
            if not self.sock.poll(20):
                continue
            frames = self.sock.recv_multipart()
            msg = mdp.parse(frames[1:])
            assert not isinstance(msg, mdp.ClientRequest), "a worker sent a client request"
            seen = Seen(frames[0], frames[1:], msg)
            if isinstance(seen.msg, mdp.Ready):
                self.workers[seen.wid] = 0.0
            if match(seen):
                return seen
        raise AssertionError(f"nothing matching arrived within {timeout}s")

    def ready(self, timeout: float = 3.0) -> Seen:
        return self.next(timeout, lambda s: isinstance(s.msg, mdp.Ready))

    def reply(self, timeout: float = 3.0) -> tuple[Seen, envelope.Envelope]:
        seen = self.next(timeout, lambda s: isinstance(s.msg, mdp.WorkerReply))
        assert isinstance(seen.msg, mdp.WorkerReply)
        return seen, envelope.unpack(seen.msg.body)

    def collect(self, seconds: float) -> list[Seen]:
        """Everything that arrives in `seconds` (heartbeating meanwhile)."""
        got: list[Seen] = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                got.append(self.next(left))
            except AssertionError:
                break
        return got


@dataclass
class RunningWorker:
    stop: threading.Event
    thread: threading.Thread
    result: dict[str, Any]

    def stop_and_wait(self, timeout: float = 3.0) -> int:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run_agent did not return"
        assert "error" not in self.result, self.result.get("error")
        code: int = self.result["code"]
        return code


@pytest.fixture
def stand_in(context: zmq.Context[Any]) -> Iterator[StandInBroker]:
    stand_in = StandInBroker(context)
    yield stand_in
    stand_in.sock.close(linger=0)


@pytest.fixture
def start_worker(stand_in: StandInBroker) -> Iterator[Callable[..., RunningWorker]]:
    started: list[RunningWorker] = []

    def start(agent: Agent | None = None, *, slots: int = 1,
              clock: Callable[[], float] = time.monotonic, **overrides: Any) -> RunningWorker:
        settings = replace(Settings(broker=stand_in.endpoint, heartbeat_interval=INTERVAL,
                                    liveness=LIVENESS, reconnect_max=0.2, drain_grace=2.0),
                           **overrides).peer_section()
        stop, ready = threading.Event(), threading.Event()
        result: dict[str, Any] = {}

        def target() -> None:
            try:
                result["code"] = run_agent(agent or EchoAgent(), settings, slots=slots,
                                           stop=stop, ready=ready, clock=clock)
            except Exception as exc:  # noqa: BLE001  (stop_and_wait reports it)
                result["error"] = exc

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        assert ready.wait(3.0), "the worker never sent READY"
        worker = RunningWorker(stop, thread, result)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop.set()
        worker.thread.join(3.0)


class CountingAgent(Agent):
    """Counts its calls; behaviour chosen per request by the payload key `do`."""

    service = "counting"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.torn_down = False

    def setup(self) -> AgentInfo:
        return AgentInfo(backend="test", model="m", device="cpu", dtype="float32")

    def handle(self, request: Request) -> Iterator[Reply]:
        self.calls.append(request.id)
        action = request.payload.get("do")
        if action == "crash":
            raise RuntimeError("boom")
        if action == "retryable":
            raise RetryableAgentError("model_error", "try again", retry_after=0.5)
        if action == "no_final":
            yield Partial({"step": 1})
            return
        yield Final({"n": len(self.calls)})

    def teardown(self) -> None:
        self.torn_down = True


def _code(env: envelope.Envelope) -> str:
    code: str = env.payload["error"]["code"]
    return code


# --- registration and serving ---------------------------------------------------------

def test_ready_carries_metadata_and_a_request_streams_partials_then_final(
        stand_in: StandInBroker, start_worker: Callable[..., RunningWorker]) -> None:
    # Given an echo worker that registered
    worker = start_worker()
    ready = stand_in.ready()
    assert isinstance(ready.msg, mdp.Ready)
    assert ready.msg.service == b"echo"
    assert ready.frames[:2] == [b"MDPW02", b"\x01"]
    assert len(ready.frames) == 4
    meta = msgpack.unpackb(ready.msg.meta)
    assert meta["hb_busy"] is True
    assert meta["backend"] == "builtin"
    assert meta["slots"] == 1
    # When it is sent a request for two partials with a binary value
    blob = bytes(range(256)) * 40
    stand_in.request(ready.wid, {"partials": 2, "blob": blob}, "r-1", corr="story-9")
    replies = [stand_in.reply() for _ in range(3)]
    # Then two PARTIALs then one FINAL come back to the client address, echoing id and corr
    assert [seen.msg.final for seen, _ in replies] == [False, False, True]  # type: ignore[union-attr]
    assert all(seen.msg.client == b"client-1" for seen, _ in replies)  # type: ignore[union-attr]
    assert [env.payload for _, env in replies[:2]] == [{"index": 0}, {"index": 1}]
    final = replies[2][1]
    assert (final.id, final.corr, final.ok) == ("r-1", "story-9", True)
    assert final.payload == {"partials": 2, "blob": blob}
    assert worker.stop_and_wait() == 0


def test_strict_mdp_ready_has_exactly_three_frames(
        stand_in: StandInBroker, start_worker: Callable[..., RunningWorker]) -> None:
    # Given a worker in strict MDP mode
    start_worker(strict_mdp=True)
    # When it registers
    ready = stand_in.ready()
    # Then READY is [MDPW02 | 0x01 | service] and nothing more
    assert ready.frames == [b"MDPW02", b"\x01", b"echo"]


def test_worker_heartbeats_while_a_handler_runs_for_a_second(
        stand_in: StandInBroker, start_worker: Callable[..., RunningWorker]) -> None:
    # Given a registered echo worker with a 0.1 s heartbeat
    start_worker()
    ready = stand_in.ready()
    # When it serves a request that sleeps 1 s
    stand_in.request(ready.wid, {"sleep": 1.0}, "slow")
    seen = stand_in.collect(0.8)
    # Then it kept heartbeating during the job, on the same connection
    beats = [s for s in seen if isinstance(s.msg, mdp.Heartbeat)]
    assert len(beats) >= 5
    assert {s.wid for s in beats} == {ready.wid}
    _, final = stand_in.reply()
    assert final.id == "slow"
    assert final.ok


def test_silent_broker_makes_the_worker_register_again_on_a_new_routing_id(
        stand_in: StandInBroker, start_worker: Callable[..., RunningWorker]) -> None:
    # Given a registered worker
    start_worker()
    first = stand_in.ready()
    # When the broker stops sending anything for longer than liveness x interval
    stand_in.silent = True
    second = stand_in.ready(timeout=2.0)
    # Then the worker comes back with READY from a NEW socket (new routing id)
    assert second.wid != first.wid
    # And it serves on the new connection
    stand_in.silent = False
    stand_in.request(second.wid, {"x": 1}, "after-reconnect")
    seen, final = stand_in.reply()
    assert seen.wid == second.wid
    assert final.payload == {"x": 1}


def test_disconnect_from_the_broker_makes_the_worker_register_again_after_the_first_backoff(
        stand_in: StandInBroker, start_worker: Callable[..., RunningWorker]) -> None:
    # Given a registered worker on a fake clock (first backoff: interval / 4 +-20%)
    clock = FakeClock()
    start_worker(clock=clock)
    first = stand_in.ready()
    # When the broker sends it DISCONNECT
    stand_in.send(first.wid, mdp.Disconnect())
    # Then it does not register again before the first backoff has passed on its clock
    # (the first wait also gives it the time to read the DISCONNECT at the unmoved clock)
    for step in (0.0, INTERVAL / 4 * 0.75):
        clock.advance(step)
        early = stand_in.collect(0.2)
        assert not [s for s in early if isinstance(s.msg, mdp.Ready)], step
    # And once it has, it registers again on a new routing id
    clock.advance(INTERVAL / 4 * 0.5)
    second = stand_in.ready(timeout=2.0)
    assert second.wid != first.wid


def test_a_job_whose_connection_dropped_has_its_result_dropped(
        stand_in: StandInBroker, start_worker: Callable[..., RunningWorker]) -> None:
    # Given a worker busy with a slow job
    start_worker()
    first = stand_in.ready()
    stand_in.request(first.wid, {"sleep": 2.0}, "lost")
    stand_in.collect(0.15)
    # When the broker goes silent and the worker re-registers meanwhile
    stand_in.silent = True
    second = stand_in.ready(timeout=2.0)
    stand_in.silent = False
    # Then no reply for the lost request arrives on either connection
    seen = stand_in.collect(0.6)
    assert not [s for s in seen if isinstance(s.msg, mdp.WorkerReply)]
    # And the new connection serves the re-dispatched request (same id) normally
    stand_in.request(second.wid, {"again": True}, "lost")
    seen_reply, final = stand_in.reply()
    assert seen_reply.wid == second.wid
    assert final.id == "lost"
    assert final.ok


# --- errors and idempotency -----------------------------------------------------------

def test_bad_bodies_get_error_finals_and_the_worker_keeps_serving(
        stand_in: StandInBroker, start_worker: Callable[..., RunningWorker]) -> None:
    # Given a registered echo worker
    start_worker()
    wid = stand_in.ready().wid
    # When it gets a garbage body, a version-2 envelope and a request past its deadline
    stand_in.send(wid, mdp.WorkerRequest(b"c", (b"\xc1not-msgpack", b"")))
    stand_in.send(wid, mdp.WorkerRequest(b"c", (msgpack.packb({"v": 2, "id": "v2"}),
                                              msgpack.packb({}))))
    stand_in.request(wid, {"fail": "should-not-run"}, "late", deadline=time.time() - 1)
    errors = [stand_in.reply()[1] for _ in range(3)]
    # Then each gets the matching error FINAL, the handler never ran for the late one
    assert [(e.id, e.ok, _code(e)) for e in errors] == [
        ("unknown", False, "bad_request"), ("v2", False, "unsupported_version"),
        ("late", False, "expired")]
    # And a good request afterwards is still served
    stand_in.request(wid, {"still": "alive"}, "good")
    assert stand_in.reply()[1].payload == {"still": "alive"}


def test_agent_errors_become_error_finals_and_the_worker_survives(
        stand_in: StandInBroker, start_worker: Callable[..., RunningWorker]) -> None:
    # Given a worker whose agent can fail in several ways
    agent = CountingAgent()
    start_worker(agent)
    wid = stand_in.ready().wid
    # When requests make it crash, raise a retryable error, or end without a Final
    stand_in.request(wid, {"do": "crash"}, "a")
    crash = stand_in.reply()[1]
    stand_in.request(wid, {"do": "retryable"}, "b")
    retry = stand_in.reply()[1]
    stand_in.request(wid, {"do": "no_final"}, "c")
    partial, no_final = stand_in.reply()[1], stand_in.reply()[1]
    stand_in.request(wid, {"fail": "x"} | {"ok": 1}, "d")
    good = stand_in.reply()[1]
    # Then each maps to the right error FINAL, and the worker goes on serving
    assert (_code(crash), crash.payload["error"]["retryable"]) == ("internal", True)
    assert retry.payload["error"] == {"code": "model_error", "message": "try again",
                                      "retryable": True, "retry_after": 0.5}
    assert partial.payload == {"step": 1}
    assert _code(no_final) == "internal"
    assert good.ok
    assert good.payload == {"n": 4}


def test_an_echo_fail_request_raises_a_fatal_error_with_that_code(
        stand_in: StandInBroker, start_worker: Callable[..., RunningWorker]) -> None:
    # Given an echo worker
    start_worker()
    wid = stand_in.ready().wid
    # When the payload asks it to fail with `not_found`
    stand_in.request(wid, {"fail": "not_found"}, "f")
    env = stand_in.reply()[1]
    # Then the error FINAL carries that code, not retryable
    assert (env.ok, _code(env), env.payload["error"]["retryable"]) == (False, "not_found", False)


def test_a_retry_of_a_finished_id_gets_the_cached_final_without_running_the_handler(
        stand_in: StandInBroker, start_worker: Callable[..., RunningWorker]) -> None:
    # Given a worker that already answered request "same"
    agent = CountingAgent()
    start_worker(agent)
    wid = stand_in.ready().wid
    stand_in.request(wid, {}, "same")
    first = stand_in.reply()[1]
    # When the same id arrives again (a client retry), then a new id
    stand_in.request(wid, {}, "same")
    again = stand_in.reply()[1]
    stand_in.request(wid, {}, "other")
    other = stand_in.reply()[1]
    # Then the retry got the identical FINAL and the handler ran once per distinct id
    assert again.payload == first.payload == {"n": 1}
    assert other.payload == {"n": 2}
    assert agent.calls == ["same", "other"]


def test_slots_serve_requests_in_parallel(
        stand_in: StandInBroker, start_worker: Callable[..., RunningWorker]) -> None:
    # Given one worker process with two slots, whose handler finishes only once two
    # handlers run at the same time (served one after the other, each would time out)
    class Meeting(CountingAgent):
        def __init__(self) -> None:
            super().__init__()
            self.both = threading.Barrier(2, timeout=3.0)

        def handle(self, request: Request) -> Iterator[Reply]:
            self.both.wait()
            yield Final({"met": request.id})

    start_worker(Meeting(), slots=2)
    wids = [stand_in.ready().wid, stand_in.ready().wid]
    assert wids[0] != wids[1]
    # When each slot gets a request
    stand_in.request(wids[0], {}, "p0")
    stand_in.request(wids[1], {}, "p1")
    finals = [stand_in.reply(5.0)[1], stand_in.reply(5.0)[1]]
    # Then both handlers met: both requests succeeded
    assert sorted((f.ok, f.payload["met"]) for f in finals) == [(True, "p0"), (True, "p1")]


# --- setup and stopping ---------------------------------------------------------------

def test_setup_failure_propagates_before_anything_connects(
        stand_in: StandInBroker) -> None:
    # Given an agent whose setup fails
    class Broken(EchoAgent):
        def setup(self) -> AgentInfo:
            raise RuntimeError("no model here")

    settings = Settings(broker=stand_in.endpoint, heartbeat_interval=INTERVAL).peer_section()
    # When / Then run_agent raises it, and no READY was ever sent
    with pytest.raises(RuntimeError, match="no model here"):
        run_agent(Broken(), settings, stop=threading.Event())
    assert not stand_in.sock.poll(200)


def test_stop_drains_a_busy_job_then_disconnects_and_idle_slots_disconnect_at_once(
        stand_in: StandInBroker, start_worker: Callable[..., RunningWorker]) -> None:
    # Given a two-slot worker, one slot busy with a 0.6 s job
    agent = EchoAgent()
    worker = start_worker(agent, slots=2)
    busy, idle = stand_in.ready().wid, stand_in.ready().wid
    stand_in.request(busy, {"sleep": 0.6, "job": 1}, "drained")
    stand_in.collect(0.1)
    # When the stop flag is set (what SIGTERM does)
    worker.stop.set()
    # Then the idle slot disconnects at once, the busy one sends its FINAL and then DISCONNECT
    first = stand_in.next(0.5, lambda s: not isinstance(s.msg, mdp.Heartbeat))
    assert first.wid == idle
    assert isinstance(first.msg, mdp.Disconnect)
    seen, final = stand_in.reply(2.0)
    assert seen.wid == busy
    assert final.payload == {"sleep": 0.6, "job": 1}
    last = stand_in.next(1.0, lambda s: not isinstance(s.msg, mdp.Heartbeat))
    assert last.wid == busy
    assert isinstance(last.msg, mdp.Disconnect)
    # And run_agent returns 0
    assert worker.stop_and_wait() == 0


def test_stop_past_the_drain_grace_disconnects_while_still_busy(
        stand_in: StandInBroker, start_worker: Callable[..., RunningWorker]) -> None:
    # Given a two-slot worker on a fake clock, one slot busy with a 10 s job, and a drain
    # grace of 0.3 s
    class Slow(CountingAgent):
        def handle(self, request: Request) -> Iterator[Reply]:
            self.calls.append(request.id)
            request.cancel.wait(10)
            yield Final({"late": True})

    slow, clock = Slow(), FakeClock()
    worker = start_worker(slow, slots=2, drain_grace=0.3, clock=clock)
    busy, idle = stand_in.ready().wid, stand_in.ready().wid
    stand_in.request(busy, {}, "too-slow")
    stand_in.collect(0.1)
    # When it is stopped (the idle slot's DISCONNECT says the drain began)
    worker.stop.set()
    first = stand_in.next(2.0, lambda s: not isinstance(s.msg, mdp.Heartbeat))
    assert first.wid == idle
    assert isinstance(first.msg, mdp.Disconnect)
    # Then the busy slot keeps its connection while the grace has not passed on its clock
    clock.advance(0.25)
    held = stand_in.collect(0.3)
    assert not [s for s in held if s.wid == busy and not isinstance(s.msg, mdp.Heartbeat)]
    # And once it has, it sends DISCONNECT without a FINAL, and exits 0
    clock.advance(0.1)
    last = stand_in.next(2.0, lambda s: not isinstance(s.msg, mdp.Heartbeat))
    assert last.wid == busy
    assert isinstance(last.msg, mdp.Disconnect)
    assert worker.stop_and_wait() == 0
    assert slow.torn_down
    assert slow.calls == ["too-slow"]
