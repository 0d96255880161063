"""The broker daemon's socket side: one ROUTER, a poll loop, and nothing else.

It owns the socket, reads the clock once per turn, feeds `BrokerCore` and sends what the
core returns. Socket work is batched (drain everything readable, then send), sends never
block: ROUTER_MANDATORY makes a send to a vanished peer fail at once (EHOSTUNREACH, and the
core re-queues what that worker held), and a send that would block at a full pipe goes to
a small per-peer backlog that is retried every turn (counted; a backlog that overflows is
logged and, for a worker, treated as a dead worker). High-water marks and the per-frame
size limit (ZMQ_MAXMSGSIZE) are set explicitly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import zmq

from storymesh.broker.core import BrokerCore, Send
from storymesh.mdp import Frame
from storymesh.ops.sdnotify import notifier
from storymesh.settings import Settings

log = logging.getLogger(__name__)

RECV_BATCH = 256          # messages drained per turn before the clock is read again
BACKLOG_LIMIT = 1000      # messages held for one peer whose pipe is full
SHUTDOWN_LINGER_MS = 1000  # time given to flush `shutting_down` replies on stop


class BrokerServer:
    """Binds `settings.bind` and runs the broker loop until `stop` is set."""

    def __init__(self, settings: Settings, *, context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.wall = wall
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.core = BrokerCore(settings, clock())
        self.socket = self._make_socket()
        self.endpoint = self._bind(settings.bind)
        self.stop_event = threading.Event()
        self._backlog: dict[bytes, deque[list[Frame]]] = {}
        self._thread: threading.Thread | None = None
        self.on_turn: Callable[[BrokerCore, float], None] | None = None  # hook for metrics

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
        log.info("broker listening on %s", bound)
        return bound

    # --- the loop ---------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> int:
        """Serve until `stop` (or `self.stop_event`) is set; answer what is held, exit 0."""
        stop = stop or self.stop_event
        sock = self.socket
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
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
                    for _ in range(RECV_BATCH):
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        sender = frames[0].bytes
                        self._send_all(core.on_frames(sender, frames[1:], now, wall), now)
                if now >= next_tick:
                    next_tick = now + tick
                    self._send_all(core.on_tick(now, self.wall()), now)
                    if self.on_turn is not None:
                        self.on_turn(core, now)
                if self._backlog:
                    self._flush_backlog(now)
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
        try:
            self.socket.send(identity, zmq.SNDMORE | zmq.NOBLOCK)
        except zmq.Again:
            self.core.counters["would_block"] += 1
            self._hold(identity, frames, now)
            return False
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self._send_all(self.core.on_unreachable(identity, frames, now), now)
            return True
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            # After the first frame the pipe has accepted the message: the rest never fails.
            self.socket.send(frame, zmq.SNDMORE if i < last else 0, copy=False)
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
        if self._own_context:
            self.context.term()


def run_broker(settings: Settings, stop: threading.Event) -> int:
    """The `storymesh broker` daemon: bind, serve until `stop`, exit code.

    With `metrics_bind` it also serves Prometheus metrics; under systemd it says READY once
    bound and feeds the watchdog from the loop (storymesh.ops)."""
    from storymesh.ops.metrics import BrokerMetrics

    server = BrokerServer(settings)
    metrics = BrokerMetrics() if settings.metrics_bind else None
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
