"""The broker daemon's socket side: one ROUTER, a poll loop, and nothing else.

It owns the socket, reads the clock once per turn, feeds `BrokerCore` and sends what the
core returns. Socket work is batched (drain everything readable, then send), sends never
block: ROUTER_MANDATORY makes a send to a vanished peer fail at once (EHOSTUNREACH, and the
core re-queues what that worker held), and a send that would block at a full pipe goes to
a small per-peer backlog that is retried every turn (counted; a backlog that overflows is
logged and, for a worker, treated as a dead worker). High-water marks and the per-frame
size limit (ZMQ_MAXMSGSIZE) are set explicitly.

With `curve_secret` set the ROUTER is a CURVE server: the ZAP handler (storymesh.core.policy / storymesh.transport.curve)
is polled by this same loop, each message's `User-Id` (the key name) goes to the core, and
`request_reload()` (SIGHUP in the daemon) re-reads the allow-list and roles between turns.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import cast

import zmq

from storymesh.core import policy
from storymesh.core.broker import BrokerCore, Send
from storymesh.core.mdp import Frame
from storymesh.errors import ConfigError
from storymesh.plumbing.sdnotify import notifier
from storymesh.settings import BrokerSettings
from storymesh.transport import curve

log = logging.getLogger(__name__)

# pyzmq's Python socket layer costs ~30 us per message (enum arithmetic, a getsockopt per
# frame for RCVMORE, argument checks); the Cython methods with plain int flags do not.
_recv = zmq.backend.Socket.recv
_send = zmq.backend.Socket.send
_get = zmq.backend.Socket.get
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)

RECV_BATCH = 256          # messages drained per turn before the clock is read again
BACKLOG_LIMIT = 1000      # messages held for one peer whose pipe is full
SHUTDOWN_LINGER_MS = 1000  # time given to flush `shutting_down` replies on stop


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
        self._thread: threading.Thread | None = None
        self.on_turn: Callable[[BrokerCore, float], None] | None = None  # hook for metrics
        self.zap: curve.ZapHandler | None = None
        self.socket = self._make_socket()
        try:
            keys = self._start_keys()
            if keys is not None:  # CURVE options must be set before bind
                curve.apply_server(self.socket, *keys)
            self.endpoint = self._bind(settings.bind)
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
        sock.setsockopt(zmq.SNDHWM, self.settings.hwm)
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
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if zap is not None:
            poller.register(zap.socket, zmq.POLLIN)
        tick = min(0.1, self.settings.heartbeat_interval / 4)
        timeout_ms = max(1, int(tick * 1000))
        next_tick = self.clock()
        core = self.core
        try:
            while not stop.is_set():
                ready = poller.poll(timeout_ms)
                now = self.clock()
                if ready:
                    wall = self.wall()
                    if zap is not None and any(s is zap.socket for s, _ in ready):
                        zap.handle()  # answers the handshakes waiting now, never blocks
                    for _ in range(RECV_BATCH):
                        # ask before reading: a zmq.Again per wake-up costs more than this
                        if not cast(int, _get(sock, _EVENTS)) & _POLLIN:
                            break
                        try:
                            head = _recv(sock, _NOBLOCK, False)
                        except zmq.Again:  # EVENTS said readable; never trust it blindly
                            break
                        frames = []
                        frame = head
                        while frame.more:  # the rest of a message has arrived with it
                            frame = _recv(sock, 0, False)
                            frames.append(frame)
                        user = cast("str | None", head.get("User-Id")) if zap else None
                        self._send_all(core.on_frames(head.bytes, frames, now, wall, user), now)
                if now >= next_tick:
                    next_tick = now + tick
                    self._send_all(core.on_tick(now, self.wall()), now)
                    if self.on_turn is not None:
                        self.on_turn(core, now)
                if self._backlog:
                    self._flush_backlog(now)
                if self.reload_requested:
                    self._reload(now)
            self._shutdown()
        finally:
            self.close()
        return 0

    def _shutdown(self) -> None:
        now = self.clock()
        held = self.core.queued() + sum(1 for w in self.core.workers.values() if w.request)
        log.info("broker stopping: answering %d held requests with shutting_down", held)
        notifier().stopping(f"answering {held} held requests with shutting_down")
        self._send_all(self.core.shutdown(now), now)
        self.socket.setsockopt(zmq.LINGER, SHUTDOWN_LINGER_MS)

    def _send_all(self, sends: list[Send], now: float) -> None:
        backlog = self._backlog
        for identity, frames in sends:
            if identity in backlog:  # keep per-peer order behind what is already waiting
                self._hold(identity, frames, now)
            else:
                self._send(identity, frames, now)

    def _send(self, identity: bytes, frames: list[Frame], now: float) -> bool:
        """Send without blocking; False when the message went to the backlog."""
        sock = self.socket
        try:
            _send(sock, identity, _SNDMORE_NOBLOCK, True)
        except zmq.Again:
            self.core.counters["would_block"] += 1
            self._hold(identity, frames, now)
            return False
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self._send_all(self.core.on_unreachable(identity, frames, now), now)
            return True
        # After the first frame the pipe has accepted the message: the rest never fails.
        # Small bytes frames are copied (cheaper than a zero-copy Frame); received Frames,
        # the big payloads among them, are passed on without copying their data.
        for frame in frames[:-1]:
            _send(sock, frame, _SNDMORE, True)
        _send(sock, frames[-1], 0, True)
        return True

    def _hold(self, identity: bytes, frames: list[Frame], now: float) -> None:
        queue = self._backlog.setdefault(identity, deque())
        if len(queue) < BACKLOG_LIMIT:
            queue.append(frames)
            return
        log.warning("peer %s is not reading; its backlog is full", identity.hex())
        del self._backlog[identity]
        self._send_all(self.core.on_unreachable(identity, frames, now), now)

    def _flush_backlog(self, now: float) -> None:
        for identity in list(self._backlog):
            queue = self._backlog.pop(identity)
            while queue:
                frames = queue.popleft()
                if not self._send(identity, frames, now):
                    # _send re-created the backlog entry with this message at its end;
                    # put the rest behind it in order.
                    self._backlog[identity].extend(queue)
                    break

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
        if not self.socket.closed:
            self.socket.close()
        if self.zap is not None:
            self.zap.close()
        if self._own_context and not self.context.closed:
            self.context.term()


def run_broker(settings: BrokerSettings, stop: threading.Event) -> int:
    """The `storymesh broker` daemon: bind, serve until `stop`, exit code.

    With `metrics_bind` it also serves Prometheus metrics; under systemd it says READY once
    bound and feeds the watchdog from the loop (storymesh.ops)."""
    server = BrokerServer(settings)
    try:  # SIGHUP re-reads the allow-list and roles; the handler only sets a flag
        signal.signal(signal.SIGHUP, lambda signum, frame: server.request_reload())
    except ValueError:
        pass  # not the main thread (an embedded broker): reload through request_reload()
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
