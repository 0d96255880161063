"""FairQueue on its own (round-robin lanes, front re-insertion, sweeps, a model check with
hypothesis) and inside BrokerCore: a flooding client cannot starve another, each client's
lane is bounded by `client_queue_limit` (`busy`), and a lost request still goes first.
"""

from __future__ import annotations

import functools
from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storymesh.core import envelope, mdp
from storymesh.core.fairqueue import FairQueue
from tests.unit.test_broker_core import Mesh


def drain(q: FairQueue[Any]) -> list[Any]:
    out = []
    while q:
        out.append(q.popleft())
    return out


# --- the queue ------------------------------------------------------------------------------

def test_lanes_are_served_round_robin_each_in_fifo_order() -> None:
    # Given client a with five requests queued before b and c queue one or two each
    q: FairQueue[str] = FairQueue()
    for i in range(5):
        q.append("a", f"a{i}")
    q.append("b", "b0")
    q.append("c", "c0")
    q.append("b", "b1")
    # Then each client gets one turn in arrival order of its lane, then a again
    assert len(q) == 8
    assert q.lanes == 3
    assert q.lane_len("a") == 5
    assert drain(q) == ["a0", "b0", "c0", "a1", "b1", "a2", "a3", "a4"]
    assert len(q) == 0
    assert q.lanes == 0
    assert not q


def test_appendleft_puts_an_item_at_the_very_front() -> None:
    # Given three lanes, the rotation at b
    q: FairQueue[str] = FairQueue()
    for key in "abc":
        q.append(key, f"{key}0")
        q.append(key, f"{key}1")
    assert q.popleft() == "a0"
    # When c's lost request comes back to the front
    q.appendleft("c", "c-lost")
    q.appendleft("z", "z-lost")  # a lane that had nothing queued
    # Then the re-inserted items come first (last in, first out); a served lane goes to the
    # back of the rotation as always
    assert drain(q) == ["z-lost", "c-lost", "b0", "a1", "c0", "b1", "c1"]


def test_remove_where_keeps_order_and_the_rotation() -> None:
    q: FairQueue[int] = FairQueue()
    for i in range(9):
        q.append(i % 3, i)
    removed = q.remove_where(lambda v: v % 2 == 0)
    assert sorted(removed) == [0, 2, 4, 6, 8]
    assert len(q) == 4
    assert sorted(q) == [1, 3, 5, 7]
    assert drain(q) == [3, 1, 5, 7]  # lane 0 holds 3, lane 1 holds 1 and 7, lane 2 holds 5


def test_popleft_on_an_empty_queue_raises_index_error() -> None:
    with pytest.raises(IndexError):
        FairQueue[int]().popleft()


OPS = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(0, 4)),
    st.tuples(st.just("appendleft"), st.integers(0, 4)),
    st.tuples(st.just("pop"), st.just(0)),
    st.tuples(st.just("sweep"), st.integers(0, 6)),
), max_size=120)


class Model:
    """The obviously-correct reference: a list of lanes in rotation order."""

    def __init__(self) -> None:
        self.lanes: list[tuple[int, deque[int]]] = []

    def _lane(self, key: int) -> deque[int] | None:
        return next((lane for k, lane in self.lanes if k == key), None)

    def append(self, key: int, item: int) -> None:
        lane = self._lane(key)
        if lane is None:
            self.lanes.append((key, lane := deque()))
        lane.append(item)

    def appendleft(self, key: int, item: int) -> None:
        lane = self._lane(key) or deque()
        self.lanes = [(key, lane)] + [(k, v) for k, v in self.lanes if k != key]
        lane.appendleft(item)

    def pop(self) -> int:
        key, lane = self.lanes.pop(0)
        item = lane.popleft()
        if lane:
            self.lanes.append((key, lane))
        return item

    def sweep(self, mod: int) -> list[int]:
        removed = [v for _, lane in self.lanes for v in lane if v % 7 == mod]
        self.lanes = [(k, deque(v for v in lane if v % 7 != mod)) for k, lane in self.lanes]
        self.lanes = [(k, lane) for k, lane in self.lanes if lane]
        return removed


def has_remainder(mod: int, value: int) -> bool:
    return value % 7 == mod


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_the_fair_queue_behaves_like_its_reference_model(ops: list[tuple[str, int]]) -> None:
    q: FairQueue[int] = FairQueue()
    model = Model()
    for n, (op, arg) in enumerate(ops):
        if op == "append":
            q.append(arg, n)
            model.append(arg, n)
        elif op == "appendleft":
            q.appendleft(arg, n)
            model.appendleft(arg, n)
        elif op == "pop" and model.lanes:
            assert q.popleft() == model.pop()
        elif op == "sweep":
            removed = q.remove_where(functools.partial(has_remainder, arg))
            assert sorted(removed) == sorted(model.sweep(arg))
        assert len(q) == sum(len(lane) for _, lane in model.lanes)
        assert q.lanes == len(model.lanes)
        assert sorted(q) == sorted(v for _, lane in model.lanes for v in lane)


# --- inside the broker core ----------------------------------------------------------------

def served_clients(sends: list[Any]) -> list[bytes]:
    """The client address of every REQUEST handed to a worker in `sends`."""
    out = []
    for _, frames in sends:
        if frames[0] != mdp.W02:
            continue  # a reply to a client
        msg = mdp.parse_to_worker(frames)
        if isinstance(msg, mdp.WorkerRequest):
            out.append(msg.client)
    return out


def test_a_flooding_client_does_not_starve_another() -> None:
    # Given one busy worker and a client that queued 100 requests
    m = Mesh()
    m.ready(b"W1")
    for i in range(101):
        m.request(b"flood", rid=f"f{i}")
    # When a second client asks once
    m.request(b"polite", rid="p0")
    # Then its request is the second to be served, not the 101st
    order: list[bytes] = []
    for _ in range(3):
        sends = m.reply(b"W1", order[-1] if order else b"flood",
                        tuple(envelope.error_body("x", "internal", "x")))
        order += served_clients(sends)
    assert order == [b"flood", b"polite", b"flood"]
    snap = m.snapshot()["services"]["echo"]
    assert snap["queue"] == 98
    assert snap["clients"] == 1


def test_each_client_lane_is_bounded_by_client_queue_limit() -> None:
    # Given a service with no free worker and client_queue_limit 3
    m = Mesh(client_queue_limit=3)
    m.ready(b"W1")
    m.request(b"c1", rid="held")  # dispatched at once
    for i in range(3):
        assert m.request(b"c1", rid=f"q{i}") == []
    # When the same client queues a fourth
    sends = m.request(b"c1", rid="q3")
    # Then it is answered busy with a retry hint, and another client can still queue
    (cid, frames), = sends
    env = envelope.unpack(mdp.parse_to_client(frames).body)
    assert cid == b"c1"
    assert env.payload["error"]["code"] == "busy"
    assert env.payload["error"]["retry_after"] > 0
    assert "already has 3" in env.payload["error"]["message"]
    assert m.request(b"c2", rid="other") == []
    assert m.core.counters["busy"] == 1
    assert len(m.core.services[b"echo"].queue) == 4


def test_a_request_lost_with_its_worker_goes_before_every_lane() -> None:
    # Given two workers busy with a's and b's requests and c, d waiting in the queue
    m = Mesh()
    m.ready(b"W1")
    m.ready(b"W2")
    m.request(b"a", rid="a0")
    m.request(b"b", rid="b0")
    m.request(b"c", rid="c0")
    m.request(b"d", rid="d0")
    # When W1 (holding a's request) disconnects
    m.send(b"W1", mdp.encode(mdp.Disconnect()))
    # And W2 finishes b's request
    sends = m.reply(b"W2", b"b", tuple(envelope.pack(envelope.make_header("b0"), {})))
    # Then W2's next request is a's lost one, ahead of c and d
    assert served_clients(sends) == [b"a"]
