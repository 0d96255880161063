"""The pure Majordomo codec: MDP/0.1, MDP/0.2 and the empty-frame 0.2 dialect.

No zmq here. Frames in, frozen dataclasses out, and `encode()` back. A frame is `bytes`
or any object with the buffer protocol (a zero-copy `zmq.Frame`); body frames are never
read or copied, only the protocol frames are.

Frames are written as in ../shared/MDP.md, with the routing id already removed:

    client -> broker  0.2  [MDPC02 | 0x01 | service | body...]
                      0.1  ["" | MDPC01 | service | body...]
                      0.2e ["" | MDPC02 | 0x02 | service | body...]
    broker -> client  0.2  [MDPC02 | 0x02 PARTIAL / 0x03 FINAL | service | body...]
                      0.1  ["" | MDPC01 | service | body...]            (one REPLY)
                      0.2e ["" | MDPC02 | 0x03 PARTIAL / 0x04 FINAL | body...]
    worker <-> broker 0.2  [MDPW02 | cmd | ...]; 0.1 and 0.2e: ["" | MDPW0x | cmd | ...]

The dialect is told by the leading empty frame and the header together; only then does a
command byte mean anything (0x04 is FINAL in 0.2 but HEARTBEAT in 0.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple, TypeAlias

from storymesh.errors import LocalProtocolError, RemoteProtocolError

Frame: TypeAlias = Any  # bytes, or a buffer object such as a zero-copy zmq.Frame
Body: TypeAlias = tuple[Frame, ...]

C01 = b"MDPC01"
C02 = b"MDPC02"
W01 = b"MDPW01"
W02 = b"MDPW02"
EMPTY = b""


class Dialect(Enum):
    """Which MDP framing a peer speaks; every reply uses the peer's own dialect."""

    V01 = "0.1"
    V02 = "0.2"
    V02E = "0.2e"  # 0.2 with a leading "" and worker-style client numbering

    @property
    def leading_empty(self) -> bool:
        return self is not Dialect.V02


# Worker command bytes per dialect (0.2e uses 0.2's worker numbering).
_W02 = {"ready": b"\x01", "request": b"\x02", "partial": b"\x03", "final": b"\x04",
        "heartbeat": b"\x05", "disconnect": b"\x06"}
_W01 = {"ready": b"\x01", "request": b"\x02", "final": b"\x03",
        "heartbeat": b"\x04", "disconnect": b"\x05"}
_W02_BY_BYTE = {v: k for k, v in _W02.items()}
_W01_BY_BYTE = {v: k for k, v in _W01.items()}
# Client command bytes: strict 0.2 vs the 0.2e dialect.
_C02 = {"request": b"\x01", "partial": b"\x02", "final": b"\x03"}
_C02E = {"request": b"\x02", "partial": b"\x03", "final": b"\x04"}


# --- messages -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ClientRequest:
    """A client's REQUEST for `service` (client -> broker)."""

    service: bytes
    body: Body
    dialect: Dialect = Dialect.V02


@dataclass(frozen=True, slots=True)
class ClientReply:
    """A PARTIAL or FINAL (0.1: the one REPLY) for a client (broker -> client)."""

    service: bytes
    body: Body
    final: bool = True
    dialect: Dialect = Dialect.V02


@dataclass(frozen=True, slots=True)
class Ready:
    """A worker registers for `service`; `meta` is storymesh's optional msgpack frame."""

    service: bytes
    meta: bytes | None = None
    dialect: Dialect = Dialect.V02


@dataclass(frozen=True, slots=True)
class WorkerRequest:
    """A request handed to a worker (broker -> worker); `client` is the return address."""

    client: bytes
    body: Body
    dialect: Dialect = Dialect.V02


@dataclass(frozen=True, slots=True)
class WorkerReply:
    """A worker's PARTIAL or FINAL (0.1: REPLY, always final) for `client`."""

    client: bytes
    body: Body
    final: bool = True
    dialect: Dialect = Dialect.V02


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Liveness, both ways between broker and worker."""

    dialect: Dialect = Dialect.V02


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The end of a worker connection, either way."""

    dialect: Dialect = Dialect.V02


FromWorker: TypeAlias = Ready | WorkerReply | Heartbeat | Disconnect
ToWorker: TypeAlias = WorkerRequest | Heartbeat | Disconnect
Message: TypeAlias = ClientRequest | ClientReply | FromWorker | WorkerRequest


class _Head(NamedTuple):
    """The dialect, the header, and the frames after it (a tuple: this is the hot path)."""

    dialect: Dialect
    header: bytes
    rest: Sequence[Frame]


def as_bytes(frame: Frame) -> bytes:
    """The bytes of one protocol frame (cheap for `bytes`, one copy for a zmq.Frame)."""
    return frame if type(frame) is bytes else bytes(frame)


def _head(frames: Sequence[Frame]) -> _Head:
    """Split off the optional leading empty frame and the header; tell the dialect."""
    if not frames:
        raise RemoteProtocolError("empty message")
    first = as_bytes(frames[0])
    if first == EMPTY:
        if len(frames) < 2:
            raise RemoteProtocolError("only an empty frame")
        header = as_bytes(frames[1])
        if header in (C01, W01):
            return _Head(Dialect.V01, header, frames[2:])
        if header in (C02, W02):
            return _Head(Dialect.V02E, header, frames[2:])
        raise RemoteProtocolError(f"unknown protocol header {header[:16]!r}")
    if first in (C02, W02):
        return _Head(Dialect.V02, first, frames[1:])
    if first in (C01, W01):
        raise RemoteProtocolError("MDP/0.1 header without its leading empty frame")
    raise RemoteProtocolError(f"unknown protocol header {first[:16]!r}")


def _service(frame: Frame) -> bytes:
    name = as_bytes(frame)
    if not name:
        raise RemoteProtocolError("empty service name")
    return name


# --- parsing --------------------------------------------------------------------------

def parse(frames: Sequence[Frame]) -> ClientRequest | FromWorker:
    """Parse what a broker receives (routing id removed): a client request or a worker command."""
    head = _head(frames)
    if head.header in (C01, C02):
        return _client_request(head)
    return _from_worker(head)


def _client_request(head: _Head) -> ClientRequest:
    rest = head.rest
    if head.dialect is Dialect.V01:
        if len(rest) < 1:
            raise RemoteProtocolError("0.1 client request without a service frame")
        return ClientRequest(_service(rest[0]), tuple(rest[1:]), Dialect.V01)
    if len(rest) < 2:
        raise RemoteProtocolError("0.2 client request without command and service frames")
    cmd = as_bytes(rest[0])
    expected = _C02E["request"] if head.dialect is Dialect.V02E else _C02["request"]
    if cmd != expected:
        raise RemoteProtocolError(f"client sent command {cmd[:4]!r}; only REQUEST is valid")
    return ClientRequest(_service(rest[1]), tuple(rest[2:]), head.dialect)


def _worker_command(head: _Head) -> str:
    if not head.rest:
        raise RemoteProtocolError("worker message without a command frame")
    cmd = as_bytes(head.rest[0])
    table = _W01_BY_BYTE if head.dialect is Dialect.V01 else _W02_BY_BYTE
    name = table.get(cmd)
    if name is None:
        raise RemoteProtocolError(f"unknown worker command {cmd[:4]!r} ({head.dialect.value})")
    return name


def _addressed(rest: Sequence[Frame], what: str) -> tuple[bytes, Body]:
    """Split `[client | "" | body...]`."""
    if len(rest) < 2:
        raise RemoteProtocolError(f"{what} without client address and empty delimiter")
    if as_bytes(rest[1]) != EMPTY:
        raise RemoteProtocolError(f"{what} without the empty delimiter after the address")
    client = as_bytes(rest[0])
    if not client:
        raise RemoteProtocolError(f"{what} with an empty client address")
    return client, tuple(rest[2:])


def _no_args(name: str, args: Sequence[Frame]) -> None:
    """HEARTBEAT and DISCONNECT are exactly header + command: frames after them mean the
    peer framed something else (a 0.2 FINAL 0x04 under MDPW01 would read as HEARTBEAT)."""
    if args and name in ("heartbeat", "disconnect"):
        raise RemoteProtocolError(f"{name.upper()} with {len(args)} unexpected frame(s)")


def _from_worker(head: _Head) -> FromWorker:
    name = _worker_command(head)
    args = head.rest[1:]
    d = head.dialect
    if name == "ready":
        if not 1 <= len(args) <= 2:
            raise RemoteProtocolError("READY needs a service frame and at most one metadata frame")
        meta = as_bytes(args[1]) if len(args) == 2 else None
        return Ready(_service(args[0]), meta, d)
    if name in ("partial", "final"):
        client, body = _addressed(args, name.upper())
        return WorkerReply(client, body, name == "final", d)
    _no_args(name, args)
    if name == "heartbeat":
        return Heartbeat(d)
    if name == "disconnect":
        return Disconnect(d)
    raise RemoteProtocolError(f"worker sent {name.upper()}, which only a broker sends")


def parse_to_worker(frames: Sequence[Frame]) -> ToWorker:
    """Parse what a worker receives from the broker."""
    head = _head(frames)
    if head.header not in (W01, W02):
        raise RemoteProtocolError("worker received a client-protocol message")
    name = _worker_command(head)
    if name == "request":
        client, body = _addressed(head.rest[1:], "REQUEST")
        return WorkerRequest(client, body, head.dialect)
    _no_args(name, head.rest[1:])
    if name == "heartbeat":
        return Heartbeat(head.dialect)
    if name == "disconnect":
        return Disconnect(head.dialect)
    raise RemoteProtocolError(f"worker received {name.upper()}, which only a worker sends")


def parse_to_client(frames: Sequence[Frame]) -> ClientReply:
    """Parse what a client receives from the broker."""
    head = _head(frames)
    rest = head.rest
    if head.header not in (C01, C02):
        raise RemoteProtocolError("client received a worker-protocol message")
    if head.dialect is Dialect.V01:
        if not rest:
            raise RemoteProtocolError("0.1 reply without a service frame")
        return ClientReply(_service(rest[0]), tuple(rest[1:]), True, Dialect.V01)
    if not rest:
        raise RemoteProtocolError("0.2 reply without a command frame")
    cmd = as_bytes(rest[0])
    if head.dialect is Dialect.V02E:
        if cmd not in (_C02E["partial"], _C02E["final"]):
            raise RemoteProtocolError(f"unknown reply command {cmd[:4]!r}")
        return ClientReply(b"", tuple(rest[1:]), cmd == _C02E["final"], Dialect.V02E)
    if cmd not in (_C02["partial"], _C02["final"]):
        raise RemoteProtocolError(f"unknown reply command {cmd[:4]!r}")
    if len(rest) < 2:
        raise RemoteProtocolError("0.2 reply without a service frame")
    return ClientReply(_service(rest[1]), tuple(rest[2:]), cmd == _C02["final"], Dialect.V02)


# --- encoding -------------------------------------------------------------------------

def _prefix(dialect: Dialect, header: bytes) -> list[Frame]:
    return [EMPTY, header] if dialect.leading_empty else [header]


def _worker_header(dialect: Dialect) -> bytes:
    return W01 if dialect is Dialect.V01 else W02


def _wcmd(dialect: Dialect, name: str) -> bytes:
    table = _W01 if dialect is Dialect.V01 else _W02
    if name not in table:
        raise LocalProtocolError(f"{name.upper()} does not exist in MDP {dialect.value}")
    return table[name]


def encode(msg: Message) -> list[Frame]:
    """Frames for one message (without a routing id), in the message's dialect."""
    d = msg.dialect
    if isinstance(msg, ClientRequest):
        if d is Dialect.V01:
            return [EMPTY, C01, msg.service, *msg.body]
        cmd = _C02E["request"] if d is Dialect.V02E else _C02["request"]
        return [*_prefix(d, C02), cmd, msg.service, *msg.body]
    if isinstance(msg, ClientReply):
        if d is Dialect.V01:
            if not msg.final:
                raise LocalProtocolError("MDP/0.1 clients get exactly one REPLY, no PARTIAL")
            return [EMPTY, C01, msg.service, *msg.body]
        if d is Dialect.V02E:
            return [EMPTY, C02, _C02E["final" if msg.final else "partial"], *msg.body]
        return [C02, _C02["final" if msg.final else "partial"], msg.service, *msg.body]
    head = _prefix(d, _worker_header(d))
    if isinstance(msg, Ready):
        extra = [msg.meta] if msg.meta is not None else []
        return [*head, _wcmd(d, "ready"), msg.service, *extra]
    if isinstance(msg, WorkerRequest):
        return [*head, _wcmd(d, "request"), msg.client, EMPTY, *msg.body]
    if isinstance(msg, WorkerReply):
        if d is Dialect.V01 and not msg.final:
            raise LocalProtocolError("MDP/0.1 workers send one REPLY, no PARTIAL")
        return [*head, _wcmd(d, "final" if msg.final else "partial"), msg.client, EMPTY,
                *msg.body]
    if isinstance(msg, Heartbeat):
        return [*head, _wcmd(d, "heartbeat")]
    if isinstance(msg, Disconnect):
        return [*head, _wcmd(d, "disconnect")]
    raise LocalProtocolError(f"cannot encode {type(msg).__name__}")
