"""The optional compiled socket helper for the broker's hot path, and the way to find it.

`storymesh.broker._wire` (C, built only where a compiler was present) receives or sends a
whole multipart message per call on the libzmq socket pyzmq already opened, instead of one
pyzmq call per frame (3,000-6,800 instructions each; docs/performance.md). It resolves
libzmq's functions from the very copy pyzmq loaded, found in /proc/self/maps, never loading
another. When anything is missing (no build, not Linux, several libzmq copies mapped, an old
libzmq) `load()` returns None and the broker uses its pure-Python path; the setting
`native_wire = false` (STORYMESH_NATIVE_WIRE=0) chooses that path too.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import zmq

log = logging.getLogger(__name__)

BIG_FRAME = 65536  # frames this size or larger stay libzmq's (zero-copy), smaller are bytes


@dataclass(frozen=True)
class Wire:
    """The helper's two calls, bound to libzmq.

    `recv(handle, keep, big)`: the next message as `(routing_id, frames)` without blocking,
    None when none waits; frames past `keep` are read and dropped; frames of `big` bytes or
    more (after the first three) are zero-copy buffers with `len()` and `.bytes`.
    `send(handle, routing_id, frames)`: 0 when sent, else the errno of the routing id's send
    (zmq.EAGAIN: the pipe is full; zmq.EHOSTUNREACH: no such peer; zmq.ENOTSOCK: handle 0,
    a closed socket), nothing sent then. Every frame is checked before the routing id goes:
    one that is no buffer raises TypeError with nothing sent (never half a message).
    Other libzmq errors raise what pyzmq would (`zmq_error`); recv raises ENOTSOCK for
    handle 0. Received frames stay valid after their socket and context are gone."""

    recv: Callable[[int, int, int], tuple[bytes, list[Any]] | None]
    send: Callable[[int, bytes, Sequence[Any]], int]
    version: tuple[int, int, int]


def zmq_error(err: int) -> zmq.ZMQError:
    """The exception pyzmq raises for errno `err` (its classes by errno, as zmq.error does)."""
    if err == zmq.EAGAIN:
        return zmq.Again(err)
    if err == zmq.ETERM:
        return zmq.ContextTerminated(err)
    if err == errno.EINTR:
        return zmq.InterruptedSystemCall(err)
    return zmq.ZMQError(err)


def libzmq_paths(maps: str = "/proc/self/maps") -> set[str]:
    """The files of the libzmq copies mapped into this process (empty where there is no
    /proc, as on macOS)."""
    try:
        with open(maps, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return set()
    paths = set()
    for line in lines:
        path = line.split(maxsplit=5)[5:]
        if path and "libzmq" in os.path.basename(path[0]) and ".so" in path[0]:
            paths.add(path[0].strip())
    return paths


def load() -> Wire | None:
    """The helper bound to pyzmq's libzmq, or None (the pure-Python path) when it cannot be
    used here."""
    try:
        from storymesh.broker import _wire  # type: ignore[attr-defined]
    except ImportError:
        return None  # not built: no compiler where it was installed
    if not _wire.is_bound():
        paths = libzmq_paths()
        if len(paths) != 1:  # none found, or two copies: which one pyzmq uses is unknown
            log.debug("native wire off: libzmq mapped from %s", sorted(paths) or "nowhere")
            return None
        try:  # the one mapped copy must also be pyzmq's version
            _wire.bind(paths.pop(), zmq_error, zmq.zmq_version_info())
        except ImportError as exc:
            log.debug("native wire off: %s", exc)
            return None
    major, minor, patch = zmq.zmq_version_info()
    return Wire(_wire.recv, _wire.send, (major, minor, patch))
