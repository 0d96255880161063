"""The broker's brain: MDP routing, LRU dispatch, liveness, re-dispatch and MMI, with no sockets.

`BrokerCore.on_frames(sender, frames, now, wall)` and `on_tick(now, wall)` return the
messages to send as `(routing_id, frames)` pairs; only `server.py` owns the ROUTER socket.
`now` is a monotonic clock, `wall` the wall clock (envelope deadlines cross machines, so
they are wall time, converted to the monotonic clock on receipt). Tests drive the core with
byte literals and a fake clock.

Beyond the MDP specs (see ../shared/MDP.md section 11), with nothing silently lost:
- a request held by a worker that goes (expiry, DISCONNECT, unreachable, violation) is
  re-queued at the front of its service queue; past `max_attempts` dispatches the client
  gets an error FINAL `worker_lost`;
- a full service queue answers `busy` at once; a passed deadline answers `expired`; a
  request for a service with no worker waits `service_wait` seconds, then `no_such_service`;
- an MDP/0.1 client served by a 0.2 worker gets only the FINAL (PARTIALs are dropped, not
  buffered, so streamed replies cost the broker no memory);
- each service queue is a `FairQueue`: one lane per client, served round-robin, each lane
  bounded by `client_queue_limit` (`busy` past it), so a flooding client cannot starve the
  others. A client is its routing id, or with keys on its principal.

With keys on (`policy` set; see storymesh.core.policy / storymesh.transport.curve) every
message comes with the `user` the ZAP handler authenticated: requests need the `client`
role (`mmi.storymesh.*` needs `admin`, `mmi.service` is open) or get an error FINAL
`forbidden`; a READY needs the `worker` role for that service or gets DISCONNECT; the broker
writes the header `principal` (the key's name, or for a `delegate` key the principal it
names) and `admin`.
"""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from storymesh.core import envelope, mdp, schema
from storymesh.core.fairqueue import FairQueue
from storymesh.core.mdp import Body, Dialect, Frame
from storymesh.core.pair import Pair, PState, peer_event
from storymesh.core.policy import MAX_PRINCIPAL, KeyRoles, Policy
from storymesh.core.schema import H_ADMIN
from storymesh.core.workers import WEvent, WState, transition
from storymesh.errors import BodyError, RemoteProtocolError
from storymesh.plumbing.ratelog import RateLog
from storymesh.settings import BrokerSettings

log = logging.getLogger(__name__)

Send = tuple[bytes, list[Frame]]
SNAPSHOT_VERSION = 1
MMI_PREFIX = b"mmi."
MMI_PRIVATE = b"mmi.storymesh."
_SERVICE_NAME = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:/-]*")
_META_LIMITS = envelope.Limits(header_bytes=4096, container_len=64, str_bytes=512, depth=3)


@dataclass(slots=True)
class Pending:
    """A client request the broker holds: queued, or dispatched to a worker.

    Its request id and correlation id are read from the header frame only when something
    needs them (an error reply, a log line, the snapshot): the fast path never decodes it."""

    client: bytes
    service: bytes
    body: Body
    dialect: Dialect
    deadline: float | None  # monotonic
    enqueued: float
    size: int  # bytes of its body, counted against its client's backlog
    owner: Hashable = b""  # its lane in the fair queue: the principal, or the routing id
    attempts: int = 0
    ids: tuple[str | None, str | None] | None = None  # (rid, corr) once read

    def _read_ids(self) -> tuple[str | None, str | None]:
        ids = self.ids
        if ids is None:
            ids = self.ids = _ids_of(self.body)
        return ids

    @property
    def rid(self) -> str | None:
        return self._read_ids()[0]

    @property
    def corr(self) -> str | None:
        return self._read_ids()[1]


@dataclass(slots=True)
class Worker:
    """One registered worker connection."""

    identity: bytes
    service: Service
    dialect: Dialect
    meta: dict[str, Any]
    hb_busy: bool
    registered: float
    last_seen: float  # liveness is this one timestamp; on_tick expires it
    state: WState = WState.IDLE
    request: Pending | None = None
    busy_since: float = 0.0
    served: int = 0
    principal: str | None = None  # the key it authenticated with (keys on)


@dataclass(slots=True)
class Service:
    """A named service: its queue, its idle workers in LRU order and its figures."""

    name: bytes
    queue: FairQueue[Pending] = field(default_factory=FairQueue)
    idle: OrderedDict[bytes, Worker] = field(default_factory=OrderedDict)
    workers: int = 0
    served: int = 0
    failed: int = 0
    service_time: float = 0.0


class BrokerCore:
    """MDP broker state machine: frames and time in, frames to send out."""

    def __init__(self, settings: BrokerSettings, now: float = 0.0) -> None:
        self.settings = settings
        self.services: dict[bytes, Service] = {}
        self.workers: dict[bytes, Worker] = {}
        self.counters: dict[str, int] = dict.fromkeys((
            "requests", "replies", "partials", "malformed", "violations", "disconnects",
            "expired", "busy", "worker_lost", "no_such_service", "redispatched",
            "unreachable", "would_block", "workers_expired", "mmi", "too_large",
            "shutting_down", "bad_request", "forbidden", "unauthenticated", "internal",
            "internal_errors", "undeliverable", "not_active"), 0)
        # Bytes of each client's requests held here (queued or with a worker), by routing
        # id, and what the server holds for it (unsent replies, a full pipe's estimate):
        # together bounded by client_backlog_bytes.
        self.client_bytes: dict[bytes, int] = {}
        self.held_out: dict[bytes, int] = {}
        self.policy: Policy | None = None  # keys on: set_policy() before any message
        # A broker of a pair (storymesh.core.pair): while it is not ACTIVE every message
        # but MMI goes through the pair's gate, and the fast paths decline (`gated`).
        self.pair: Pair | None = None
        self.gated = False
        self._packer = msgpack.Packer(use_bin_type=True)  # re-packs headers; 4x packb's speed
        self.started = now
        self._next_beat = now
        self._liveness = settings.liveness_timeout
        self._out: list[Send] = []
        self._now = now  # the current message's time, for what logs deep in the call tree
        # peers can trigger these at will: rate-limited, so nobody can flood the log
        self._violations_log = RateLog(log, logging.WARNING)
        self._refusals_log = RateLog(log, logging.INFO)

    # --- entry points -----------------------------------------------------------------

    def on_frames(self, sender: bytes, frames: list[Frame], now: float,
                  wall: float | None = None, user: str | None = None) -> list[Send]:
        """Handle one message from `sender` (routing id already split off); `user` is the
        key name ZAP authenticated it with (keys on), else None."""
        out: list[Send] = []
        self._out = out
        self._now = now
        if len(frames) > self.settings.max_frames:
            self._malformed(sender, f"{len(frames)} frames, over the limit")
            return out
        try:
            msg = mdp.parse(frames)
        except RemoteProtocolError as exc:
            self._malformed(sender, str(exc))
            worker = self.workers.get(sender)
            if worker is not None:  # an invalid message makes the sender invalid: forget it
                self._disconnect(worker, now, "invalid message")
            return out
        if self.gated and not self._let_in(sender, msg, now):
            return out
        if isinstance(msg, mdp.ClientRequest):
            self._on_request(sender, msg, now, now if wall is None else wall, user)
        else:
            self._on_worker(sender, msg, now, user)
        return out

    def on_tick(self, now: float, wall: float | None = None) -> list[Send]:
        """Heartbeats, worker expiry and queue expiry; call a few times per interval."""
        out: list[Send] = []
        self._out = out
        if now >= self._next_beat:
            self._next_beat = now + self.settings.heartbeat_interval
            self._beat_and_expire(now)
        self._expire_queues(now)
        return out

    def on_unreachable(self, identity: bytes, frames: list[Frame], now: float) -> list[Send]:
        """A send of `frames` to `identity` failed (EHOSTUNREACH): that peer is gone."""
        out: list[Send] = []
        self._out = out
        self.counters["unreachable"] += 1
        worker = self.workers.get(identity)
        if worker is not None:
            if worker.request is not None and _is_request(frames):
                worker.request.attempts -= 1  # never delivered: not a dispatch
            self._drop(worker, now, "unreachable")
        return out

    def take_sends(self) -> list[Send]:
        """What the message being handled had already decided to send: the server sends
        it after an unexpected error, so no state change is left without its message."""
        out, self._out = self._out, []
        return out

    def on_internal_error(self, sender: bytes, frames: list[Frame], now: float) -> list[Send]:
        """Handling `frames` from `sender` failed unexpectedly (a bug): count it, and when the
        message is a client request, answer it with an `internal` error FINAL."""
        out: list[Send] = []
        self._out = out
        self.counters["internal_errors"] += 1
        try:
            msg = mdp.parse(frames)
        except RemoteProtocolError:
            return out
        if isinstance(msg, mdp.ClientRequest) and sender not in self.workers:
            self.counters["internal"] += 1
            rid, corr = _ids_of(msg.body)
            self._reply_error(sender, msg, rid, corr, "internal",
                              "the broker failed while handling this request; it was not queued")
        return out

    def set_policy(self, policy: Policy, now: float) -> list[Send]:
        """Keys on, or a reloaded allow-list: workers whose key lost its right go (DISCONNECT)."""
        out: list[Send] = []
        self._out = out
        self.policy = policy
        for worker in list(self.workers.values()):
            roles = policy.of(worker.principal)
            if roles is None or not roles.may_register(worker.service.name):
                self.counters["forbidden"] += 1
                self._disconnect(worker, now, f"key {worker.principal} may no longer serve "
                                              f"{worker.service.name.decode(errors='replace')}")
        return out

    def shutdown(self, now: float) -> list[Send]:
        """Answer every held request with a retryable `shutting_down`, DISCONNECT workers.
        One of a pair answers `not_active` instead, so clients go to the other broker."""
        out: list[Send] = []
        self._out = out
        if self.pair is not None:
            self._stand_down(now)
            return out
        for service in self.services.values():
            while service.queue:
                self._fail(service.queue.popleft(), "shutting_down", "the broker is stopping")
        for worker in list(self.workers.values()):
            if worker.request is not None:
                self._fail(worker.request, "shutting_down", "the broker is stopping")
                worker.request = None
            self._send_worker(worker, mdp.Disconnect(worker.dialect))
        self.workers.clear()
        return out

    # --- the pair ---------------------------------------------------------------------

    def set_pair(self, pair: Pair) -> None:
        """Make this broker one of a pair: it serves nobody until the pair says ACTIVE."""
        self.pair = pair
        self.gated = not pair.active

    def on_peer_state(self, message: bytes, now: float) -> list[Send]:
        """A state message from the pair's other broker; standing down (ACTIVE to PASSIVE)
        answers every held request `not_active` and sends every worker DISCONNECT."""
        out: list[Send] = []
        self._out = out
        event = peer_event(message)
        if self.pair is None or event is None:
            self.counters["malformed"] += 1
            return out
        change = self.pair.on_peer(event, now)
        if change is not None:
            log.warning("pair: %s -> %s (%s)", change.old.value, change.new.value, change.why)
            if change.old is PState.ACTIVE:
                self._stand_down(now)
            self.gated = not self.pair.active
        return out

    def _let_in(self, sender: bytes, msg: mdp.ClientRequest | mdp.FromWorker,
                now: float) -> bool:
        """A message while not ACTIVE: MMI is answered; anything else is a visitor, which
        makes this broker ACTIVE (fail-over) or is refused: `not_active` to a client,
        DISCONNECT to a worker, so either goes to the other endpoint at once."""
        assert self.pair is not None  # gated only as one of a pair
        if isinstance(msg, mdp.ClientRequest) and msg.service.startswith(MMI_PREFIX):
            return True
        serve, change = self.pair.on_visitor(now)
        if change is not None:
            log.warning("pair: %s -> %s (%s)", change.old.value, change.new.value, change.why)
            self.gated = not self.pair.active
        if serve:
            return True
        self.counters["not_active"] += 1
        if isinstance(msg, mdp.ClientRequest):
            rid, corr = _ids_of(msg.body)
            self._reply_error(sender, msg, rid, corr, "not_active",
                              f"this broker is {self.pair.state.value}; use the other one")
        elif not isinstance(msg, mdp.Disconnect):
            self._out.append((sender, mdp.encode(mdp.Disconnect(msg.dialect))))
        return False

    def _stand_down(self, now: float) -> None:
        """Serve nobody: held requests fail `not_active` (their clients resend them to the
        other broker with the same ids), workers get DISCONNECT and are forgotten."""
        for worker in list(self.workers.values()):
            pending, worker.request = worker.request, None
            if pending is not None:
                self._fail(pending, "not_active", "this broker stood down; use the other one")
            self._send_worker(worker, mdp.Disconnect(worker.dialect))
            worker.state = WState.GONE
        self.workers.clear()
        for service in self.services.values():
            while service.queue:
                self._fail(service.queue.popleft(), "not_active",
                           "this broker stood down; use the other one")
        self.services.clear()

    # --- clients ----------------------------------------------------------------------

    def _on_request(self, client: bytes, msg: mdp.ClientRequest, now: float, wall: float,
                    user: str | None) -> None:
        self.counters["requests"] += 1
        name = msg.service
        if name.startswith(MMI_PREFIX):
            self._mmi(client, msg, now, user)
            return
        rid: str | None = None
        corr: str | None = None
        deadline: float | None = None
        header: dict[str, Any] | None = None
        if msg.body:
            try:
                header = envelope.read_header(msg.body[0])
            except BodyError:
                header = None  # a foreign MDP body: relay it untouched, without a header
            if header is not None:
                rid, corr = _ids_in(header)
                if header[schema.H_VERSION] > schema.ENVELOPE_VERSION:
                    self._reply_error(client, msg, rid, corr, "unsupported_version",
                                      f"envelope version {header[schema.H_VERSION]} > 1")
                    return
                wall_deadline = header.get(schema.H_DEADLINE)
                if wall_deadline is not None:
                    deadline = now + (float(wall_deadline) - wall)
        if not self._valid_service(name):
            self.counters["bad_request"] += 1
            self._reply_error(client, msg, rid, corr, "bad_request",
                              "service names are 1-128 characters of A-Z a-z 0-9 . _ : / -")
            return
        size = sum(map(len, msg.body))  # bytes and zmq.Frame both know their length
        if size > self.settings.max_message_bytes:
            self.counters["too_large"] += 1
            self._reply_error(client, msg, rid, corr, "too_large",
                              f"request of {size} bytes, over {self.settings.max_message_bytes}")
            return
        body: Body = msg.body
        owner: Hashable = client
        if self.policy is not None:
            admitted = self._admit(client, msg, header, user, rid, corr)
            if admitted is None:
                return
            body, owner = admitted
        if deadline is not None and deadline <= now:
            self.counters["expired"] += 1
            self._reply_error(client, msg, rid, corr, "expired", "deadline passed before queueing")
            return
        self._accept(self._service(name), Pending(client, name, body, msg.dialect, deadline,
                                                  now, size, owner, ids=(rid, corr)), now)

    def fast_request(self, client: bytes, name: bytes, body: Body,
                     now: float) -> list[Send] | None:
        """An MDP/0.2 REQUEST already split by the server, without message objects; None
        (and nothing done) when it is anything but the common case, which `on_frames`
        then handles in full: keys on, an unknown or MMI service, a header that is not
        plainly version 1 without a deadline, a size or backlog over its limit."""
        service = self.services.get(name)
        if service is None or self.policy is not None or self.gated or not body \
                or name[:4] == MMI_PREFIX:
            return None
        head = body[0]
        head = head if type(head) is bytes else head.bytes
        # msgpack of make_header(): a small map whose first entry is "v": 1
        if head[1:4] != _V1 or not 0x82 <= head[0] <= 0x8F or _DEADLINE_KEY in head \
                or len(head) > schema.MAX_HEADER_BYTES:
            return None
        size = sum(map(len, body))
        if size > self.settings.max_message_bytes:
            return None
        out: list[Send] = []
        self._out = out
        self.counters["requests"] += 1
        self._accept(service, Pending(client, name, body, Dialect.V02, None, now, size, client),
                     now)
        return out

    def _accept(self, service: Service, pending: Pending, now: float) -> None:
        """The queueing rules, for both paths: limits (busy), then a worker or the queue."""
        queue = service.queue
        queued = len(queue)
        if queued >= self.settings.queue_limit:
            self._busy(pending, service, f"queue of {service.name.decode(errors='replace')} "
                       "is full")
            return
        if queued and queue.lane_len(pending.owner) >= self.settings.client_queue_limit:
            self._busy(pending, service, f"this client already has "
                       f"{self.settings.client_queue_limit} requests queued for "
                       f"{service.name.decode(errors='replace')}")
            return
        if self._over_backlog(pending.client, pending.size):
            self._busy(pending, service, f"this client holds over "
                       f"{self.settings.client_backlog_bytes} bytes of requests and unread "
                       "replies in the broker")
            return
        client_bytes = self.client_bytes
        client_bytes[pending.client] = client_bytes.get(pending.client, 0) + pending.size
        if service.idle:  # idle workers mean an empty queue: skip it
            self._hand(service, pending, now)
        else:
            queue.append(pending.owner, pending)

    def _over_backlog(self, client: bytes, size: int) -> bool:
        held = self.client_bytes.get(client, 0) + self.held_out.get(client, 0)
        return held + size > self.settings.client_backlog_bytes

    def _release(self, pending: Pending) -> None:
        """`pending` is answered or failed: its bytes no longer count against its client."""
        client_bytes = self.client_bytes
        left = client_bytes.get(pending.client, 0) - pending.size
        if left > 0:
            client_bytes[pending.client] = left
        else:
            client_bytes.pop(pending.client, None)

    def _busy(self, pending: Pending, service: Service, why: str) -> None:
        self.counters["busy"] += 1
        self._reply_error_to(pending.client, pending.service, pending.dialect, pending.rid,
                             pending.corr, "busy", why, retry_after=self._retry_hint(service))

    def _admit(self, client: bytes, msg: mdp.ClientRequest, header: dict[str, Any] | None,
               user: str | None, rid: str | None, corr: str | None
               ) -> tuple[Body, Hashable] | None:
        """Keys on: may `user` call this service? Its body with the header's `principal`
        (and `admin`) written by the broker, and its fair-queue lane; None when refused."""
        assert self.policy is not None  # only called with keys on
        roles = self.policy.of(user)
        if roles is None or not roles.may_call(msg.service):
            self._forbidden(client, msg, rid, corr, user, "call")
            return None
        if header is None:
            self.counters["bad_request"] += 1
            self._reply_error(client, msg, rid, corr, "bad_request",
                              "with keys on every request needs a storymesh header")
            return None
        principal = self._principal(roles, header)
        header[schema.H_PRINCIPAL] = principal
        if roles.admin and principal == roles.name:
            header[H_ADMIN] = True
        else:
            header.pop(H_ADMIN, None)  # only the broker says who is an admin
        return (self._packer.pack(header), *msg.body[1:]), principal

    @staticmethod
    def _principal(roles: KeyRoles, header: dict[str, Any]) -> str:
        """The key's own name, or for a delegate the principal it acts for."""
        if roles.delegate:
            claimed = header.get(schema.H_PRINCIPAL)
            if isinstance(claimed, str) and 0 < len(claimed) <= MAX_PRINCIPAL:
                return claimed
        return roles.name

    def _forbidden(self, client: bytes, msg: mdp.ClientRequest, rid: str | None,
                   corr: str | None, user: str | None, what: str) -> None:
        self.counters["forbidden"] += 1
        self._refusals_log.log(self._now, "refused %s of %s to key %s", what,
                               msg.service[:64].decode(errors="replace"), user)
        self._reply_error(client, msg, rid, corr, "forbidden",
                          f"key {user} may not {what} {msg.service.decode(errors='replace')}")

    def _valid_service(self, name: bytes) -> bool:
        if name in self.services:  # only valid names ever become services
            return True
        return len(name) <= schema.MAX_SERVICE_NAME and _SERVICE_NAME.fullmatch(name) is not None

    def _retry_hint(self, service: Service) -> float:
        mean = service.service_time / service.served if service.served else 1.0
        per_worker = len(service.queue) / max(service.workers, 1)
        return round(max(0.1, min(60.0, mean * per_worker)), 3)

    def _reply(self, client: bytes, service: bytes, dialect: Dialect, body: Body,
               final: bool = True) -> None:
        if dialect is Dialect.V02:  # prebuilt prefix: the common case skips encode()
            self._out.append((client, [mdp.C02, _C02_FINAL if final else _C02_PARTIAL,
                                       service, *body]))
            return
        self._out.append((client, mdp.encode(mdp.ClientReply(service, body, final, dialect))))

    def _reply_error(self, client: bytes, msg: mdp.ClientRequest, rid: str | None,
                     corr: str | None, code: str, message: str,
                     retry_after: float | None = None) -> None:
        self._reply_error_to(client, msg.service, msg.dialect, rid, corr, code, message,
                             retry_after)

    def _reply_error_to(self, client: bytes, service: bytes, dialect: Dialect,
                        rid: str | None, corr: str | None, code: str, message: str,
                        retry_after: float | None = None) -> None:
        body = envelope.error_body(rid or "", code, message, corr=corr, retry_after=retry_after)
        self._reply(client, service, dialect, tuple(body))

    def _fail(self, pending: Pending, code: str, message: str) -> None:
        """Answer a held request with an error FINAL and count it against its service."""
        self._release(pending)
        self.counters[code] = self.counters.get(code, 0) + 1
        service = self.services.get(pending.service)
        if service is not None:
            service.failed += 1
        self._reply_error_to(pending.client, pending.service, pending.dialect, pending.rid,
                             pending.corr, code, message)

    # --- MMI --------------------------------------------------------------------------

    def _mmi(self, client: bytes, msg: mdp.ClientRequest, now: float, user: str | None) -> None:
        self.counters["mmi"] += 1
        if self.policy is not None and msg.service.startswith(MMI_PRIVATE):
            roles = self.policy.of(user)
            if roles is None or not roles.admin:
                self._forbidden(client, msg, _ids_of(msg.body)[0], None, user, "read")
                return
        if msg.service == b"mmi.service":
            target = mdp.as_bytes(msg.body[0]) if msg.body else b""
            found = target in self.services and self.services[target].workers > 0
            self._reply(client, msg.service, msg.dialect, (b"200" if found else b"404",))
        elif msg.service == b"mmi.storymesh.snapshot":
            rid = _ids_of(msg.body)[0]
            body = envelope.pack(envelope.make_header(rid, ok=True), self.snapshot(now))
            self._reply(client, msg.service, msg.dialect, tuple(body))
        else:
            self._reply(client, msg.service, msg.dialect, (b"501",))

    def snapshot(self, now: float) -> dict[str, Any]:
        """A versioned picture of services, workers and counters, for the monitor."""
        services = {}
        for name, s in self.services.items():
            services[name.decode(errors="replace")] = {
                "queue": len(s.queue), "clients": s.queue.lanes, "workers": s.workers,
                "idle": len(s.idle),
                "busy": s.workers - len(s.idle), "served": s.served, "failed": s.failed,
                "mean_service_time": s.service_time / s.served if s.served else None,
            }
        workers = []
        for w in self.workers.values():
            req = w.request
            workers.append({
                "id": w.identity.hex(), "service": w.service.name.decode(errors="replace"),
                "state": w.state.value, "dialect": w.dialect.value,
                "heartbeat_age": round(now - w.last_seen, 3), "served": w.served,
                "principal": w.principal,
                "uptime": round(now - w.registered, 3), "meta": w.meta,
                "request": None if req is None else {"id": req.rid, "corr": req.corr,
                                                     "attempt": req.attempts,
                                                     "age": round(now - w.busy_since, 3)},
            })
        return {"version": SNAPSHOT_VERSION, "uptime": round(now - self.started, 3),
                "pid": os.getpid(), "counters": dict(self.counters), "services": services,
                "workers": workers,
                "pair": None if self.pair is None else self.pair.view(now),
                "settings": {"heartbeat_interval": self.settings.heartbeat_interval,
                             "liveness": self.settings.liveness,
                             "max_attempts": self.settings.max_attempts,
                             "queue_limit": self.settings.queue_limit,
                             "client_queue_limit": self.settings.client_queue_limit,
                             "keys": self.policy is not None}}

    # --- workers ----------------------------------------------------------------------

    def _on_worker(self, sender: bytes, msg: mdp.FromWorker, now: float,
                   user: str | None) -> None:
        worker = self.workers.get(sender)
        state = worker.state if worker is not None else WState.UNKNOWN
        if isinstance(msg, mdp.WorkerReply):
            event = WEvent.FINAL if msg.final else WEvent.PARTIAL
        elif isinstance(msg, mdp.Heartbeat):
            event = WEvent.HEARTBEAT
        elif isinstance(msg, mdp.Ready):
            event = WEvent.READY
        else:
            event = WEvent.DISCONNECT
        nxt = transition(state, event)
        if nxt is WState.IGNORE:
            return
        if nxt is WState.VIOLATION:
            dialect = worker.dialect if worker is not None else msg.dialect
            self._violation(sender, worker, dialect, now, f"{event.value} while {state.value}")
            return
        if worker is None:
            assert isinstance(msg, mdp.Ready)  # the table allows only READY from UNKNOWN
            self._register(sender, msg, now, user)
            return
        if nxt is WState.GONE:
            self._drop(worker, now, "sent DISCONNECT")
            return
        worker.last_seen = now
        if isinstance(msg, mdp.WorkerReply):
            self._on_reply(worker, msg.client, msg.body, msg.final, now)

    def fast_reply(self, sender: bytes, client: bytes, body: Body, final: bool,
                   now: float) -> list[Send] | None:
        """An MDP/0.2 PARTIAL or FINAL from a known busy 0.2 worker, already split by the
        server; None (nothing done) for anything else, which `on_frames` handles."""
        worker = self.workers.get(sender)
        if worker is None or worker.state is not WState.BUSY or worker.dialect is not Dialect.V02:
            return None
        out: list[Send] = []
        self._out = out
        worker.last_seen = now
        self._on_reply(worker, client, body, final, now)
        return out

    def fast_heartbeat(self, sender: bytes, now: float) -> bool:
        """An MDP/0.2 HEARTBEAT: a known 0.2 worker is alive now; False for anyone else."""
        worker = self.workers.get(sender)
        if worker is None or worker.dialect is not Dialect.V02:
            return False
        worker.last_seen = now
        return True

    def _register(self, sender: bytes, msg: mdp.Ready, now: float, user: str | None) -> None:
        if msg.service.startswith(MMI_PREFIX) or not self._valid_service(msg.service):
            self._violation(sender, None, msg.dialect, now,
                            f"READY for reserved or invalid service {msg.service[:40]!r}")
            return
        if self.policy is not None:
            roles = self.policy.of(user)
            if roles is None or not roles.may_register(msg.service):
                self.counters["forbidden"] += 1
                self._violation(sender, None, msg.dialect, now,
                                f"key {user} may not register {msg.service[:64]!r}")
                return
        meta = self._read_meta(msg.meta)
        service = self._service(msg.service)
        worker = Worker(sender, service, msg.dialect, meta, bool(meta.get("hb_busy")),
                        now, now, principal=user)
        self.workers[sender] = worker
        service.workers += 1
        service.idle[sender] = worker
        log.info("worker %s registered for %s (%s)", sender.hex(),
                 msg.service.decode(errors="replace"),
                 msg.dialect.value)
        self._dispatch(service, now)

    def _read_meta(self, raw: bytes | None) -> dict[str, Any]:
        if not raw:
            return {}
        try:
            meta = msgpack.unpackb(raw, raw=False, max_str_len=_META_LIMITS.str_bytes,
                                   max_bin_len=0, max_array_len=_META_LIMITS.container_len,
                                   max_map_len=_META_LIMITS.container_len, max_ext_len=0)
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
                msgpack.StackError, UnicodeDecodeError):
            self.counters["malformed"] += 1
            return {}
        if not isinstance(meta, dict):
            return {}
        # Keep a flat map of short scalars: it is shown to every monitor, so a worker must
        # not be able to make the snapshot deep or huge.
        flat: dict[str, Any] = {}
        for key, value in list(meta.items())[:32]:
            if not isinstance(key, str) or len(key) > 64:
                continue
            if isinstance(value, str):
                flat[key] = value[:256]
            elif value is None or isinstance(value, (bool, int, float)):
                flat[key] = value
        return flat

    def _on_reply(self, worker: Worker, client: bytes, body: Body, final: bool,
                  now: float) -> None:
        pending = worker.request
        if pending is None:  # BUSY workers hold a request (state invariant)
            raise RuntimeError(f"busy worker {worker.identity.hex()} holds no request")
        if client != pending.client:
            self._violation(worker.identity, worker, worker.dialect, now,
                            "reply addressed to a client it does not serve")
            return
        if not final:
            self.counters["partials"] += 1
            if pending.dialect is not Dialect.V01:  # 0.1 clients get only the FINAL
                self._reply(pending.client, pending.service, pending.dialect, body, False)
            return
        self.counters["replies"] += 1
        self._release(pending)
        self._reply(pending.client, pending.service, pending.dialect, body, True)
        service = worker.service
        service.served += 1
        service.service_time += now - worker.busy_since
        worker.served += 1
        worker.request = None
        worker.state = WState.IDLE
        service.idle[worker.identity] = worker
        self._dispatch(service, now)

    def _violation(self, sender: bytes, worker: Worker | None, dialect: Dialect, now: float,
                   why: str) -> None:
        self.counters["violations"] += 1
        self._violations_log.log(now, "disconnecting worker %s: %s", sender.hex(), why)
        self._out.append((sender, mdp.encode(mdp.Disconnect(dialect))))
        self.counters["disconnects"] += 1
        if worker is not None:
            self._drop(worker, now, why)

    def _disconnect(self, worker: Worker, now: float, why: str) -> None:
        self._violation(worker.identity, worker, worker.dialect, now, why)

    def _drop(self, worker: Worker, now: float, why: str) -> None:
        """Forget a worker; re-queue the request it held (front of the queue) or fail it."""
        self.workers.pop(worker.identity, None)
        service = worker.service
        service.workers -= 1
        service.idle.pop(worker.identity, None)
        worker.state = WState.GONE
        pending, worker.request = worker.request, None
        if pending is not None:
            if pending.attempts >= self.settings.max_attempts:
                log.warning("request %s failed: %d workers lost it", pending.rid, pending.attempts)
                self._fail(pending, "worker_lost",
                           f"{pending.attempts} workers died while serving the request")
            else:
                self.counters["redispatched"] += 1
                pending.enqueued = now  # a fresh service_wait for a worker to (re)appear
                service.queue.appendleft(pending.owner, pending)
        log.info("worker %s gone (%s)", worker.identity.hex(), why)
        self._dispatch(service, now)

    def _send_worker(self, worker: Worker,
                     msg: mdp.WorkerRequest | mdp.Heartbeat | mdp.Disconnect) -> None:
        self._out.append((worker.identity, mdp.encode(msg)))

    def _dispatch(self, service: Service, now: float) -> None:
        """Hand queued requests (round-robin between clients) to the least recently used
        idle workers."""
        queue, idle = service.queue, service.idle
        while queue and idle:
            pending = queue.popleft()
            if pending.deadline is not None and pending.deadline <= now:
                self._fail(pending, "expired", "deadline passed while queued")
                continue
            self._hand(service, pending, now)

    def _hand(self, service: Service, pending: Pending, now: float) -> None:
        """Give `pending` to the least recently used idle worker (there is one)."""
        _, worker = service.idle.popitem(last=False)
        worker.state = WState.BUSY
        worker.request = pending
        worker.busy_since = now
        pending.attempts += 1
        self._out.append((worker.identity, [*_REQUEST_PREFIX[worker.dialect], pending.client,
                                            mdp.EMPTY, *pending.body]))

    # --- time -------------------------------------------------------------------------

    def _beat_and_expire(self, now: float) -> None:
        busy_timeout = self.settings.busy_timeout
        liveness = self._liveness
        dead = [w for w in self.workers.values()
                if (now - max(w.busy_since, w.last_seen) > busy_timeout
                    if w.state is WState.BUSY and not w.hb_busy else now - w.last_seen > liveness)]
        for worker in dead:  # out of the idle lists before any re-dispatch reaches them
            worker.service.idle.pop(worker.identity, None)
        for worker in dead:
            self.counters["workers_expired"] += 1
            self._drop(worker, now, "heartbeat expired")
        for worker in self.workers.values():
            self._send_worker(worker, mdp.Heartbeat(worker.dialect))

    def _expire_queues(self, now: float) -> None:
        wait = self.settings.service_wait
        for name, service in list(self.services.items()):
            queue = service.queue
            if not queue:
                if service.workers == 0:  # forget names nobody serves or asks for any more
                    del self.services[name]
                continue
            no_workers = service.workers == 0
            if not no_workers and all(p.deadline is None for p in queue):
                continue
            # with no worker, anything that waited service_wait goes too
            waited_since = now - wait if no_workers else float("-inf")

            def gone(p: Pending, since: float = waited_since) -> bool:
                return (p.deadline is not None and p.deadline <= now) or p.enqueued <= since

            for pending in queue.remove_where(gone):
                if pending.deadline is not None and pending.deadline <= now:
                    self._fail(pending, "expired", "deadline passed while queued")
                else:
                    self._fail(pending, "no_such_service",
                               f"no worker for {service.name.decode(errors='replace')} "
                               f"within {wait:g} s")

    # --- helpers ----------------------------------------------------------------------

    def _service(self, name: bytes) -> Service:
        service = self.services.get(name)
        if service is None:
            service = self.services[name] = Service(name)
        return service

    def _malformed(self, sender: bytes, why: str) -> None:
        self.counters["malformed"] += 1
        log.debug("dropped malformed message from %s: %s", sender.hex(), why)

    def queued(self) -> int:
        return sum(len(s.queue) for s in self.services.values())

    def idle_workers(self) -> Iterable[Worker]:
        for s in self.services.values():
            yield from s.idle.values()


_V1 = b"\xa1v\x01"                # msgpack "v": 1, the first entry of a storymesh header
_DEADLINE_KEY = b"\xa8deadline"    # msgpack "deadline": a header with it takes the slow path
_C02_FINAL = b"\x03"
_C02_PARTIAL = b"\x02"
_REQUEST_PREFIX: dict[Dialect, tuple[bytes, ...]] = {
    Dialect.V02: (mdp.W02, b"\x02"),
    Dialect.V02E: (mdp.EMPTY, mdp.W02, b"\x02"),
    Dialect.V01: (mdp.EMPTY, mdp.W01, b"\x02"),
}


def _ids_of(body: Body) -> tuple[str | None, str | None]:
    """(request id, correlation id) from a body's header; (None, None) for a foreign body."""
    if not body:
        return None, None
    try:
        header = envelope.read_header(body[0])
    except BodyError:
        return None, None
    return _ids_in(header)


def _ids_in(header: dict[str, Any]) -> tuple[str, str | None]:
    """(request id, correlation id) of a read header (`read_header` checked the id)."""
    corr = header.get(schema.H_CORR)
    return header[schema.H_ID], corr if isinstance(corr, str) else None


def _is_request(frames: list[Frame]) -> bool:
    try:
        return isinstance(mdp.parse_to_worker(frames), mdp.WorkerRequest)
    except RemoteProtocolError:
        return False
