"""The reply cache: the FINAL bodies of the last finished requests, so a retried id is
answered again without running the handler (agents are idempotent per request id). Pure."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from storymesh.core.mdp import Frame
from storymesh.runtime.agent import Request

REPLY_CACHE_ENTRIES = 256
REPLY_CACHE_BYTES = 256 * 1024 * 1024


def body_size(body: Sequence[Frame]) -> int:
    return sum(memoryview(frame).nbytes for frame in body)


def cache_key(request: Request) -> str:
    """The reply-cache key: the id within its principal's, so a caller replaying someone
    else's request id (keys on) never gets their cached reply."""
    return request.id if request.principal is None else f"{request.principal}\x00{request.id}"


class ReplyCache:
    """The FINAL bodies of the last finished request ids, bounded by count and bytes.

    Thread-safe: the socket thread fills and reads it, handler threads read it too.
    """

    def __init__(self, max_entries: int = REPLY_CACHE_ENTRIES,
                 max_bytes: int = REPLY_CACHE_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[list[Frame], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, rid: str) -> list[Frame] | None:
        with self._lock:
            item = self._items.get(rid)
            if item is None:
                return None
            self._items.move_to_end(rid)
            return list(item[0])

    def put(self, rid: str, body: Sequence[Frame]) -> None:
        size = body_size(body)
        if size > self.max_bytes:
            return  # one huge reply must not flush everything else
        with self._lock:
            old = self._items.pop(rid, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[rid] = (list(body), size)
            self._bytes += size
            while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, rid: object) -> bool:
        return rid in self._items
