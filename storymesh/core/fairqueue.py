"""A per-service request queue that shares the workers fairly between clients.

One FIFO lane per client key, served round-robin: a client with a thousand requests queued
gets one dispatch, then every other client with something queued gets one, and so on. A
client key is the authenticated principal when keys are on, else the client's routing id.

Every operation is O(1) except `remove_where` (the expiry sweep, O(n)). `appendleft` puts
an item at the very front (its lane first in the rotation, the item first in its lane):
that is how a request lost with its worker is re-dispatched before anything else.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Round-robin over per-client FIFO lanes; `len()`, truthiness and iteration as a deque."""

    __slots__ = ("_lanes", "_len")

    def __init__(self) -> None:
        self._lanes: OrderedDict[Hashable, deque[T]] = OrderedDict()
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[T]:
        """Every queued item, lane by lane (not dispatch order; for sweeps and counts)."""
        for lane in self._lanes.values():
            yield from lane

    @property
    def lanes(self) -> int:
        """How many clients have something queued."""
        return len(self._lanes)

    def lane_len(self, key: Hashable) -> int:
        """How many items client `key` has queued."""
        lane = self._lanes.get(key)
        return len(lane) if lane is not None else 0

    def append(self, key: Hashable, item: T) -> None:
        """Queue `item` at the end of client `key`'s lane (a new lane joins the rotation last)."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = deque()
        lane.append(item)
        self._len += 1

    def appendleft(self, key: Hashable, item: T) -> None:
        """Put `item` at the very front: first in its lane, its lane first in the rotation."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = deque()
        lane.appendleft(item)
        self._lanes.move_to_end(key, last=False)
        self._len += 1

    def popleft(self) -> T:
        """The next item in round-robin order; its lane moves to the back of the rotation."""
        if not self._len:
            raise IndexError("pop from an empty FairQueue")
        key, lane = next(iter(self._lanes.items()))
        item = lane.popleft()
        if lane:
            self._lanes.move_to_end(key)
        else:
            del self._lanes[key]
        self._len -= 1
        return item

    def remove_where(self, predicate: Callable[[T], bool]) -> list[T]:
        """Remove and return every item for which `predicate` is true (order kept otherwise)."""
        removed: list[T] = []
        for key in list(self._lanes):
            lane = self._lanes[key]
            kept: deque[T] = deque()
            for item in lane:
                (removed if predicate(item) else kept).append(item)
            if kept:
                self._lanes[key] = kept  # replacing a value keeps its place in the rotation
            else:
                del self._lanes[key]
        self._len -= len(removed)
        return removed
