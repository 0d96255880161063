"""Fuzz targets for the MDP codec, the envelope codec and the broker core.

Each target takes raw bytes (what atheris / libFuzzer hands over) and checks properties that
must hold for ANY input, raising AssertionError (or the unexpected exception) when one does
not. The same functions run under hypothesis in tests/unit/test_fuzz.py, in CI, for a
bounded number of examples; `python -m fuzz mdp|envelope|core` runs them under atheris.

Properties:
- mdp: parsing raises nothing but RemoteProtocolError; whatever parses re-encodes to
  frames that parse to the same message, with body frames untouched;
- envelope: `read_header` / `unpack` raise nothing but BodyError (TooLargeError included);
  a body that unpacks re-packs to one that unpacks to the same payload;
- core: a BrokerCore fed any sequence of messages (valid ones, mutated ones, garbage;
  plain or with keys on) never raises, answers only with well-formed MDP, and keeps its
  invariants (a worker is idle iff it sits in its service's idle list, busy iff it holds
  a request; queue lengths and worker counts add up).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import msgpack

from storymesh import settings as settings_mod
from storymesh.core import envelope, mdp
from storymesh.core.broker import BrokerCore
from storymesh.core.policy import KeyRoles, Policy
from storymesh.core.workers import WState
from storymesh.errors import BodyError, RemoteProtocolError
from storymesh.settings import Settings

# Frames the byte decoder can name with one token, so a fuzzer reaches past the header
# checks instead of spending its time guessing "MDPW02".
TOKENS: tuple[bytes, ...] = (
    b"", mdp.C01, mdp.C02, mdp.W01, mdp.W02, b"\x01", b"\x02", b"\x03", b"\x04", b"\x05",
    b"\x06", b"echo", b"mmi.service", b"mmi.storymesh.snapshot", b"mmi.x", b"C1", b"C2",
    b"W1", b"W2", msgpack.packb({"v": 1, "id": "r1"}), msgpack.packb({"text": "hi"}),
    msgpack.packb({"v": 2, "id": "r2"}), msgpack.packb({"v": 1, "id": "r3", "deadline": 1.0}),
    msgpack.packb({"hb_busy": True, "pid": 1}), b"x" * 200, b"echo" * 40,
)


class Reader:
    """Reads a fuzzer's bytes as small numbers and frames (running out yields zeros)."""

    def __init__(self, data: bytes, literal: int = 127) -> None:
        self.data = data
        self.pos = 0
        self.literal = literal  # longest literal frame

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def more(self) -> bool:
        return self.pos < len(self.data)

    def frame(self) -> bytes:
        """A token (high bit set: one of TOKENS) or up to `literal` literal bytes."""
        head = self.byte()
        if head & 0x80:
            return TOKENS[(head & 0x7F) % len(TOKENS)]
        chunk = self.data[self.pos:self.pos + head % (self.literal + 1)]
        self.pos += len(chunk)
        return chunk

    def frames(self, most: int = 10) -> list[bytes]:
        return [self.frame() for _ in range(self.byte() % (most + 1))]


def frames_from_bytes(data: bytes, most: int = 10) -> list[bytes]:
    """One multipart message from fuzzer bytes."""
    return Reader(data).frames(most)


# --- MDP ---------------------------------------------------------------------------------------

def check_mdp(frames: list[bytes]) -> None:
    """The MDP properties for one message, as each party would receive it."""
    for parse in (mdp.parse, mdp.parse_to_worker, mdp.parse_to_client):
        try:
            msg = parse(frames)
        except RemoteProtocolError:
            continue
        again = parse(mdp.encode(msg))
        assert again == msg, (frames, msg, again)
        body = getattr(msg, "body", ())
        assert not body or list(body) == frames[len(frames) - len(body):], "body changed"


def mdp_one_input(data: bytes) -> None:
    check_mdp(frames_from_bytes(data))


# --- envelope ----------------------------------------------------------------------------------

SMALL = envelope.Limits(header_bytes=512, payload_bytes=4096, binary_frames=4, depth=4,
                        str_bytes=256, container_len=16)


def _same(a: Any, b: Any) -> bool:
    # msgpack bytes compare NaN and -0.0 exactly, which == would not
    return bool(msgpack.packb(a, use_bin_type=True) == msgpack.packb(b, use_bin_type=True))


def check_envelope(frames: list[bytes]) -> None:
    """The envelope properties for one body, with the default and with small limits."""
    for limits in (envelope.DEFAULT_LIMITS, SMALL):
        if frames:
            with contextlib.suppress(BodyError):
                envelope.read_header(frames[0], limits)
        try:
            env = envelope.unpack(frames, limits)
        except BodyError:
            continue
        repacked = envelope.pack(env.header, env.payload)
        try:
            again = envelope.unpack(repacked, limits)
        except BodyError as exc:
            # Re-packing moves inline bytes >= INLINE_BYTES_MAX to frames: that may add a
            # binary frame or a level of nesting past a limit, and nothing else may fail.
            allowed = ("binary frames", "nested deeper", "over the limit")
            assert any(w in str(exc) for w in allowed), exc  # noqa: PT017 - a fuzz property
            continue
        assert again.header == env.header
        assert _same(again.payload, env.payload), (env.payload, again.payload)


def envelope_one_input(data: bytes) -> None:
    reader = Reader(data)
    frames = reader.frames(6)
    if reader.byte() & 1:  # a well-formed start, so the payload and frame checks are reached
        frames = [msgpack.packb({"v": 1, "id": "f"}), *frames]
    check_envelope(frames)


# --- the broker core ---------------------------------------------------------------------------

PEERS = (b"C1", b"C2", b"W1", b"W2", b"W3")
WALL = 1e9  # the wall clock runs this far ahead of the core's monotonic clock
USERS = ("alice", "gpu", "story", "ops", None, "nobody")
POLICY = Policy({}, {
    "alice": KeyRoles("alice", frozenset({"client"})),
    "gpu": KeyRoles("gpu", frozenset({"worker"}), ("echo",)),
    "story": KeyRoles("story", frozenset({"client", "worker", "delegate"}), ("story.*",)),
    "ops": KeyRoles("ops", frozenset({"admin"})),
})


@functools.cache
def core_settings() -> Settings:
    """Small limits, so a short input reaches full queues and lost-worker paths."""
    return settings_mod.load("/dev/null", env={}, flags={
        "heartbeat_interval": 1.0, "liveness": 3, "service_wait": 5.0, "busy_timeout": 20.0,
        "queue_limit": 4, "client_queue_limit": 2, "max_frames": 12, "max_attempts": 2})


def _valid(reader: Reader, peer: bytes) -> list[bytes]:
    """A well-formed message of some kind, so the fuzzer drives real conversations."""
    kind = reader.byte() % 7
    dialect = (mdp.Dialect.V02, mdp.Dialect.V01, mdp.Dialect.V02E)[reader.byte() % 3]
    services = (b"echo", b"story.author", b"mmi.service", b"mmi.storymesh.snapshot")
    service = services[reader.byte() % len(services)]
    rid = f"r{reader.byte()}"
    deadline = WALL + reader.byte() / 8 if reader.byte() & 1 else None  # 0-32 s ahead
    header = envelope.make_header(rid, deadline=deadline,
                                  principal="carol" if reader.byte() & 1 else None)
    body = tuple(envelope.pack(header, {"n": reader.byte()}))
    client = PEERS[reader.byte() % 2]
    if kind == 0:
        return mdp.encode(mdp.ClientRequest(service, body, dialect))
    if kind == 1:
        return mdp.encode(mdp.Ready(service if reader.byte() & 1 else b"echo",
                                    msgpack.packb({"hb_busy": True}) if reader.byte() & 1 else None,
                                    dialect))
    if kind == 2:
        final = dialect is mdp.Dialect.V01 or bool(reader.byte() & 1)
        return mdp.encode(mdp.WorkerReply(client, body, final, dialect))
    if kind == 3:
        return mdp.encode(mdp.Heartbeat(dialect))
    if kind == 4:
        return mdp.encode(mdp.Disconnect(dialect))
    if kind == 5:
        return mdp.encode(mdp.ClientRequest(b"echo", (b"foreign",), dialect))
    return mdp.encode(mdp.ClientRequest(b"echo", body, dialect))


def _check_out(sends: list[tuple[bytes, list[Any]]]) -> None:
    for identity, frames in sends:
        assert isinstance(identity, bytes)
        assert identity
        head = mdp.as_bytes(frames[0]) if frames[0] != b"" else mdp.as_bytes(frames[1])
        if head in (mdp.W01, mdp.W02):
            mdp.parse_to_worker(frames)
        else:
            reply = mdp.parse_to_client(frames)
            if reply.service.startswith(b"mmi.") and reply.body and len(reply.body) == 1:
                continue  # a raw MMI code
            if reply.body and reply.body != (b"foreign",):
                try:
                    envelope.read_header(reply.body[0])
                except BodyError:
                    continue  # relayed from a worker as it was: not the broker's to check


def check_invariants(core: BrokerCore, peaks: dict[bytes, int]) -> None:
    """`peaks`: the most workers each service has had (updated here)."""
    counted: dict[bytes, int] = {}
    for identity, worker in core.workers.items():
        assert worker.identity == identity
        idle = worker.service.idle
        assert (worker.state is WState.IDLE) == (identity in idle), worker.state
        assert (worker.state is WState.BUSY) == (worker.request is not None)
        assert worker.state in (WState.IDLE, WState.BUSY)
        counted[worker.service.name] = counted.get(worker.service.name, 0) + 1
    for name, service in core.services.items():
        assert service.workers == counted.get(name, 0), (name, service.workers)
        assert all(w.identity in core.workers for w in service.idle.values())
        peaks[name] = max(peaks.get(name, 0), service.workers)
        queue = service.queue
        # New requests stop at queue_limit; requests lost with their workers come back on
        # top of it (they are never dropped), at most one per worker the service has had.
        assert len(queue) == sum(1 for _ in queue) <= core.settings.queue_limit + peaks[name]
        assert not (queue and service.idle), "a request waits while a worker idles"


def run_core(data: bytes) -> Iterator[BrokerCore]:
    """Drive a BrokerCore with the messages `data` encodes; yields it after each step."""
    reader = Reader(data, literal=12)
    core = BrokerCore(core_settings().broker_section(), 0.0)
    keyed = reader.byte() & 1
    if keyed:
        core.set_policy(POLICY, 0.0)
    now = 0.0
    peaks: dict[bytes, int] = {}
    while reader.more():
        op = reader.byte()
        peer = PEERS[op % len(PEERS)]
        user = USERS[(op >> 3) % len(USERS)] if keyed else None
        action = (op >> 5) % 4
        worker = core.workers.get(peer)
        if action == 0:
            sends = core.on_frames(peer, reader.frames(6), now, now + WALL, user)
        elif action == 3:
            now += reader.byte() / 16
            sends = core.on_tick(now, now + WALL)
        elif action == 2 and reader.byte() & 1:
            sends = core.on_unreachable(peer, _valid(reader, peer), now)
        elif action == 2 and worker is not None and worker.request is not None:
            # the worker answers what it holds, so conversations reach their end
            reply = mdp.WorkerReply(worker.request.client, worker.request.body,
                                    worker.dialect is mdp.Dialect.V01 or bool(reader.byte() & 1),
                                    worker.dialect)
            sends = core.on_frames(peer, mdp.encode(reply), now, now + WALL, user)
        else:
            sends = core.on_frames(peer, _valid(reader, peer), now, now + WALL, user)
        _check_out(sends)
        check_invariants(core, peaks)
        yield core
    _check_out(core.shutdown(now))
    assert core.queued() == 0
    assert not core.workers


def core_one_input(data: bytes) -> None:
    for _ in run_core(data):
        pass


TARGETS = {"mdp": mdp_one_input, "envelope": envelope_one_input, "core": core_one_input}
