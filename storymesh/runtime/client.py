"""The client runtime: one DEALER speaking MDP/0.2 to the broker, with pipelining and retries.

    with Client("tcp://127.0.0.1:5555") as client:
        envelope = client.call("echo", {"text": "hi"})          # the FINAL
        for reply in client.stream("echo", {"partials": 3}):   # Reply(final, envelope)
            ...
        rids = [client.send("echo", {...}) for ...]                # pipelined
        envelope = client.result(rids[0])    # its FINAL; or client.recv(rid): the next reply

What it adds to MDP (RFC 18 makes the client synchronous):
- many requests in flight on one socket, each reply matched by the header `id` of its body,
  with one buffer per id, so replies to different requests may interleave in any order;
- an error FINAL (`ok: false`) raises `RequestFailed`; `busy` with `retry_after` is sent again
  after that delay, within the retry budget;
- no reply (nor any PARTIAL) for `timeout` seconds: the socket is closed (linger 0) and
  reopened, and every request in flight is sent again with the SAME id (agents are idempotent
  per id); after `retries` attempts the request raises `RequestTimeout`. After a resend,
  PARTIALs already seen may arrive again; the FINAL arrives once.
- replies for ids it does not wait for are dropped, malformed replies are logged and dropped;
- given a list of endpoints (a broker pair: "tcp://a:5555,tcp://b:5555") it talks to one at
  a time (`EndpointRing`): while requests are in flight it pings the broker (`mmi.ping`,
  answered by any broker, active or passive) and moves to the next endpoint when the broker
  stays silent (`heartbeat_interval` on a connection that never answered, `liveness` x that
  on one that did) or answers `not_active`, and resends what it has in flight there with the
  same ids. A move does not start a new attempt: the attempts' timeouts still bound a call
  when no broker answers. One endpoint behaves as without the list.

A Client is not thread-safe: use each one from a single thread (give each thread its own).
All waiting happens inside `recv` / `stream` / `call`; nothing runs in the background.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import zmq

from storymesh.core import envelope, mdp, schema
from storymesh.core.envelope import Envelope
from storymesh.core.mdp import Frame
from storymesh.errors import (
    BodyError,
    RemoteProtocolError,
    RequestFailed,
    RequestTimeout,
    StorymeshError,
)
from storymesh.runtime.timers import Due, EndpointRing, Link, RequestTimer
from storymesh.settings import PeerSettings, Settings, endpoints
from storymesh.transport import curve

log = logging.getLogger(__name__)

MMI_SERVICE = "mmi.service"
MMI_SNAPSHOT = "mmi.storymesh.snapshot"
MMI_PING = b"mmi.ping"  # any broker answers an unknown MMI name at once (501)
POLL_CAP = 1.0  # seconds per poll, so a wait re-checks every timer at least this often


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply to a request: a PARTIAL (`final` False) or the FINAL, with its envelope."""

    final: bool
    envelope: Envelope

    @property
    def payload(self) -> dict[str, Any]:
        return self.envelope.payload

    @property
    def header(self) -> dict[str, Any]:
        return self.envelope.header

    @property
    def id(self) -> str:
        return self.envelope.id


@dataclass(frozen=True, slots=True)
class _Raw:
    """A reply body that is not a storymesh envelope (an MMI code such as b"200")."""

    body: tuple[Frame, ...]


Item = Reply | _Raw | RequestFailed | RequestTimeout


@dataclass(slots=True)
class _Pending:
    """A request in flight: what to resend, its attempts' timer, and the replies not yet read."""

    rid: str
    service: bytes
    body: list[Frame]
    timer: RequestTimer
    raw: bool = False
    done: bool = False  # the FINAL, or a terminal error, is buffered
    replies: deque[Item] = field(default_factory=deque)


def _error_of(env: Envelope) -> RequestFailed:
    """The RequestFailed for an error FINAL, tolerant of a sloppy error payload."""
    error = env.payload.get("error")
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or "internal")
    retry_after = error.get("retry_after")
    retry_after = float(retry_after) if isinstance(retry_after, (int, float)) else None
    retryable = error.get("retryable")
    return RequestFailed(code, str(error.get("message") or "no message"),
                         retryable=bool(retryable) if retryable is not None
                         else schema.is_retryable(code),
                         retry_after=retry_after)


class Client:
    """A pipelining MDP/0.2 client with per-request retries (use from one thread)."""

    def __init__(self, endpoint: str | Sequence[str], *,
                 settings: PeerSettings | None = None,
                 context: zmq.Context[Any] | None = None, timeout: float | None = None,
                 retries: int | None = None, principal: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings or Settings().peer_section()
        listed = endpoints(endpoint) if isinstance(endpoint, str) else list(endpoint)
        if not listed:
            raise ValueError(f"no broker endpoint in {endpoint!r}")
        self.endpoint = listed[0]
        self.clock = clock  # monotonic: attempt timeouts and `busy` retries
        self.wall = wall  # epoch seconds: only to compare with a request's deadline
        # The header `principal` of every request: who this client acts for. The broker
        # overwrites it with the client's key name unless the key has the delegate role.
        self.principal = principal
        self.timeout = self.settings.request_timeout if timeout is None else timeout
        self.retries = self.settings.retries if retries is None else retries
        if self.timeout <= 0 or self.retries < 1:
            raise ValueError("timeout must be > 0 and retries >= 1")
        # A list of brokers: each endpoint that never answered gets at most one heartbeat
        # interval, and all of them fit in one attempt's timeout.
        self._ring = None if len(listed) < 2 else EndpointRing(
            listed, self.settings.heartbeat_interval, self.settings.liveness,
            probe=self.timeout / len(listed))
        self._hold_until: float | None = None  # resends wait for a broker that said not_active
        self._own_context = context is None
        self._context: zmq.Context[Any] = context or zmq.Context()
        self._pending: dict[str, _Pending] = {}
        try:
            self._sock: zmq.Socket[Any] | None = self._open()
        except (zmq.ZMQError, StorymeshError):
            if self._own_context:
                self._context.term()
            raise

    # -- public API --

    def send(self, service: str, payload: dict[str, Any], *, rid: str | None = None,
             corr: str | None = None, deadline: float | None = None) -> str:
        """Send a request without waiting; returns its id (read replies with `recv`)."""
        rid = rid or envelope.new_id()
        body = envelope.pack(envelope.make_header(rid, corr=corr, deadline=deadline,
                                                  principal=self.principal), payload)
        self._start(_Pending(rid, service.encode(), body,
                             RequestTimer(self.timeout, self.retries, deadline)))
        return rid

    def recv(self, rid: str) -> Reply:
        """The next reply (PARTIAL or FINAL) to request `rid`, waiting as long as it takes.

        Raises RequestFailed for an error FINAL, RequestTimeout when every attempt timed out.
        """
        item = self._next(rid)
        if isinstance(item, _Raw):
            raise RequestFailed("bad_request", f"request {rid} got a non-storymesh reply")
        return item

    def result(self, rid: str) -> Envelope:
        """The FINAL envelope of pipelined request `rid` (its PARTIALs are skipped)."""
        while not (reply := self.recv(rid)).final:
            pass
        return reply.envelope

    def stream(self, service: str, payload: dict[str, Any], *, rid: str | None = None,
               corr: str | None = None, deadline: float | None = None) -> Iterator[Reply]:
        """Send a request and yield its PARTIAL replies, then its FINAL (`reply.final`)."""
        rid = self.send(service, payload, rid=rid, corr=corr, deadline=deadline)
        try:
            while True:
                reply = self.recv(rid)
                yield reply
                if reply.final:
                    return
        finally:
            self.discard(rid)  # a stream left early must not keep collecting replies

    def call(self, service: str, payload: dict[str, Any], *, rid: str | None = None,
             corr: str | None = None, deadline: float | None = None) -> Envelope:
        """Send a request and return its FINAL envelope (PARTIALs are skipped)."""
        for reply in self.stream(service, payload, rid=rid, corr=corr, deadline=deadline):
            if reply.final:
                return reply.envelope
        raise RequestFailed("internal", "the reply stream ended without a FINAL")

    def recv_any(self, timeout: float) -> tuple[str, Reply | RequestFailed | RequestTimeout] | None:
        """The next reply to any request in flight, as (id, Reply or the error it ended
        with), or None when nothing arrived within `timeout` seconds. Never raises for a
        single request's failure, so one caller can drive many requests at once."""
        end = self.clock() + timeout
        while True:
            for rid, p in list(self._pending.items()):
                if p.replies and not p.raw:
                    try:
                        return rid, self.recv(rid)
                    except (RequestFailed, RequestTimeout) as exc:
                        return rid, exc
            now = self.clock()
            if now >= end:
                return None
            self._check_timers(now)
            if any(p.replies for p in self._pending.values()):
                continue
            wait = max(0.0, min(self._next_due(now), end) - now)
            if self._socket().poll(int(wait * 1000) + 1, zmq.POLLIN):
                self._read_all()

    def in_flight(self) -> int:
        """How many requests still wait for their FINAL."""
        return sum(1 for p in self._pending.values() if not p.done)

    def discard(self, rid: str) -> None:
        """Forget request `rid`: its later replies are dropped."""
        self._pending.pop(rid, None)

    def service_available(self, name: str, *, timeout: float | None = None) -> bool | None:
        """MMI `mmi.service`: True if the broker has a worker for `name`, False if not,
        None when the broker did not answer within `timeout` (one attempt)."""
        rid = f"mmi:{envelope.new_id()}"
        wait = self.timeout if timeout is None else timeout
        self._start(_Pending(rid, MMI_SERVICE.encode(), [name.encode()],
                             RequestTimer(wait, 1), raw=True))
        try:
            item = self._next(rid)
        except RequestTimeout:
            return None
        finally:
            self.discard(rid)
        code = mdp.as_bytes(item.body[0]) if isinstance(item, _Raw) and item.body else b""
        if code not in (b"200", b"404"):
            log.warning("mmi.service answered %r; treating it as unknown", code[:16])
            return None
        return code == b"200"

    def snapshot(self) -> dict[str, Any]:
        """The broker's `mmi.storymesh.snapshot`: services, workers and counters."""
        return self.call(MMI_SNAPSHOT, {}).payload

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        self._pending.clear()
        if self._own_context:
            self._context.term()
            self._own_context = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- socket --

    def _open(self) -> zmq.Socket[Any]:
        sock = curve.peer_socket(self._context, self.settings)
        sock.connect(self.endpoint)
        if self._ring is not None:
            self._ring.opened(self.clock())
        return sock

    def _socket(self) -> zmq.Socket[Any]:
        if self._sock is None:
            raise RuntimeError("the client is closed")
        return self._sock

    def _reconnect(self) -> None:
        """A fresh socket: whatever the old connection still held is gone with it."""
        self._socket().close(linger=0)
        self._sock = self._open()

    def _transmit(self, p: _Pending, now: float, *, attempt: bool = True) -> None:
        """Send `p`; `attempt` False for a resend after a move, which starts no attempt."""
        if self._hold_until is not None:
            if attempt:
                p.timer.sent(now)  # sent when the hold ends, with the rest
            return
        frames = mdp.encode(mdp.ClientRequest(p.service, tuple(p.body)))
        try:
            self._socket().send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.debug("send of %s would block; the attempt will time out", p.rid)
        if attempt:
            p.timer.sent(now)

    def _start(self, p: _Pending) -> None:
        old = self._pending.get(p.rid)
        if old is not None and not old.done:
            raise ValueError(f"request {p.rid} is already in flight on this client")
        self._pending[p.rid] = p
        self._transmit(p, self.clock())

    # -- waiting --

    def _next(self, rid: str) -> Reply | _Raw:
        p = self._pending.get(rid)
        if p is None:
            raise KeyError(f"no request {rid} in flight on this client")
        while not p.replies:
            now = self.clock()
            self._check_timers(now)
            if p.replies:
                break
            wait = max(0.0, min(self._next_due(now), now + POLL_CAP) - now)
            if self._socket().poll(int(wait * 1000) + 1, zmq.POLLIN):
                self._read_all()
        item = p.replies.popleft()
        if p.done and not p.replies:
            self._pending.pop(rid, None)
        if isinstance(item, (RequestFailed, RequestTimeout)):
            raise item
        return item

    def _next_due(self, now: float) -> float:
        due = now + POLL_CAP
        for p in self._pending.values():
            if not p.done:
                due = min(due, p.timer.next_due())
        if self._hold_until is not None:
            due = min(due, self._hold_until)
        elif self._ring is not None:
            due = min(due, self._ring.next_due(now))
        return due

    # -- a list of brokers --

    def _check_link(self, now: float) -> None:
        """With a list of brokers: ping a quiet one, leave a silent one, end a hold."""
        ring = self._ring
        if ring is None:
            return
        if self._hold_until is not None:
            if now < self._hold_until:
                return
            self._hold_until = None
            ring.opened(now)
            self._resend_all(now)
        due = ring.check(now, self.in_flight() > 0)
        if due is Link.PING:
            ring.pinged(now)
            with contextlib.suppress(zmq.Again):  # a full pipe: silence decides
                self._socket().send_multipart(mdp.encode(mdp.ClientRequest(MMI_PING, (b"",))),
                                              zmq.NOBLOCK)
        elif due is Link.SWITCH:
            self._move(now, f"broker {self.endpoint} is silent")

    def _move(self, now: float, why: str) -> None:
        """Go to the next broker of the list and resend what is in flight, same ids."""
        assert self._ring is not None
        hold = self._ring.switch(now)
        old, self.endpoint = self.endpoint, self._ring.endpoint
        log.info("%s; moving from %s to %s with %d request(s) in flight", why, old,
                 self.endpoint, self.in_flight())
        self._reconnect()
        if hold > now:
            self._hold_until = hold
            return
        self._resend_all(now)

    def _resend_all(self, now: float) -> None:
        for p in self._pending.values():
            if not p.done and p.timer.resend_at is None:
                self._transmit(p, now, attempt=False)

    def _check_timers(self, now: float) -> None:
        """Send scheduled `busy` retries; on a timed-out attempt, reconnect and resend all."""
        self._check_link(now)
        resend_all = False
        wall = self.wall()
        for p in self._pending.values():
            if p.done:
                continue
            due = p.timer.check(now, wall)
            if due is Due.RESEND:
                self._transmit(p, now)
            elif due is Due.RETRY:
                resend_all = True
            elif due is Due.EXHAUSTED:
                p.done = True
                p.replies.append(RequestTimeout(
                    f"no reply to {p.service.decode(errors='replace')} request {p.rid} "
                    f"after {p.timer.attempts} attempt(s) of {p.timer.timeout:g}s"))
        if resend_all:
            log.info("a request timed out; reconnecting to %s and resending %d request(s)",
                     self.endpoint, sum(1 for p in self._pending.values() if not p.done))
            self._reconnect()
            for p in self._pending.values():
                if not p.done and p.timer.resend_at is None:
                    self._transmit(p, now)

    def _read_all(self) -> None:
        sock = self._socket()
        while self._sock is sock:  # a move to another broker ends the read
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if self._ring is not None:
                self._ring.heard(self.clock())
            try:
                self._on_frames(frames)
            except (RemoteProtocolError, ValueError, TypeError) as exc:
                log.warning("dropped a malformed reply: %s", exc)

    def _on_frames(self, frames: Sequence[Frame]) -> None:
        msg = mdp.parse_to_client(frames)
        if not msg.body:
            raise RemoteProtocolError("reply without a body")
        try:
            header = envelope.read_header(msg.body[0])
        except BodyError:
            self._on_raw(msg)
            return
        p = self._pending.get(header[schema.H_ID])
        if p is None or p.done or p.raw:
            log.debug("dropped a reply for request %s, which is not in flight",
                      header[schema.H_ID])
            return
        env = envelope.unpack(msg.body)
        now = self.clock()
        if not msg.final:
            p.timer.heard(now)
            p.replies.append(Reply(False, env))
        elif env.ok:
            p.timer.heard(now)
            p.done = True
            p.replies.append(Reply(True, env))
        else:
            error = _error_of(env)
            if error.code != "not_active" or self._ring is None:
                p.timer.heard(now)  # a refusal is no progress: the attempt's clock runs on
            self._on_error(p, error, now)

    def _on_error(self, p: _Pending, error: RequestFailed, now: float) -> None:
        """An error FINAL: `busy` with a hint is retried within the budget, `not_active`
        (a list of brokers) moves to the next one, the rest raise."""
        if error.code == "not_active" and self._ring is not None:
            self._ring.not_active(now)
            self._move(now, f"broker {self.endpoint} is not active")
            return
        if error.code == "busy" and p.timer.retry_busy(error.retry_after, now, self.wall()):
            log.debug("request %s: busy; retrying in %.2fs", p.rid, error.retry_after)
            return
        p.done = True
        p.replies.append(error)

    def _on_raw(self, msg: mdp.ClientReply) -> None:
        """A body that is no envelope: an MMI answer, matched to the oldest request for it."""
        if not msg.service.startswith(b"mmi."):
            raise RemoteProtocolError("reply body is not a storymesh envelope")
        for p in self._pending.values():
            if p.service == msg.service and not p.done:
                p.done = True
                if p.raw:
                    p.replies.append(_Raw(msg.body))
                else:
                    code = mdp.as_bytes(msg.body[0])[:16].decode(errors="replace")
                    p.replies.append(RequestFailed(
                        "no_such_service",
                        f"the broker answered {code} to {msg.service.decode(errors='replace')}"))
                return
        log.debug("dropped an MMI reply nobody waits for")
