"""The worker runtime's socket loop: runs one Agent behind `slots` MDP/0.2 worker connections.

It owns everything an agent should not think about: READY (with storymesh's metadata frame),
heartbeats both idle and busy, re-registration on a new socket after silence or DISCONNECT
(with exponential backoff), turning handler output and errors into PARTIAL / FINAL bodies,
idempotent replay of finished requests, and draining on stop. The parts are split by job:

    slots.py     the slot lifecycle table and its invariants
    timers.py    heartbeat, liveness and reconnect timing (pure, `now` passed in)
    cache.py     the reply cache (pure)
    requests.py  REQUEST body -> the agent's Request, or the error FINAL instead (pure)
    handler.py   the handler thread of each slot
    worker.py    this module: the socket thread and `run_agent`

Threads: ONE socket thread (the caller of `run_agent`) owns every DEALER socket; each slot has
its own handler thread that runs `agent.handle`, so a handler may run for minutes while the
socket thread keeps heartbeating. Results come back through a queue and a wake-up message.

Time is injected: `clock` (monotonic) for every interval, `wall` (epoch seconds) only to
compare with request deadlines, which travel as wall time.

With a list of brokers (a broker pair, `broker = "tcp://a:5555,tcp://b:5555"`) each slot
talks to one at a time: when its link drops (silence, or the DISCONNECT a passive broker
answers READY with) it re-registers with the next endpoint, at once within a round of the
list and after the backoff when the round comes back to where it started; a connection that
has heard nothing is given up after 1.5 heartbeat intervals instead of the whole liveness.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from storymesh.core import envelope, mdp
from storymesh.core.mdp import Frame
from storymesh.errors import RemoteProtocolError
from storymesh.plumbing.sdnotify import notifier
from storymesh.runtime.agent import Agent
from storymesh.runtime.batching import Batcher
from storymesh.runtime.cache import ReplyCache, cache_key
from storymesh.runtime.handler import Handler, Job, Result
from storymesh.runtime.metrics import NULL_METRICS, Metrics, RequestMeter
from storymesh.runtime.requests import Rejected, decode_request, ready_meta
from storymesh.runtime.slots import LINKED, SlotEvent, SlotState, transition
from storymesh.runtime.timers import Backoff, LinkTimer
from storymesh.settings import PeerSettings, endpoints
from storymesh.transport import curve

__all__ = ["WorkerRuntime", "run_agent"]

log = logging.getLogger(__name__)

POLL_CAP = 0.1  # seconds: how quickly the socket thread notices the stop flag
JOIN_GRACE = 1.0  # seconds to wait for handler threads before teardown()


@dataclass(slots=True)
class Slot:
    """One worker connection (one DEALER at a time) and its handler thread."""

    index: int
    handler: Handler
    timer: LinkTimer
    backoff: Backoff
    state: SlotState = SlotState.WAITING
    sock: zmq.Socket[Any] | None = None
    reconnect_at: float = 0.0
    job: Job | None = None
    links: int = 0
    endpoint: int = 0  # index in the runtime's list of brokers
    moves: int = 0     # moves to another broker since the last one that answered

    def on(self, event: SlotEvent) -> None:
        self.state = transition(self.state, event)


class WorkerRuntime:
    """Serves one agent on `slots` worker connections until `stop` is set."""

    def __init__(self, agent: Agent, settings: PeerSettings, *, slots: int = 1,
                 stop: threading.Event | None = None,
                 context: zmq.Context[Any] | None = None,
                 ready: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 metrics: Metrics | None = None) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.agent = agent
        self.settings = settings
        self.nslots = slots
        self.stop = stop or threading.Event()
        self.ready = ready or threading.Event()
        self._own_context = context is None
        self.context: zmq.Context[Any] = context or zmq.Context()
        self.clock = clock
        self.wall = wall
        self.service = agent.service.encode()
        self.endpoints = endpoints(settings.broker)
        self.metrics = metrics or NULL_METRICS
        self.meter = RequestMeter(self.metrics, agent.service)
        self.cache = ReplyCache()
        self.results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self.slots: list[Slot] = []
        self.batcher: Batcher | None = None
        self._tokens = itertools.count(1)
        self._meta: bytes | None = None
        self._poller = zmq.Poller()
        self._by_socket: dict[zmq.Socket[Any], Slot] = {}
        self._wake: zmq.Socket[Any] | None = None
        self._stop_at: float | None = None
        self._heard_at = 0.0  # last message from the broker on any slot (watchdog)

    # -- lifecycle --

    def run(self) -> int:
        """setup(), serve until stopped, drain, teardown(); returns the exit code (0)."""
        self.agent.metrics = self.metrics  # before setup(): it may report what it loaded
        self.metrics.declare(self.agent.metric_specs)
        loading = time.monotonic()
        try:
            info = self.agent.setup()  # a failure here must stop the daemon at start
        except BaseException:
            if self._own_context:
                self.context.term()
            raise
        self.meter.loaded(info.as_meta(), time.monotonic() - loading, self.nslots)
        if not self.settings.strict_mdp:
            self._meta = ready_meta(info, self.nslots, self.metrics.address)
        log.info("%s: serving on %s with %d slot(s), backend %s", self.agent.service,
                 self.settings.broker, self.nslots, info.backend)
        try:
            self._start()
            self._loop()
        finally:
            self._close_all()
            stuck = self._join_handlers()
            self.agent.teardown()
            if self._own_context and not stuck:
                self.context.term()  # would block on a stuck handler's socket: skip then
        log.info("%s: stopped", self.agent.service)
        return 0

    def _start(self) -> None:
        endpoint = f"inproc://storymesh-runtime-{uuid.uuid4().hex}"
        self._wake = self.context.socket(zmq.PULL)
        self._wake.setsockopt(zmq.LINGER, 0)
        self._wake.bind(endpoint)
        self._poller.register(self._wake, zmq.POLLIN)
        interval = self.settings.heartbeat_interval
        # a list of brokers: a live broker heartbeats a new worker within one interval
        probe = 1.5 * interval if len(self.endpoints) > 1 else None
        if self.nslots > 1 and type(self.agent).handle_batch is not Agent.handle_batch:
            self.batcher = Batcher(self.agent, self.nslots)
            self.batcher.start()
        for i in range(self.nslots):
            handler = Handler(i, self.agent, self.cache, self.context, endpoint, self.results,
                              self.batcher, self.meter)
            slot = Slot(i, handler, LinkTimer(interval, self.settings.liveness, probe),
                        Backoff(interval / 4, self.settings.reconnect_max))
            self.slots.append(slot)
            handler.start()
        now = self.clock()
        for slot in self.slots:
            self._connect(slot, now)
        self._heard_at = now
        self.ready.set()
        notifier().ready(f"{self.agent.service}: {self.nslots} slot(s) on {self.settings.broker}")

    def _loop(self) -> None:
        while any(slot.state is not SlotState.DONE for slot in self.slots):
            now = self.clock()
            if self.stop.is_set() and self._stop_at is None:
                self._begin_drain(now)
            if self._stop_at is not None and now - self._stop_at >= self.settings.drain_grace:
                self._give_up_drain(now)
            for slot in self.slots:
                self._tick(slot, now)
            if now - self._heard_at < self.settings.liveness_timeout:
                notifier().watchdog()  # fed only while this loop turns and the broker answers
            for sock, _ in self._poller.poll(self._poll_ms(now)):
                if sock is self._wake:
                    self._drain_results()
                elif (owner := self._by_socket.get(sock)) is not None:
                    self._receive(owner)

    def _poll_ms(self, now: float) -> int:
        due = now + POLL_CAP
        for slot in self.slots:
            if slot.state in LINKED:
                due = min(due, slot.timer.next_due())
            elif slot.state is SlotState.WAITING:
                due = min(due, slot.reconnect_at)
        return max(0, int((due - now) * 1000) + 1)

    # -- connections --

    def _connect(self, slot: Slot, now: float) -> None:
        """A NEW DEALER (so a new routing id at the broker), then READY."""
        sock = curve.peer_socket(self.context, self.settings)
        sock.connect(self.endpoints[slot.endpoint])
        slot.on(SlotEvent.CONNECT)
        slot.sock = sock
        slot.links += 1
        self._by_socket[sock] = slot
        self._poller.register(sock, zmq.POLLIN)
        slot.timer.opened(now)
        self._send(slot, mdp.Ready(self.service, self._meta), now)
        if slot.links > 1:
            log.info("%s slot %d: re-registered (connection %d)", self.agent.service,
                     slot.index, slot.links)

    def _close(self, slot: Slot, *, disconnect: bool, now: float) -> None:
        if slot.sock is not None:
            if disconnect:
                self._send(slot, mdp.Disconnect(), now)
            self._poller.unregister(slot.sock)
            del self._by_socket[slot.sock]
            slot.sock.close(linger=0)
            slot.sock = None
        if slot.job is not None:
            log.warning("%s slot %d: connection closed while serving %s; its result is "
                        "dropped (the broker re-dispatches it)", self.agent.service,
                        slot.index, slot.job.request.id)
            slot.job.request.cancel.set()
            slot.job = None

    def _drop_link(self, slot: Slot, now: float, why: str) -> None:
        """The broker is gone or said DISCONNECT: close, then reconnect after a backoff."""
        self._close(slot, disconnect=False, now=now)
        slot.on(SlotEvent.LINK_LOST)
        if slot.state is SlotState.DONE:
            return  # it was draining: stopping, so no reconnect
        count = len(self.endpoints)
        slot.endpoint = (slot.endpoint + 1) % count
        slot.moves += 1
        # the next broker of the list at once; the backoff only once the list went round
        delay = slot.backoff.next() if slot.moves % count == 0 else slot.backoff.initial
        slot.reconnect_at = now + delay
        log.warning("%s slot %d: %s; reconnecting to %s in %.2fs", self.agent.service,
                    slot.index, why, self.endpoints[slot.endpoint], delay)

    def _close_all(self) -> None:
        now = self.clock()
        for slot in self.slots:
            if slot.sock is not None:
                self._close(slot, disconnect=True, now=now)
            slot.on(SlotEvent.CLOSE)
        if self._wake is not None:
            self._wake.close(linger=0)
            self._wake = None

    def _join_handlers(self) -> bool:
        """Stop the handler threads; True when one is still running (a stuck handler)."""
        for slot in self.slots:
            slot.handler.jobs.put(None)
        end = time.monotonic() + JOIN_GRACE
        stuck = False
        for slot in self.slots:
            slot.handler.join(max(0.0, end - time.monotonic()))
            if slot.handler.is_alive():
                stuck = True
                log.warning("%s: handler %d still running at teardown", self.agent.service,
                            slot.index)
        if self.batcher is not None:
            self.batcher.stop()
        return stuck

    # -- sending and receiving --

    def _send(self, slot: Slot, msg: mdp.Message, now: float) -> None:
        assert slot.sock is not None  # only CONNECTED or DRAINING slots send (slots.py)
        try:
            slot.sock.send_multipart(mdp.encode(msg), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            # the pipe to the broker is full or not up: liveness expiry handles a dead broker
            log.debug("%s slot %d: send would block, dropped %s", self.agent.service,
                      slot.index, type(msg).__name__)
        slot.timer.sent(now)

    def _tick(self, slot: Slot, now: float) -> None:
        if slot.state is SlotState.WAITING and now >= slot.reconnect_at:
            self._connect(slot, now)
        elif slot.state in LINKED:
            if slot.timer.expired(now):
                self._drop_link(slot, now, "no traffic from the broker")
            elif slot.timer.heartbeat_due(now):
                self._send(slot, mdp.Heartbeat(), now)
            if slot.job is not None and slot.job.request.expired(self.wall()):
                slot.job.request.cancel.set()  # nobody wants it now; the agent may stop early

    def _receive(self, slot: Slot) -> None:
        """Handle everything queued on one slot's socket (bounded, so others get a turn)."""
        for _ in range(100):
            if slot.sock is None:
                return
            try:
                frames = slot.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            now = self.clock()
            try:
                msg = mdp.parse_to_worker(frames)
            except RemoteProtocolError as exc:
                log.warning("%s slot %d: dropped an invalid message: %s", self.agent.service,
                            slot.index, exc)
                continue
            if isinstance(msg, mdp.Disconnect):
                self._drop_link(slot, now, "the broker sent DISCONNECT")
                return
            slot.timer.heard(now)
            self._heard_at = now
            slot.backoff.reset()
            slot.moves = 0
            if isinstance(msg, mdp.WorkerRequest):
                self._on_request(slot, msg, now)

    def _on_request(self, slot: Slot, msg: mdp.WorkerRequest, now: float) -> None:
        decoded = decode_request(msg.body, self.wall())
        if isinstance(decoded, Rejected):
            self._reply(slot, msg.client, decoded.body, now)
            self.meter.answered("other", "rejected")
            return
        if self._stop_at is not None or slot.job is not None:
            # the broker should not send here now; say so rather than queue behind a job
            code, why = (("shutting_down", "the agent is stopping") if self._stop_at is not None
                         else ("busy", "this worker connection is already serving a request"))
            log.warning("%s slot %d: refused request %s: %s", self.agent.service, slot.index,
                        decoded.id, why)
            self._reply(slot, msg.client, envelope.error_body(
                decoded.id, code, why, corr=decoded.corr, retry_after=1.0), now)
            self.meter.answered(self.meter.label(decoded.payload), code)
            return
        cached = self.cache.get(cache_key(decoded))
        if cached is not None:
            log.debug("%s: replaying the cached reply of %s", self.agent.service, decoded.id)
            self._reply(slot, msg.client, cached, now)
            self.meter.answered(self.meter.label(decoded.payload), "cached")
            return
        slot.job = Job(next(self._tokens), msg.client, decoded)
        slot.handler.jobs.put(slot.job)

    def _reply(self, slot: Slot, client: bytes, body: list[Frame], now: float,
               final: bool = True) -> None:
        self._send(slot, mdp.WorkerReply(client, tuple(body), final), now)

    def _drain_results(self) -> None:
        assert self._wake is not None
        while True:
            try:
                self._wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        now = self.clock()
        while True:
            try:
                result = self.results.get_nowait()
            except queue.Empty:
                return
            self._on_result(result, now)

    def _on_result(self, result: Result, now: float) -> None:
        if result.final and result.cacheable:
            self.cache.put(result.rid, result.body)
        slot = self.slots[result.slot]
        job = slot.job
        if job is None or job.token != result.token or slot.sock is None:
            log.debug("%s slot %d: dropped a reply of %s (its connection is gone)",
                      self.agent.service, slot.index, result.rid)
            return
        self._reply(slot, job.client, result.body, now, result.final)
        if result.final:
            slot.job = None
            if slot.state is SlotState.DRAINING:
                self._finish(slot, SlotEvent.FINISHED, now)

    # -- stopping --

    def _finish(self, slot: Slot, event: SlotEvent, now: float) -> None:
        """Stop a slot for good: DISCONNECT, close, then DONE."""
        self._close(slot, disconnect=True, now=now)
        slot.on(event)

    def _begin_drain(self, now: float) -> None:
        self._stop_at = now
        busy = sum(1 for slot in self.slots if slot.job is not None)
        notifier().stopping(f"{self.agent.service}: draining {busy} busy slot(s)")
        log.info("%s: stopping; draining %d busy slot(s) for up to %.1fs", self.agent.service,
                 busy, self.settings.drain_grace)
        for slot in self.slots:
            if slot.job is not None:
                slot.on(SlotEvent.STOP_BUSY)
            elif slot.sock is not None:
                self._finish(slot, SlotEvent.STOP_IDLE, now)
            else:
                slot.on(SlotEvent.STOP_IDLE)

    def _give_up_drain(self, now: float) -> None:
        for slot in self.slots:
            if slot.state is SlotState.DRAINING:
                log.warning("%s slot %d: drain grace passed; disconnecting while busy",
                            self.agent.service, slot.index)
                self._finish(slot, SlotEvent.GRACE_PASSED, now)


def run_agent(agent: Agent, settings: PeerSettings, *, slots: int = 1,
              stop: threading.Event | None = None, context: zmq.Context[Any] | None = None,
              ready: threading.Event | None = None,
              clock: Callable[[], float] = time.monotonic,
              wall: Callable[[], float] = time.time,
              metrics: Metrics | None = None) -> int:
    """Serve `agent` until `stop` is set; returns the process exit code (0 on a clean stop).

    `agent.setup()` runs first and its exceptions propagate. `ready` is set once READY went
    out on every slot. Call from the thread that should own the sockets (the main thread in
    the daemon, with `install_signal_handlers(stop)` first). With `metrics` (an
    `AgentExporter`), the runtime and the agent report there, and READY names its address.
    """
    runtime = WorkerRuntime(agent, settings, slots=slots, stop=stop, context=context,
                            ready=ready, clock=clock, wall=wall, metrics=metrics)
    return runtime.run()


