"""Pure parts of the runtimes: reconnect backoff, link and request timers, the slot table,
reply cache, decoding.

No sockets and no sleeping: time is an argument.
"""

from __future__ import annotations

import msgpack
import pytest

from storymesh.core import envelope
from storymesh.errors import LocalProtocolError
from storymesh.runtime.agent import AgentInfo, Request
from storymesh.runtime.cache import ReplyCache
from storymesh.runtime.requests import Rejected, decode_request, ready_meta
from storymesh.runtime.slots import TRANSITIONS, SlotEvent, SlotState, transition
from storymesh.runtime.timers import Backoff, Due, LinkTimer, RequestTimer

NOW = 1_700_000_000.0  # a wall-clock "now" for deadline checks


def _error(rejected: Request | Rejected) -> tuple[str, str]:
    assert isinstance(rejected, Rejected)
    env = envelope.unpack(rejected.body)
    assert env.ok is False
    return env.id, env.payload["error"]["code"]


# --- Backoff ----------------------------------------------------------------------------

def test_backoff_doubles_from_initial_up_to_the_cap_without_jitter() -> None:
    # Given a backoff of 0.1 s doubling up to 1 s, with the jitter switched off
    backoff = Backoff(0.1, 1.0, jitter=0.0)
    # When it is asked for six delays in a row
    delays = [backoff.next() for _ in range(6)]
    # Then they double and stop at the cap
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_backoff_reset_starts_again_from_the_initial_delay() -> None:
    # Given a backoff that has grown
    backoff = Backoff(0.25, 5.0, jitter=0.0)
    for _ in range(4):
        backoff.next()
    # When the broker answers and the backoff is reset
    backoff.reset()
    # Then the next delay is the initial one again
    assert backoff.next() == pytest.approx(0.25)


@pytest.mark.parametrize(("rng_value", "expected"), [(0.0, 0.08), (0.5, 0.1), (1.0, 0.12)])
def test_backoff_jitter_spreads_the_delay_both_ways(rng_value: float, expected: float) -> None:
    # Given a 20 % jitter and a fixed random source
    backoff = Backoff(0.1, 5.0, jitter=0.2, rng=lambda: rng_value)
    # When / Then the first delay is spread around the initial one
    assert backoff.next() == pytest.approx(expected)


def test_backoff_jitter_never_exceeds_the_cap() -> None:
    # Given a backoff already at its cap and a random source at its top
    backoff = Backoff(1.0, 2.0, jitter=0.5, rng=lambda: 1.0)
    # When / Then every delay stays at or below the cap
    assert all(backoff.next() <= 2.0 for _ in range(10))


# --- LinkTimer --------------------------------------------------------------------------

def test_link_timer_heartbeat_is_due_one_interval_after_the_last_send() -> None:
    # Given a fresh link at t=10 with a 0.5 s interval
    timer = LinkTimer(0.5, 4)
    timer.opened(10.0)
    # When / Then a heartbeat is due only once an interval passed since anything was sent
    assert not timer.heartbeat_due(10.4)
    assert timer.heartbeat_due(10.5)
    timer.sent(10.5)
    assert not timer.heartbeat_due(10.9)


def test_link_timer_expires_after_liveness_intervals_of_silence_and_hearing_resets() -> None:
    # Given a link opened at t=0 with interval 0.5 and liveness 4 (2 s)
    timer = LinkTimer(0.5, 4)
    timer.opened(0.0)
    # When the broker is heard at t=1.9
    assert not timer.expired(1.9)
    timer.heard(1.9)
    # Then the link lives until 2 s after that
    assert not timer.expired(3.8)
    assert timer.expired(3.9)
    assert timer.next_due() == pytest.approx(min(0.0 + 0.5, 1.9 + 2.0))


# --- ReplyCache -------------------------------------------------------------------------

def test_reply_cache_keeps_the_most_recent_ids_by_count() -> None:
    # Given a cache of three entries
    cache = ReplyCache(max_entries=3, max_bytes=10_000)
    for rid in ("a", "b", "c"):
        cache.put(rid, [rid.encode()])
    # When "a" is read (so it is recent) and a fourth id arrives
    assert cache.get("a") == [b"a"]
    cache.put("d", [b"d"])
    # Then the least recently used one ("b") is gone
    assert "b" not in cache
    assert [rid in cache for rid in ("a", "c", "d")] == [True, True, True]


def test_reply_cache_is_bounded_by_bytes_and_skips_a_reply_bigger_than_it() -> None:
    # Given a cache of 100 bytes
    cache = ReplyCache(max_entries=100, max_bytes=100)
    cache.put("a", [b"x" * 60])
    # When a second 60-byte reply arrives, and then a 200-byte one
    cache.put("b", [b"y" * 60])
    cache.put("huge", [b"z" * 200])
    # Then the oldest was evicted to fit, and the huge one was never stored
    assert "a" not in cache
    assert "b" in cache
    assert "huge" not in cache
    assert len(cache) == 1


def test_reply_cache_put_of_an_existing_id_replaces_it() -> None:
    # Given a cached id
    cache = ReplyCache(max_entries=2, max_bytes=100)
    cache.put("a", [b"old"])
    # When the same id is stored again
    cache.put("a", [b"new", b"!"])
    # Then the new body is returned and only one entry exists
    assert cache.get("a") == [b"new", b"!"]
    assert len(cache) == 1


# --- decode_request ---------------------------------------------------------------------

def test_decode_request_builds_the_handler_request() -> None:
    # Given a well-formed body with a future deadline, a correlation id and binary data
    header = envelope.make_header("r1", corr="story-1", deadline=NOW + 5, principal="alice")
    body = envelope.pack(header, {"text": "hi", "blob": b"\x00" * 5000})
    # When it is decoded
    req = decode_request(body, NOW)
    # Then the Request carries every field, bytes included
    assert isinstance(req, Request)
    assert (req.id, req.corr, req.deadline, req.principal) == ("r1", "story-1", NOW + 5, "alice")
    assert req.payload == {"text": "hi", "blob": b"\x00" * 5000}


def test_decode_request_rejects_a_past_deadline_as_expired() -> None:
    # Given a body whose deadline passed a second ago
    body = envelope.pack(envelope.make_header("r2", deadline=NOW - 1), {})
    # When / Then it is answered `expired`, echoing the id
    assert _error(decode_request(body, NOW)) == ("r2", "expired")


def test_decode_request_rejects_a_newer_envelope_version() -> None:
    # Given a body with envelope version 2
    header = {"v": 2, "id": "r3"}
    body = [msgpack.packb(header), msgpack.packb({})]
    # When / Then it is answered `unsupported_version`
    assert _error(decode_request(body, NOW)) == ("r3", "unsupported_version")


@pytest.mark.parametrize(("body", "rid"), [
    ([], "unknown"),
    ([b"\xc1garbage"], "unknown"),
    ([msgpack.packb({"v": 1, "id": "r4"})], "r4"),  # no payload frame
    ([msgpack.packb({"v": "x", "id": "r5"}), msgpack.packb({})], "r5"),  # version not int
    ([msgpack.packb({"v": 1, "id": "r6"}), b"\xc1"], "r6"),  # payload not msgpack
    ([msgpack.packb({"v": 1, "id": "r7"}), msgpack.packb([1, 2])], "r7"),  # payload not a map
])
def test_decode_request_answers_bad_bodies_with_bad_request(body: list[bytes], rid: str) -> None:
    # Given a malformed body / When it is decoded / Then bad_request echoes any readable id
    assert _error(decode_request(body, NOW)) == (rid, "bad_request")


def test_ready_meta_says_it_heartbeats_while_busy_and_names_the_backend() -> None:
    # Given what an agent loaded
    info = AgentInfo(backend="transformers", model="tiny", device="cpu", dtype="float32")
    # When the READY metadata frame is built for 3 slots
    meta = msgpack.unpackb(ready_meta(info, 3))
    # Then it holds every announced key
    assert meta["hb_busy"] is True
    assert meta["slots"] == 3
    assert {k: meta[k] for k in ("backend", "model", "device", "dtype")} == {
        "backend": "transformers", "model": "tiny", "device": "cpu", "dtype": "float32"}
    assert isinstance(meta["host"], str)
    assert isinstance(meta["pid"], int)


# --- RequestTimer (the client's attempts) ---------------------------------------------------

def test_request_timer_retries_after_each_silent_attempt_then_is_exhausted() -> None:
    # Given a request of 3 attempts of 0.25 s, sent at t=10
    timer = RequestTimer(0.25, 3)
    timer.sent(10.0)
    # When the clock reaches each attempt's timeout (and just before it)
    steps = [timer.check(t, NOW) for t in (10.24, 10.25)]
    timer.sent(10.25)  # the client resends at once
    steps += [timer.check(t, NOW) for t in (10.49, 10.5)]
    timer.sent(10.5)
    steps += [timer.check(10.75, NOW)]
    # Then it waits, retries twice (3 attempts in all), and gives up at the third timeout
    assert steps == [Due.WAIT, Due.RETRY, Due.WAIT, Due.RETRY, Due.EXHAUSTED]
    assert timer.attempts == 3


def test_request_timer_a_reply_restarts_the_attempt_clock() -> None:
    # Given a request sent at t=0 with a 1 s timeout
    timer = RequestTimer(1.0, 2)
    timer.sent(0.0)
    # When a PARTIAL arrives at t=0.5
    timer.heard(0.5)
    # Then the attempt times out only one second after it
    assert (timer.check(1.25, NOW), timer.next_due()) == (Due.WAIT, 1.5)
    assert timer.check(1.5, NOW) is Due.RETRY


def test_request_timer_busy_resends_after_the_hint_within_the_budget() -> None:
    # Given a request of 2 attempts answered `busy`, retry in 0.1 s, at t=5
    timer = RequestTimer(0.3, 2)
    timer.sent(5.0)
    assert timer.retry_busy(0.1, 5.0, NOW) is True
    # Then the resend is due at 5.1, not before, and a second `busy` finds no budget left
    assert timer.next_due() == pytest.approx(5.1)
    assert [timer.check(t, NOW) for t in (5.09, 5.1)] == [Due.WAIT, Due.RESEND]
    timer.sent(5.1)
    assert timer.retry_busy(0.1, 5.2, NOW) is False
    # And a busy without a hint is never retried
    assert RequestTimer(0.3, 3).retry_busy(None, 0.0, NOW) is False


def test_request_timer_stops_at_the_wall_clock_deadline() -> None:
    # Given a request whose deadline is 1 s after NOW (wall clock)
    timer = RequestTimer(0.3, 5, deadline=NOW + 1.0)
    timer.sent(0.0)
    # When a `busy` hint would retry after the deadline / an attempt times out past it
    assert timer.retry_busy(2.0, 0.0, NOW) is False
    assert timer.retry_busy(0.5, 0.0, NOW) is True
    assert timer.check(0.5, NOW) is Due.RESEND
    timer.sent(0.5)
    # Then no further attempt starts once the wall clock is past the deadline
    assert timer.check(0.8, NOW + 1.5) is Due.EXHAUSTED


# --- the slot lifecycle table -------------------------------------------------------------

def test_a_slot_reconnects_after_a_lost_link_and_ends_done_when_stopped() -> None:
    # Given a waiting slot
    state = SlotState.WAITING
    # When it connects, loses its link, connects again, is stopped busy and finishes its job
    for event in (SlotEvent.CONNECT, SlotEvent.LINK_LOST, SlotEvent.CONNECT,
                  SlotEvent.STOP_BUSY, SlotEvent.FINISHED):
        state = transition(state, event)
    # Then it is done
    assert state is SlotState.DONE


@pytest.mark.parametrize("event", [SlotEvent.FINISHED, SlotEvent.GRACE_PASSED,
                                   SlotEvent.LINK_LOST, SlotEvent.CLOSE])
def test_a_draining_slot_never_reconnects(event: SlotEvent) -> None:
    assert transition(SlotState.DRAINING, event) is SlotState.DONE


def test_the_slot_table_keeps_its_invariants() -> None:
    # DONE is terminal, CLOSE ends every state, only a WAITING slot connects
    assert {new for (old, _), new in TRANSITIONS.items() if old is SlotState.DONE} == {
        SlotState.DONE}
    assert all(transition(s, SlotEvent.CLOSE) is SlotState.DONE for s in SlotState)
    assert [old for (old, ev) in TRANSITIONS if ev is SlotEvent.CONNECT] == [SlotState.WAITING]
    # and an event the table does not allow is a runtime bug, not a silent no-op
    with pytest.raises(LocalProtocolError):
        transition(SlotState.DONE, SlotEvent.CONNECT)
    with pytest.raises(LocalProtocolError):
        transition(SlotState.CONNECTED, SlotEvent.FINISHED)  # only a draining slot finishes
