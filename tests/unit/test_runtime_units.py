"""Pure parts of the worker runtime: reconnect backoff, link timers, reply cache, decoding.

No sockets and no sleeping: time is an argument.
"""

from __future__ import annotations

import msgpack
import pytest

from storymesh.core import envelope
from storymesh.runtime.agent import AgentInfo, Request
from storymesh.runtime.worker import (
    Backoff,
    LinkTimer,
    Rejected,
    ReplyCache,
    decode_request,
    ready_meta,
)

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


@pytest.mark.parametrize("rng_value, expected", [(0.0, 0.08), (0.5, 0.1), (1.0, 0.12)])
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
    assert "a" not in cache and "b" in cache and "huge" not in cache
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


@pytest.mark.parametrize("body, rid", [
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
    assert meta["hb_busy"] is True and meta["slots"] == 3
    assert {k: meta[k] for k in ("backend", "model", "device", "dtype")} == {
        "backend": "transformers", "model": "tiny", "device": "cpu", "dtype": "float32"}
    assert isinstance(meta["host"], str) and isinstance(meta["pid"], int)
