"""Raw peers and baseline brokers for `broker_throughput.py`, one subcommand per process.

Everything here is deliberately thin (a raw socket loop, no storymesh runtime), so the
benchmark measures the broker, not the peers. Subcommands:

    echo       --framing F --connect EP --service S   an echo worker (prints "ready")
    crowd      --framing F --connect EP --count N      N idle workers on N sockets (prints "ready N")
    proxy      --front EP --back EP                    zmq.proxy(ROUTER, DEALER): the no-protocol baseline
    router     --bind EP                               a bare ROUTER that reads and drops everything
    majortomo  --bind EP                               majortomo's MDP broker, logging at WARNING
    ours-bare  --bind EP                               our BrokerServer without the CLI around it

Framings (what a worker puts on the wire, see ../../shared/MDP.md):

    ours       MDP/0.2:             [MDPW02 | cmd | ...]
    majortomo  majortomo's 0.2:     ["" | MDPW02 | cmd | ...]
    proxy      none: the worker echoes [client-id | body...] unchanged (DEALER behind a DEALER)
    hello      crowd only: one b"hello" per socket (the bare ROUTER baseline)

Every loop is bounded: peers exit when their parent goes away or after `--max-seconds`.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zmq

W02 = b"MDPW02"
C02 = b"MDPC02"
HEARTBEAT_INTERVAL = 2.5   # seconds; the default of our broker and of majortomo
MAX_SECONDS = 1800.0       # hard bound on every helper's life
MAX_SOCKETS = 4096         # pyzmq's per-context socket limit, raised for the crowd


@dataclass(frozen=True)
class Framing:
    """How one broker's workers and clients frame their messages."""

    name: str
    prefix: tuple[bytes, ...]      # worker frames before the command byte
    ready: bytes | None            # worker READY command byte (None: no registration)
    final: bytes | None
    heartbeat: bytes | None
    disconnect: bytes | None
    request: bytes | None          # broker -> worker REQUEST command byte

    @property
    def cmd_index(self) -> int:
        return len(self.prefix)


FRAMINGS: dict[str, Framing] = {
    "ours": Framing("ours", (W02,), b"\x01", b"\x04", b"\x05", b"\x06", b"\x02"),
    "majortomo": Framing("majortomo", (b"", W02), b"\x01", b"\x04", b"\x05", b"\x06", b"\x02"),
    "proxy": Framing("proxy", (), None, None, None, None, None),
    "hello": Framing("hello", (), None, None, None, None, None),
}


@dataclass(frozen=True)
class ClientFraming:
    """How a client of one broker frames a request and where the body starts in a reply."""

    name: str
    prefix: tuple[bytes, ...]   # frames before the service name (empty: no service frame)
    with_service: bool
    reply_body_index: int       # first body frame of a reply
    final_index: int | None     # where the reply's command byte sits (None: every reply is final)
    final: bytes | None

    def request(self, service: bytes, body: Sequence[Any]) -> list[Any]:
        head: list[Any] = [*self.prefix, service] if self.with_service else [*self.prefix]
        return [*head, *body]

    def is_final(self, frames: Sequence[zmq.Frame]) -> bool:
        if self.final_index is None:
            return True
        return frames[self.final_index].bytes == self.final


CLIENT_FRAMINGS: dict[str, ClientFraming] = {
    # [MDPC02 | 0x01 | service | body...]  ->  [MDPC02 | 0x02/0x03 | service | body...]
    "ours": ClientFraming("ours", (C02, b"\x01"), True, 3, 1, b"\x03"),
    # ["" | MDPC02 | 0x02 | service | body...]  ->  ["" | MDPC02 | 0x03/0x04 | body...]
    "majortomo": ClientFraming("majortomo", (b"", C02, b"\x02"), True, 3, 2, b"\x04"),
    # [body...] -> [body...]: the proxy adds and strips the client's routing id
    "proxy": ClientFraming("proxy", (), False, 0, None, None),
}


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise this process's soft open-file limit towards `wanted`; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class _Life:
    """Bounds a helper's life: its parent must live, and MAX_SECONDS must not pass."""

    def __init__(self, max_seconds: float) -> None:
        self.parent = os.getppid()
        self.end = time.monotonic() + max_seconds

    def over(self, now: float) -> bool:
        return now >= self.end or os.getppid() != self.parent


# --- echo worker ------------------------------------------------------------------------

def _worker_socket(ctx: zmq.Context[zmq.Socket[bytes]], framing: Framing, endpoint: str,
                   service: bytes) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(endpoint)
    if framing.ready is not None:
        sock.send_multipart([*framing.prefix, framing.ready, service])
    return sock


def run_echo(framing: Framing, endpoint: str, service: bytes, max_seconds: float) -> int:
    """Echo every request's body back as FINAL; heartbeat when idle; re-register on DISCONNECT."""
    ctx = zmq.Context()
    sock = _worker_socket(ctx, framing, endpoint, service)
    print("ready", flush=True)
    life = _Life(max_seconds)
    ci = framing.cmd_index
    last_sent = time.monotonic()
    poll_ms = int(HEARTBEAT_INTERVAL * 1000 / 2)
    try:
        while True:
            now = time.monotonic()
            if life.over(now):
                return 0
            if framing.heartbeat is not None and now - last_sent >= HEARTBEAT_INTERVAL:
                sock.send_multipart([*framing.prefix, framing.heartbeat])
                last_sent = now
            if not sock.poll(poll_ms):
                continue
            for _ in range(1000):  # drain what is there, bounded
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                if framing.request is None:  # the proxy: echo [client-id | body...] as is
                    sock.send_multipart(frames, copy=False)
                    continue
                if len(frames) <= ci:
                    continue
                cmd = frames[ci].bytes
                if cmd == framing.request:
                    reply: list[Any] = list(frames)
                    reply[ci] = framing.final
                    sock.send_multipart(reply, copy=False)
                    last_sent = now  # a reply is a sign of life: no heartbeat needed
                elif cmd == framing.disconnect:
                    sock.close()
                    sock = _worker_socket(ctx, framing, endpoint, service)
                    last_sent = time.monotonic()
                    break
    finally:
        sock.close()
        ctx.term()


# --- the crowd: many idle workers -------------------------------------------------------

def run_crowd(framing: Framing, endpoint: str, service: bytes, count: int,
              max_seconds: float) -> int:
    """Open `count` DEALER sockets, register each (or say hello), then keep them alive."""
    limit = raise_fd_limit()
    ctx = zmq.Context()
    ctx.MAX_SOCKETS = MAX_SOCKETS
    socks: list[zmq.Socket[bytes]] = []
    try:
        for _ in range(count):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
            if framing.ready is not None:
                sock.send_multipart([*framing.prefix, framing.ready, service])
            else:
                sock.send(b"hello")
            socks.append(sock)
        print(f"ready {len(socks)} fd-limit {limit}", flush=True)
        life = _Life(max_seconds)
        while not life.over(time.monotonic()):
            time.sleep(HEARTBEAT_INTERVAL * 0.8)
            if framing.heartbeat is None:
                continue
            for sock in socks:  # liveness for brokers that expire silent workers
                sock.send_multipart([*framing.prefix, framing.heartbeat], zmq.NOBLOCK)
                while sock.poll(0):  # drop the broker's heartbeats so nothing piles up
                    sock.recv_multipart(zmq.NOBLOCK)
        return 0
    finally:
        for sock in socks:
            sock.close()
        ctx.term()


# --- baseline brokers -------------------------------------------------------------------

def run_proxy(front: str, back: str) -> int:
    """The no-protocol baseline: libzmq's C proxy between a ROUTER and a DEALER."""
    ctx = zmq.Context()
    frontend = ctx.socket(zmq.ROUTER)
    backend = ctx.socket(zmq.DEALER)
    for sock in (frontend, backend):
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.RCVHWM, 100_000)
    frontend.bind(front)
    backend.bind(back)
    print("ready", flush=True)
    zmq.proxy(frontend, backend)  # runs until the process is terminated
    return 0


def run_router(bind: str, max_seconds: float) -> int:
    """A bare ROUTER that reads and drops everything: the RSS floor for N connected peers."""
    raise_fd_limit()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(bind)
    print("ready", flush=True)
    life = _Life(max_seconds)
    while not life.over(time.monotonic()):
        if sock.poll(500):
            for _ in range(10_000):
                try:
                    sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
    return 0


def run_ours_bare(bind: str) -> int:
    """Our BrokerServer in a bare interpreter, without the CLI (to tell the CLI's imports apart)."""
    import signal
    import threading

    from storymesh import settings
    from storymesh.broker.server import BrokerServer

    logging.basicConfig(level=logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = BrokerServer(settings.load(env={}, flags={"bind": bind}).broker_section())
    print("ready", flush=True)
    return server.run(stop)


def run_majortomo(bind: str) -> int:
    """majortomo's broker as its own `main()` runs it, but logging at WARNING (not per message)."""
    import signal

    from majortomo.broker import Broker  # needs `six` installed beside it

    logging.basicConfig(level=logging.WARNING)
    raise_fd_limit()
    broker = Broker(bind=bind)
    signal.signal(signal.SIGTERM, lambda *_: broker.stop())  # type: ignore[no-untyped-call]
    print("ready", flush=True)
    broker.run()  # type: ignore[no-untyped-call]
    return 0


# --- entry point ------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    echo = sub.add_parser("echo")
    crowd = sub.add_parser("crowd")
    for p in (echo, crowd):
        p.add_argument("--framing", choices=sorted(FRAMINGS), required=True)
        p.add_argument("--connect", required=True)
        p.add_argument("--service", default="bench.echo")
    crowd.add_argument("--count", type=int, default=1000)
    proxy = sub.add_parser("proxy")
    proxy.add_argument("--front", required=True)
    proxy.add_argument("--back", required=True)
    for name in ("router", "majortomo", "ours-bare"):
        sub.add_parser(name).add_argument("--bind", required=True)
    parser.add_argument("--max-seconds", type=float, default=MAX_SECONDS)
    args = parser.parse_args(argv)
    if args.cmd == "echo":
        return run_echo(FRAMINGS[args.framing], args.connect, args.service.encode(), args.max_seconds)
    if args.cmd == "crowd":
        return run_crowd(FRAMINGS[args.framing], args.connect, args.service.encode(), args.count,
                         args.max_seconds)
    if args.cmd == "proxy":
        return run_proxy(args.front, args.back)
    if args.cmd == "router":
        return run_router(args.bind, args.max_seconds)
    if args.cmd == "ours-bare":
        return run_ours_bare(args.bind)
    return run_majortomo(args.bind)


if __name__ == "__main__":
    sys.exit(main())
