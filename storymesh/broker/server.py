"""The broker daemon's socket side: one ROUTER, a poll loop, and nothing else.

It owns the socket, reads the clock once per turn, feeds `BrokerCore` and sends what the
core returns. Each wake-up drains what is readable. The common MDP/0.2 messages (a REQUEST,
a worker's PARTIAL or FINAL, a HEARTBEAT) take a fast path: only their protocol frames are
read, and the core's `fast_*` methods apply the same rules as `on_frames` without building
message objects, or decline, and then the message goes through `on_frames` whole. Frames
past `max_frames` are read and dropped at once, never held.

Sends never block: ROUTER_MANDATORY makes a send to a vanished peer fail at once
(EHOSTUNREACH, and the core re-queues what that worker held), and a send that would block
at a full pipe goes to a per-peer backlog retried every turn. libzmq counts messages, not
bytes, so the send high-water mark is derived from `client_backlog_bytes`, and what the
broker holds for a client that does not read (its queued requests, the estimate of its full
pipe, its backlog) stays under `client_backlog_bytes`: past it its new requests get `busy`
and a reply that does not fit is dropped and counted (`undeliverable`). A worker whose
backlog overflows is treated as dead.

An unexpected exception while handling one message (a bug) is logged with its traceback,
counted (`internal_errors`), answered with an `internal` error when the message is a client
request, and the loop goes on: nothing queued or held is lost.

With `curve_secret` set the ROUTER is a CURVE server: the ZAP handler
(storymesh.core.policy / storymesh.transport.curve) is polled by this same loop, each
message's `User-Id` (the key name) goes to the core, and `request_reload()` (SIGHUP in
the daemon) re-reads the allow-list and roles between turns.

Where the optional compiled helper is built (storymesh.broker.wire), a whole message is read
or sent per call instead of one pyzmq call per frame; the rules and the errors handled are
the same. It is off with keys on (the `User-Id` is a frame property only pyzmq reads) and
with `native_wire = false` (STORYMESH_NATIVE_WIRE=0).

With `ha` set the broker is one of a pair (Binary Star): storymesh.broker.pair owns the state
sockets, polled by this loop, and the core's pure `Pair` decides; while the broker is not
active the core gates every message (the fast path declines), answering clients `not_active`
and workers DISCONNECT unless the pair's rules make it active.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import cast

import zmq

from storymesh.broker import wire as native
from storymesh.broker.pair import PairLink, make_pair
from storymesh.core import policy
from storymesh.core.broker import BrokerCore, Send
from storymesh.core.mdp import C02, W02, Frame
from storymesh.errors import ConfigError
from storymesh.plumbing.ratelog import RateLog
from storymesh.plumbing.sdnotify import notifier
from storymesh.settings import BrokerSettings
from storymesh.transport import curve

log = logging.getLogger(__name__)

# pyzmq's Python socket layer costs ~30 us per message (enum arithmetic, a getsockopt per
# frame for RCVMORE, argument checks); the Cython methods with plain int flags do not.
_recv = zmq.backend.Socket.recv
_send = zmq.backend.Socket.send
_poll = zmq.backend.zmq_poll
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
_EAGAIN = zmq.EAGAIN
_EHOSTUNREACH = zmq.EHOSTUNREACH

RECV_BATCH = 256          # messages drained per turn before the clock is read again
READY_CHECKS = 8          # messages per wake-up checked by poll before draining to Again
BACKLOG_LIMIT = 1000      # messages held for one worker whose pipe is full
SHUTDOWN_LINGER_MS = 1000  # time given to flush `shutting_down` replies on stop
BACKLOG_RETRY_MS = 2      # poll timeout while a backlog waits for a pipe to drain
HELD_OVERHEAD = 512       # bytes a held message costs beyond its frames (objects, deque)
SEND_HWM_MIN = 16
SEND_HWM_UNIT = 4 * 1024 * 1024  # the send HWM keeps this many bytes per message in budget

_REQUEST = b"\x01"        # MDP/0.2 client REQUEST
_PARTIAL = b"\x03"        # MDP/0.2 worker PARTIAL, FINAL, HEARTBEAT
_FINAL = b"\x04"
_HEARTBEAT = b"\x05"


def send_hwm(settings: BrokerSettings) -> int:
    """The ROUTER's send high-water mark: per peer, libzmq parks at most this many messages.
    Derived from `client_backlog_bytes` so a client that stops reading pins a bounded
    amount in libzmq (this many messages; at SEND_HWM_UNIT each, the whole budget)."""
    return max(SEND_HWM_MIN, min(settings.hwm, settings.client_backlog_bytes // SEND_HWM_UNIT))


def read_message(sock: zmq.Socket[bytes], max_frames: int) -> tuple[bytes, list[Frame]]:
    """The next message on a ROUTER, without blocking (zmq.Again when there is none): its
    routing id and at most `max_frames + 1` frames. Frames past those are read and dropped
    as they come, so a peer cannot make the broker hold millions of frames; the core
    rejects a message of more than `max_frames` frames whatever their number."""
    ident: bytes = _recv(sock, _NOBLOCK, True)  # a ROUTER message always has more
    frame = _recv(sock, 0, False)
    frames = [frame]
    keep = max_frames + 1
    while frame.more:
        frame = _recv(sock, 0, False)
        if len(frames) < keep:
            frames.append(frame)
    return ident, frames


def _end_message(sock: zmq.Socket[bytes]) -> None:
    """End a message whose routing id went but a later frame failed (a frame that is no
    buffer: a bug): the ROUTER is inside that message, and the next one would go on as more
    frames of it, to its peer. The peer gets it cut short, ended by an empty frame."""
    with contextlib.suppress(zmq.ZMQError):  # a dying socket: nothing more to end
        _send(sock, b"", 0, True)


def _send_rest(sock: zmq.Socket[bytes], frames: list[Frame]) -> None:
    """The frames after a routing id the pipe took: they never fail for room (the pipe took
    the first frame), and a bug mid-way ends the message short (`_end_message`)."""
    try:
        for frame in frames[:-1]:
            _send(sock, frame, _SNDMORE, True)
        _send(sock, frames[-1], 0, True)
    except BaseException:
        _end_message(sock)
        raise


class BrokerServer:
    """Binds `settings.bind` and runs the broker loop until `stop` is set."""

    def __init__(self, settings: BrokerSettings, *,
                 context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.wall = wall
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.core = BrokerCore(settings, clock())
        self.stop_event = threading.Event()
        self.reload_requested = False  # a plain flag: set from a signal handler
        self._backlog: dict[bytes, deque[list[Frame]]] = {}
        self._backlog_bytes: dict[bytes, int] = {}  # per peer: held messages + overhead
        self._hwm = send_hwm(settings)
        self._errors_log = RateLog(log, logging.ERROR)
        self._drops_log = RateLog(log, logging.WARNING)
        self._thread: threading.Thread | None = None
        self.on_turn: Callable[[BrokerCore, float], None] | None = None  # hook for metrics
        self.zap: curve.ZapHandler | None = None
        self.pair_link: PairLink | None = None  # a broker of a pair: its state link
        self.socket = self._make_socket()
        self._sock_items = [(self.socket, _POLLIN)]  # the drain's readiness poll
        self.wire: native.Wire | None = None
        self._zsock: int = self.socket.underlying  # libzmq's handle, for the helper
        try:
            keys = self._start_keys()
            if keys is None and settings.native_wire:
                self.wire = native.load()
            if keys is not None:  # CURVE options must be set before bind
                curve.apply_server(self.socket, *keys)
            self.endpoint = self._bind(settings.bind)
            pair = make_pair(settings, clock())
            if pair is not None:  # passive until the pair says otherwise: the core gates
                self.core.set_pair(pair)
                self.pair_link = PairLink(settings, self.context)
        except BaseException:
            self.close()
            raise
        if keys is None and not policy.is_loopback(self.endpoint):
            log.warning("the broker listens on %s WITHOUT keys: anyone who can reach it may "
                        "register workers and read replies (see docs/security.md)", self.endpoint)

    def _start_keys(self) -> tuple[bytes, bytes] | None:
        """Keys on: the broker's key pair, the allow-list and the ZAP handler (before bind)."""
        if not self.settings.curve_secret:
            return None
        if self.settings.bind.startswith("inproc://"):
            # in-process mode: nothing leaves the process, and inproc has no handshake to
            # authenticate (every peer would look keyless and be refused)
            log.info("in-process broker: keys are not used on %s", self.settings.bind)
            return None
        keys = curve.load_keypair(self.settings.curve_secret)
        policy = curve.load_policy(self.settings.allow_dir, self.settings.roles)
        self.zap = curve.ZapHandler(self.context, policy, self.core.counters)
        self.core.set_policy(policy, self.clock())  # no workers yet: nothing to send
        return keys

    def _make_socket(self) -> zmq.Socket[bytes]:
        sock = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, send_hwm(self.settings))
        sock.setsockopt(zmq.RCVHWM, self.settings.hwm)
        sock.setsockopt(zmq.MAXMSGSIZE, self.settings.max_message_bytes)
        sock.setsockopt(zmq.LINGER, 0)
        return sock

    def _bind(self, endpoint: str) -> str:
        self.socket.bind(endpoint)
        last = self.socket.getsockopt(zmq.LAST_ENDPOINT)
        bound = last.decode() if isinstance(last, bytes) else str(last)
        log.info("broker listening on %s%s", bound, " (CURVE)" if self.zap else "")
        return bound

    def request_reload(self) -> None:
        """Re-read the allow-list and roles at the next turn (safe from a signal handler)."""
        self.reload_requested = True

    def _reload(self, now: float) -> None:
        self.reload_requested = False
        if self.zap is None:
            log.info("reload requested, but the broker runs without keys: nothing to reload")
            return
        try:
            policy = curve.load_policy(self.settings.allow_dir, self.settings.roles)
        except ConfigError as exc:
            log.error("reload failed, keeping the current allow-list and roles: %s", exc)
            return
        self.zap.policy = policy
        self._send_all(self.core.set_policy(policy, now), now)

    # --- the loop ---------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> int:
        """Serve until `stop` (or `self.stop_event`) is set; answer what is held, exit 0."""
        stop = stop or self.stop_event
        sock = self.socket
        zap = self.zap
        items = [(sock, _POLLIN)] if zap is None else [(sock, _POLLIN), (zap.socket, _POLLIN)]
        link = self.pair_link
        if link is not None:
            items.append((link.socket, _POLLIN))
        tick = min(0.1, self.settings.heartbeat_interval / 4)
        timeout_ms = max(1, int(tick * 1000))
        next_tick = self.clock()
        try:
            while not stop.is_set():
                ready = _poll(items, BACKLOG_RETRY_MS if self._backlog else timeout_ms)
                now = self.clock()
                if ready:
                    if zap is not None and any(s is zap.socket for s, _ in ready):
                        zap.handle()  # answers the handshakes waiting now, never blocks
                    if ready[0][0] is sock:
                        self._drain(now, self.wall())
                if link is not None:
                    readable = any(s is link.socket for s, _ in ready)
                    self._send_all(link.turn(self.core, readable, now), now)
                if now >= next_tick:
                    next_tick = now + tick
                    self._on_tick(now)
                if self._backlog:
                    self._flush_backlog(now)
                if self.reload_requested:
                    self._reload(now)
            self._shutdown()
        finally:
            self.close()
        return 0

    def _drain(self, now: float, wall: float) -> None:
        """Read what poll said is there: the first message without asking (poll just said
        so), then while a zero-timeout poll says more is waiting; past READY_CHECKS
        messages, a long burst: read until zmq.Again, at most RECV_BATCH.

        Costs in instructions (callgrind, pyzmq 27): a zero-timeout `zmq_poll` ~4k, a
        ZMQ_EVENTS query ~10k (a Python enum per call), a zmq.Again ~25k (pyzmq builds
        the exception in Python). Most wake-ups bring a few messages, so poll between
        them; one Again ends a long burst."""
        if self.wire is not None:
            self._drain_wire(self.wire, now, wall)
            return
        sock = self.socket
        mine = self._sock_items
        max_frames = self.settings.max_frames
        keys = self.zap is not None
        for i in range(RECV_BATCH):
            try:
                ident, frames = read_message(sock, max_frames)
            except zmq.Again:
                return
            user = cast("str | None", frames[0].get("User-Id")) if keys else None
            self._handle(ident, frames, now, wall, user)
            if i < READY_CHECKS and not _poll(mine, 0):
                return

    def _drain_wire(self, wire: native.Wire, now: float, wall: float) -> None:
        """The drain with the compiled helper: a whole message per call, and "nothing waits"
        is a plain None (no exception), so it reads until then, at most RECV_BATCH."""
        recv = wire.recv
        handle = self._zsock
        keep = self.settings.max_frames + 1
        for _ in range(RECV_BATCH):
            msg = recv(handle, keep, native.BIG_FRAME)
            if msg is None:
                return
            self._handle(msg[0], msg[1], now, wall, None)

    def _handle(self, ident: bytes, frames: list[Frame], now: float, wall: float,
                user: str | None) -> None:
        """One message: the fast path, else the core in full; a bug costs this message only."""
        try:
            sends = self._fast(ident, frames, now)
            if sends is None:
                sends = self.core.on_frames(ident, frames, now, wall, user)
        except Exception:  # noqa: BLE001 - a bug costs this message, never the broker
            sends = self._internal_error(ident, frames, now)
        try:
            self._send_all(sends, now)
        except Exception:  # noqa: BLE001 - a bug costs this message, never the broker
            self._internal_error(ident, frames, now, answer=False)

    def _fast(self, ident: bytes, frames: list[Frame], now: float) -> list[Send] | None:
        """MDP/0.2 REQUEST, PARTIAL/FINAL and HEARTBEAT by their protocol frames alone;
        None when the message is anything else or the core declines it."""
        n = len(frames)
        if n < 2 or n > self.settings.max_frames:
            return None
        if self.wire is not None:  # the helper gives the first three frames as bytes
            header, cmd, third = frames[0], frames[1], frames[2] if n > 2 else b""
        else:
            header, cmd = frames[0].bytes, frames[1].bytes
            third = frames[2].bytes if n > 2 else b""
        if header == C02:
            if n < 4 or cmd != _REQUEST:
                return None
            return self.core.fast_request(ident, third, tuple(frames[3:]), now)
        if header != W02:
            return None
        if cmd in (_FINAL, _PARTIAL):
            if n < 4 or len(frames[3]) or not third:
                return None  # [client | "" | body...] or the core explains what is wrong
            return self.core.fast_reply(ident, third, tuple(frames[4:]), cmd == _FINAL, now)
        if cmd == _HEARTBEAT and n == 2 and self.core.fast_heartbeat(ident, now):
            return []
        return None

    def _internal_error(self, ident: bytes, frames: list[Frame], now: float,
                        answer: bool = True) -> list[Send]:
        """A bug while handling one message: log it with its traceback (rate-limited),
        count it, keep what the core had already decided, answer the sender `internal`."""
        self._errors_log.log(now, "internal error while handling a message from %s; the "
                             "broker goes on:\n%s", ident.hex(), traceback.format_exc())
        core = self.core
        if not answer:
            core.counters["internal_errors"] += 1
            return []
        try:
            return core.take_sends() + core.on_internal_error(ident, frames, now)
        except Exception:  # noqa: BLE001 - the answer failed too: counted, logged above
            core.counters["internal_errors"] += 1
            return []

    def _on_tick(self, now: float) -> None:
        core = self.core
        try:
            self._send_all(core.on_tick(now, self.wall()), now)
            if self.on_turn is not None:
                self.on_turn(core, now)
        except Exception:  # noqa: BLE001 - a bug costs this tick, never the broker
            core.counters["internal_errors"] += 1
            self._errors_log.log(now, "internal error at a tick; the broker goes on:\n%s",
                                 traceback.format_exc())

    def _shutdown(self) -> None:
        now = self.clock()
        held = self.core.queued() + sum(1 for w in self.core.workers.values() if w.request)
        log.info("broker stopping: answering %d held requests with shutting_down", held)
        notifier().stopping(f"answering {held} held requests with shutting_down")
        self._send_all(self.core.shutdown(now), now)
        self.socket.setsockopt(zmq.LINGER, SHUTDOWN_LINGER_MS)

    def _send_all(self, sends: list[Send], now: float) -> None:
        """Send each message without blocking; a full pipe sends it to the peer's backlog.
        One loop with the common case inline: a call per message costs more than the send."""
        backlog = self._backlog
        sock = self.socket
        wire = self.wire
        for identity, frames in sends:
            if backlog and identity in backlog:  # keep per-peer order behind what waits
                self._hold(identity, frames, now)
                continue
            if wire is not None:  # the whole message in one call; errno of the routing id
                err = wire.send(self._zsock, identity, frames)
                if not err:
                    continue
                if err == _EAGAIN:
                    self.core.counters["would_block"] += 1
                    self._hold(identity, frames, now)
                elif err == _EHOSTUNREACH:
                    self._send_all(self.core.on_unreachable(identity, frames, now), now)
                else:
                    raise native.zmq_error(err)
                continue
            try:
                _send(sock, identity, _SNDMORE_NOBLOCK, True)
            except zmq.Again:
                self.core.counters["would_block"] += 1
                self._hold(identity, frames, now)
                continue
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                self._send_all(self.core.on_unreachable(identity, frames, now), now)
                continue
            _send_rest(sock, frames)

    def _send_message(self, identity: bytes, frames: list[Frame]) -> int:
        """One message without blocking: 0 when sent, else the errno of its first frame
        (nothing sent then). Small bytes frames are copied (cheaper than a zero-copy
        Frame); received frames, the big payloads among them, go on without a copy."""
        sock = self.socket
        if self.wire is not None:
            return self.wire.send(self._zsock, identity, frames)
        try:
            _send(sock, identity, _SNDMORE_NOBLOCK, True)
        except zmq.ZMQError as exc:
            if exc.errno is None:
                raise
            return exc.errno
        _send_rest(sock, frames)
        return 0

    def _hold(self, identity: bytes, frames: list[Frame], now: float) -> None:
        """Keep a message for a peer whose pipe is full; retried every turn."""
        core = self.core
        size = sum(map(len, frames)) + HELD_OVERHEAD
        queue = self._backlog.get(identity)
        if identity in core.workers:
            if queue is None:
                queue = self._backlog[identity] = deque()
            if len(queue) < BACKLOG_LIMIT:
                queue.append(frames)
                return
            log.warning("worker %s is not reading; its backlog is full", identity.hex())
            self._forget_backlog(identity)
            self._send_all(core.on_unreachable(identity, frames, now), now)
            return
        if queue is None:
            # its pipe is full: count what libzmq holds for it as the whole pipe of messages
            # of this size (libzmq says nothing of bytes) while this backlog lasts
            queue = self._backlog[identity] = deque()
            core.held_out[identity] = self._hwm * size
        if core.client_bytes.get(identity, 0) + core.held_out[identity] + size \
                > self.settings.client_backlog_bytes:
            core.counters["undeliverable"] += 1
            self._drops_log.log(now, "client %s is not reading and holds over %d bytes in "
                                "the broker: a reply of %d bytes dropped", identity.hex(),
                                self.settings.client_backlog_bytes, size)
            return
        queue.append(frames)
        core.held_out[identity] += size
        self._backlog_bytes[identity] = self._backlog_bytes.get(identity, 0) + size

    def _forget_backlog(self, identity: bytes) -> None:
        self._backlog.pop(identity, None)
        self._backlog_bytes.pop(identity, None)
        self.core.held_out.pop(identity, None)

    def _flush_backlog(self, now: float) -> None:
        for identity in list(self._backlog):
            queue = self._backlog.get(identity)
            while queue:
                frames = queue[0]
                err = self._send_message(identity, frames)
                if err == _EAGAIN:
                    break  # still full: keep the rest, in order
                if err == _EHOSTUNREACH:
                    self._forget_backlog(identity)  # gone: what it held is lost with it
                    self._send_all(self.core.on_unreachable(identity, frames, now), now)
                    break
                if err:
                    raise native.zmq_error(err)
                queue.popleft()
                size = sum(map(len, frames)) + HELD_OVERHEAD
                if identity in self._backlog_bytes:
                    self._backlog_bytes[identity] -= size
                    self.core.held_out[identity] -= size
            else:
                self._forget_backlog(identity)

    # --- lifecycle helpers (tests, `storymesh up`, in-process mode) -----------------------

    def start(self) -> threading.Thread:
        """Run the loop in a daemon thread (the socket then belongs to that thread)."""
        self._thread = threading.Thread(target=self.run, name="storymesh-broker", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        if self.pair_link is not None:
            self.pair_link.close()
        if not self.socket.closed:
            self.socket.close()
        self._zsock = 0  # the helper answers ENOTSOCK for it, as pyzmq does for a closed socket
        if self.zap is not None:
            self.zap.close()
        if self._own_context and not self.context.closed:
            self.context.term()


def run_broker(settings: BrokerSettings, stop: threading.Event) -> int:
    """The `storymesh broker` daemon: bind, serve until `stop`, exit code.

    With `metrics_bind` it also serves Prometheus metrics; under systemd it says READY once
    bound and feeds the watchdog from the loop (storymesh.ops)."""
    server = BrokerServer(settings)
    # SIGHUP re-reads the allow-list and roles; the handler only sets a flag. ValueError:
    # not the main thread (an embedded broker), which reloads through request_reload().
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGHUP, lambda signum, frame: server.request_reload())
    metrics = None
    if settings.metrics_bind:  # imported only when asked for: prometheus_client costs ~8 MB
        from storymesh.broker.metrics import BrokerMetrics

        metrics = BrokerMetrics()
    notify = notifier()

    def on_turn(core: BrokerCore, now: float) -> None:
        notify.watchdog()
        if metrics is not None:
            metrics.observe(core, now)

    server.on_turn = on_turn
    try:
        if metrics is not None:
            try:
                metrics.serve(settings.metrics_bind)
            except BaseException:
                server.close()  # run() never starts, so close what __init__ bound
                raise
        notify.ready(f"broker on {server.endpoint}")
        return server.run(stop)
    finally:
        if metrics is not None:
            metrics.close()
