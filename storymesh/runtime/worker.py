"""The worker runtime: runs one Agent behind `slots` MDP/0.2 worker connections.

It owns everything an agent should not think about: READY (with storymesh's metadata frame),
heartbeats both idle and busy, re-registration on a new socket after silence or DISCONNECT
(with exponential backoff), decoding request bodies, turning handler output and errors into
PARTIAL / FINAL bodies, idempotent replay of finished requests, and draining on stop.

Threads: ONE socket thread (the caller of `run_agent`) owns every DEALER socket; each slot has
its own handler thread that runs `agent.handle`, so a handler may run for minutes while the
socket thread keeps heartbeating. Handler threads hand results back through a queue and wake
the socket thread with a one-byte message on an inproc PUSH socket (created in the handler
thread, as a socket belongs to one thread).

Each slot is a small state machine:

    CONNECTED --(silence for liveness x interval, or DISCONNECT)--> WAITING (backoff)
    WAITING   --(backoff elapsed: new DEALER, new routing id, READY)--> CONNECTED
    CONNECTED --(stop, idle; or stop and the job's FINAL sent; or drain_grace passed)--> DONE
    WAITING   --(stop)--> DONE

Invariants: a slot holds at most one live job per connection; a job's results are sent only
on the connection that received it (a job that outlived its connection is dropped, as the
broker re-dispatches it, but its FINAL still fills the reply cache).

The timing rules (`LinkTimer`, `Backoff`) and the `ReplyCache` are pure and take `now`, so
they are unit-tested without sockets or sleeping.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import random
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import msgpack
import zmq

from storymesh.core import envelope, mdp, schema
from storymesh.core.mdp import Frame
from storymesh.errors import AgentError, BodyError, RemoteProtocolError
from storymesh.plumbing.sdnotify import notifier
from storymesh.plumbing.signals import install_signal_handlers
from storymesh.runtime.agent import Agent, AgentInfo, Final, Partial, Request
from storymesh.runtime.batching import Batcher
from storymesh.settings import Settings
from storymesh.transport import curve

__all__ = ["Backoff", "LinkTimer", "ReplyCache", "WorkerRuntime", "decode_request",
           "install_signal_handlers", "ready_meta", "run_agent"]

log = logging.getLogger(__name__)

REPLY_CACHE_ENTRIES = 256
REPLY_CACHE_BYTES = 256 * 1024 * 1024
POLL_CAP = 0.1  # seconds: how quickly the socket thread notices the stop flag
JOIN_GRACE = 1.0  # seconds to wait for handler threads before teardown()


# --- pure timing and caching ----------------------------------------------------------

class LinkTimer:
    """Heartbeat and liveness clocks of one worker connection (monotonic `now`)."""

    def __init__(self, interval: float, liveness: int) -> None:
        self.interval = interval
        self.timeout = interval * liveness
        self.last_sent = 0.0
        self.last_heard = 0.0

    def opened(self, now: float) -> None:
        """A fresh connection: READY just went out, the broker gets a full liveness window."""
        self.last_sent = self.last_heard = now

    def sent(self, now: float) -> None:
        self.last_sent = now

    def heard(self, now: float) -> None:
        self.last_heard = now

    def heartbeat_due(self, now: float) -> bool:
        """Nothing sent for one interval: any traffic counts, so only then a HEARTBEAT."""
        return now - self.last_sent >= self.interval

    def expired(self, now: float) -> bool:
        """Nothing heard from the broker for liveness x interval: it is gone."""
        return now - self.last_heard >= self.timeout

    def next_due(self) -> float:
        return min(self.last_sent + self.interval, self.last_heard + self.timeout)


class Backoff:
    """Exponential reconnect delays: initial, 2x initial, ... capped, with +-`jitter` spread."""

    def __init__(self, initial: float, cap: float, *, jitter: float = 0.2,
                 rng: Callable[[], float] = random.random) -> None:
        self.initial = min(initial, cap)
        self.cap = cap
        self.jitter = jitter
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        """The delay before the next attempt; each call doubles the base, up to the cap."""
        base = min(self.cap, self.initial * 2.0 ** min(self._attempt, 32))
        self._attempt += 1
        spread = 1.0 + self.jitter * (2.0 * self._rng() - 1.0)
        return min(self.cap, base * spread)

    def reset(self) -> None:
        """The broker answered: the next drop starts from the initial delay again."""
        self._attempt = 0


def body_size(body: Sequence[Frame]) -> int:
    return sum(memoryview(frame).nbytes for frame in body)


class ReplyCache:
    """The FINAL bodies of the last finished request ids, bounded by count and bytes.

    Thread-safe: the socket thread fills and reads it, handler threads read it too.
    """

    def __init__(self, max_entries: int = REPLY_CACHE_ENTRIES,
                 max_bytes: int = REPLY_CACHE_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[list[Frame], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, rid: str) -> list[Frame] | None:
        with self._lock:
            item = self._items.get(rid)
            if item is None:
                return None
            self._items.move_to_end(rid)
            return list(item[0])

    def put(self, rid: str, body: Sequence[Frame]) -> None:
        size = body_size(body)
        if size > self.max_bytes:
            return  # one huge reply must not flush everything else
        with self._lock:
            old = self._items.pop(rid, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[rid] = (list(body), size)
            self._bytes += size
            while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, rid: object) -> bool:
        return rid in self._items


# --- request decoding -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Rejected:
    """A request answered without running the handler: the error FINAL body to send."""

    body: list[Frame]


def _raw_header(body: Sequence[Frame]) -> tuple[str, str | None]:
    """Best-effort (id, corr) from a header that failed validation, for the error reply."""
    if not body:
        return "unknown", None
    try:
        header = msgpack.unpackb(body[0], raw=False, max_str_len=1024, max_bin_len=0,
                                 max_array_len=64, max_map_len=64, max_ext_len=0)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            UnicodeDecodeError):
        return "unknown", None  # garbage: there is simply no id to echo
    if not isinstance(header, dict):
        return "unknown", None
    rid, corr = header.get(schema.H_ID), header.get(schema.H_CORR)
    rid = rid if isinstance(rid, str) and 0 < len(rid) <= 128 else "unknown"
    return rid, corr if isinstance(corr, str) else None


def decode_request(body: Sequence[Frame], wall: float) -> Request | Rejected:
    """A handler Request from a REQUEST body, or the error FINAL that answers it instead."""
    try:
        header = envelope.read_header(body[0]) if body else None
    except BodyError as exc:
        rid, corr = _raw_header(body)
        return Rejected(envelope.error_body(rid, exc.code, str(exc), corr=corr))
    if header is None:
        return Rejected(envelope.error_body("unknown", "bad_request", "empty request body"))
    rid = header[schema.H_ID]
    corr = header.get(schema.H_CORR)
    corr = corr if isinstance(corr, str) else None
    if header[schema.H_VERSION] > schema.ENVELOPE_VERSION:
        return Rejected(envelope.error_body(
            rid, "unsupported_version",
            f"envelope version {header[schema.H_VERSION]} is newer than "
            f"{schema.ENVELOPE_VERSION}", corr=corr))
    deadline = header.get(schema.H_DEADLINE)
    if deadline is not None and wall > deadline:
        return Rejected(envelope.error_body(rid, "expired", "the deadline passed before the "
                                            "agent started", corr=corr))
    try:
        env = envelope.unpack(body)
    except BodyError as exc:
        return Rejected(envelope.error_body(rid, exc.code, str(exc), corr=corr))
    principal = header.get(schema.H_PRINCIPAL)
    return Request(rid, env.payload, corr,
                   float(deadline) if deadline is not None else None,
                   principal if isinstance(principal, str) else None,
                   admin=header.get(schema.H_ADMIN) is True)


def cache_key(request: Request) -> str:
    """The reply-cache key: the id within its principal's, so a caller replaying someone
    else's request id (keys on) never gets their cached reply."""
    return request.id if request.principal is None else f"{request.principal}\x00{request.id}"


def ready_meta(info: AgentInfo, slots: int) -> bytes:
    """The msgpack READY metadata frame: what the agent loaded, and that it beats while busy."""
    meta: dict[str, Any] = {"hb_busy": True, **info.as_meta(), "slots": slots,
                            "host": socket.gethostname(), "pid": os.getpid()}
    packed: bytes = msgpack.packb(meta, use_bin_type=True)
    return packed


# --- handler threads ------------------------------------------------------------------

@dataclass(slots=True)
class Job:
    """One request handed to a slot's handler thread."""

    token: int
    client: bytes
    request: Request


@dataclass(frozen=True, slots=True)
class Result:
    """One reply body produced by a handler thread for job `token` of slot `slot`."""

    slot: int
    token: int
    rid: str
    body: list[Frame]
    final: bool
    cacheable: bool = False


class Handler(threading.Thread):
    """Runs `agent.handle` for one slot, one job at a time, off the socket thread."""

    def __init__(self, index: int, agent: Agent, cache: ReplyCache, context: zmq.Context[Any],
                 wake: str, results: queue.SimpleQueue[Result],
                 batcher: Batcher | None = None) -> None:
        super().__init__(name=f"{agent.service}-handler-{index}", daemon=True)
        self.index = index
        self.agent = agent
        self.cache = cache
        self.context = context
        self.wake_endpoint = wake
        self.results = results
        self.batcher = batcher
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._wake: zmq.Socket[Any] | None = None

    def run(self) -> None:
        self._wake = self.context.socket(zmq.PUSH)
        self._wake.setsockopt(zmq.LINGER, 0)
        self._wake.connect(self.wake_endpoint)
        try:
            while (job := self.jobs.get()) is not None:
                if job.request.cancel.is_set():
                    continue  # its connection went while it waited: the broker re-dispatches
                self._serve(job)
        finally:
            self._wake.close()

    def _post(self, job: Job, body: list[Frame], final: bool, cacheable: bool = False) -> None:
        self.results.put(Result(self.index, job.token, cache_key(job.request), body, final,
                                cacheable))
        assert self._wake is not None  # set at the start of run(), our own invariant
        try:
            self._wake.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass  # wake-ups already queued: the socket thread drains the whole queue

    def _serve(self, job: Job) -> None:
        req = job.request
        cached = self.cache.get(cache_key(req))
        if cached is not None:
            self._post(job, cached, True)
            return
        header = envelope.make_header(req.id, corr=req.corr, ok=True)
        replies: Iterator[Partial | Final] | None = None
        try:
            if self.batcher is not None and self.batcher.accepts(req):
                outcome = self.batcher.serve(req)
                if isinstance(outcome, AgentError):
                    raise outcome
                replies = iter((outcome,))
            else:
                replies = self.agent.handle(req)
            for reply in replies:
                if isinstance(reply, Final):
                    self._post(job, envelope.pack(header, reply.payload), True, cacheable=True)
                    return  # anything the generator would yield after its Final is ignored
                if not isinstance(reply, Partial):
                    raise TypeError(f"handle() yielded {type(reply).__name__}, "
                                    "not Partial or Final")
                self._post(job, envelope.pack(header, reply.payload), False)
            self._post(job, envelope.error_body(req.id, "internal", "the agent ended "
                                                "without a final reply", corr=req.corr), True)
        except AgentError as exc:
            body = envelope.error_body(req.id, exc.code, exc.message, corr=req.corr,
                                       retryable=exc.retryable, retry_after=exc.retry_after)
            # a fatal error repeats identically, a retryable one deserves a fresh try; an
            # error after a cancel (link lost, deadline, drain) says nothing about the request
            cacheable = not exc.retryable and not req.cancel.is_set()
            self._post(job, body, True, cacheable=cacheable)
        except Exception:
            log.exception("%s: request %s failed inside the agent", self.agent.service, req.id)
            self._post(job, envelope.error_body(req.id, "internal", "unexpected error in the "
                                                "agent", corr=req.corr), True)
        finally:
            self._close_replies(replies)

    def _close_replies(self, replies: object) -> None:
        """Run the handler's own cleanup now, not at garbage collection."""
        close = getattr(replies, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception:
            log.exception("%s: closing a handler's reply iterator failed", self.agent.service)


# --- slots and the socket thread ------------------------------------------------------

class SlotState(Enum):
    CONNECTED = "connected"
    WAITING = "waiting"
    DONE = "done"


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


class WorkerRuntime:
    """Serves one agent on `slots` worker connections until `stop` is set."""

    def __init__(self, agent: Agent, settings: Settings, *, slots: int = 1,
                 stop: threading.Event | None = None,
                 context: zmq.Context[Any] | None = None,
                 ready: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
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
        self.service = agent.service.encode()
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
        try:
            info = self.agent.setup()  # a failure here must stop the daemon at start
        except BaseException:
            if self._own_context:
                self.context.term()
            raise
        if not self.settings.strict_mdp:
            self._meta = ready_meta(info, self.nslots)
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
        if self.nslots > 1 and type(self.agent).handle_batch is not Agent.handle_batch:
            self.batcher = Batcher(self.agent, self.nslots)
            self.batcher.start()
        for i in range(self.nslots):
            handler = Handler(i, self.agent, self.cache, self.context, endpoint, self.results,
                              self.batcher)
            slot = Slot(i, handler, LinkTimer(interval, self.settings.liveness),
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
                self._give_up_drain()
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
            if slot.state is SlotState.CONNECTED:
                due = min(due, slot.timer.next_due())
            elif slot.state is SlotState.WAITING:
                due = min(due, slot.reconnect_at)
        return max(0, int((due - now) * 1000) + 1)

    # -- connections --

    def _connect(self, slot: Slot, now: float) -> None:
        """A NEW DEALER (so a new routing id at the broker), then READY."""
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, self.settings.hwm)
        sock.setsockopt(zmq.RCVHWM, self.settings.hwm)
        sock.setsockopt(zmq.MAXMSGSIZE, self.settings.max_message_bytes)
        curve.apply_client(sock, self.settings)  # CURVE when keys are configured
        sock.connect(self.settings.broker)
        slot.sock = sock
        slot.state = SlotState.CONNECTED
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
        if self._stop_at is not None:
            slot.state = SlotState.DONE
            return
        delay = slot.backoff.next()
        slot.state = SlotState.WAITING
        slot.reconnect_at = now + delay
        log.warning("%s slot %d: %s; reconnecting in %.2fs", self.agent.service, slot.index,
                    why, delay)

    def _close_all(self) -> None:
        now = self.clock()
        for slot in self.slots:
            if slot.sock is not None:
                self._close(slot, disconnect=True, now=now)
            slot.state = SlotState.DONE
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
        assert slot.sock is not None  # only CONNECTED slots send (state invariant)
        try:
            slot.sock.send_multipart(mdp.encode(msg), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            # the pipe to the broker is full or not up: liveness expiry handles a dead broker
            log.debug("%s slot %d: send would block, dropped %s", self.agent.service,
                      slot.index, type(msg).__name__)
        slot.timer.sent(now)

    def _tick(self, slot: Slot, now: float) -> None:
        if slot.state is SlotState.WAITING and now >= slot.reconnect_at:
            if self._stop_at is not None:
                slot.state = SlotState.DONE
            else:
                self._connect(slot, now)
        elif slot.state is SlotState.CONNECTED:
            if slot.timer.expired(now):
                self._drop_link(slot, now, "no traffic from the broker")
            elif slot.timer.heartbeat_due(now):
                self._send(slot, mdp.Heartbeat(), now)
            if slot.job is not None and slot.job.request.expired():
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
            if isinstance(msg, mdp.WorkerRequest):
                self._on_request(slot, msg, now)

    def _on_request(self, slot: Slot, msg: mdp.WorkerRequest, now: float) -> None:
        decoded = decode_request(msg.body, time.time())
        if isinstance(decoded, Rejected):
            self._reply(slot, msg.client, decoded.body, now)
            return
        if self._stop_at is not None or slot.job is not None:
            # the broker should not send here now; say so rather than queue behind a job
            code, why = (("shutting_down", "the agent is stopping") if self._stop_at is not None
                         else ("busy", "this worker connection is already serving a request"))
            log.warning("%s slot %d: refused request %s: %s", self.agent.service, slot.index,
                        decoded.id, why)
            self._reply(slot, msg.client, envelope.error_body(
                decoded.id, code, why, corr=decoded.corr, retry_after=1.0), now)
            return
        cached = self.cache.get(cache_key(decoded))
        if cached is not None:
            log.debug("%s: replaying the cached reply of %s", self.agent.service, decoded.id)
            self._reply(slot, msg.client, cached, now)
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
            if self._stop_at is not None:
                self._finish(slot, now)

    # -- stopping --

    def _finish(self, slot: Slot, now: float) -> None:
        self._close(slot, disconnect=True, now=now)
        slot.state = SlotState.DONE

    def _begin_drain(self, now: float) -> None:
        self._stop_at = now
        busy = sum(1 for slot in self.slots if slot.job is not None)
        notifier().stopping(f"{self.agent.service}: draining {busy} busy slot(s)")
        log.info("%s: stopping; draining %d busy slot(s) for up to %.1fs", self.agent.service,
                 busy, self.settings.drain_grace)
        for slot in self.slots:
            if slot.state is SlotState.WAITING:
                slot.state = SlotState.DONE
            elif slot.state is SlotState.CONNECTED and slot.job is None:
                self._finish(slot, now)

    def _give_up_drain(self) -> None:
        now = self.clock()
        for slot in self.slots:
            if slot.state is SlotState.CONNECTED:
                log.warning("%s slot %d: drain grace passed; disconnecting while busy",
                            self.agent.service, slot.index)
                self._finish(slot, now)


def run_agent(agent: Agent, settings: Settings, *, slots: int = 1,
              stop: threading.Event | None = None, context: zmq.Context[Any] | None = None,
              ready: threading.Event | None = None) -> int:
    """Serve `agent` until `stop` is set; returns the process exit code (0 on a clean stop).

    `agent.setup()` runs first and its exceptions propagate. `ready` is set once READY went
    out on every slot. Call from the thread that should own the sockets (the main thread in
    the daemon, with `install_signal_handlers(stop)` first).
    """
    runtime = WorkerRuntime(agent, settings, slots=slots, stop=stop, context=context,
                            ready=ready)
    return runtime.run()


