"""Decoding a REQUEST body into the agent's `Request`, or the error FINAL that answers it
instead (bad body, newer envelope version, deadline already passed); and the READY metadata
frame a worker announces itself with. No sockets: bytes in, values out, wall time as an
argument.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from storymesh.core import envelope, schema
from storymesh.core.mdp import Frame
from storymesh.errors import BodyError
from storymesh.runtime.agent import AgentInfo, Request


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
    """A handler Request from a REQUEST body, or the error FINAL that answers it instead.

    `wall` is the wall-clock now (epoch seconds), compared with the header's deadline.
    """
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


def ready_meta(info: AgentInfo, slots: int, metrics: str | None = None) -> bytes:
    """The msgpack READY metadata frame: what the agent loaded, that it beats while busy,
    and where it serves its Prometheus metrics ("host:port", for the monitor) if it does."""
    meta: dict[str, Any] = {"hb_busy": True, **info.as_meta(), "slots": slots,
                            "host": socket.gethostname(), "pid": os.getpid()}
    if metrics:
        meta["metrics"] = metrics
    packed: bytes = msgpack.packb(meta, use_bin_type=True)
    return packed
