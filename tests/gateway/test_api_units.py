"""The gateway's pure parts: the token bucket, the stream gate and the resumable event ids."""

from __future__ import annotations

import asyncio

from storymesh.gateway import feeds
from storymesh.gateway.limits import RateLimiter, StreamGate


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate=5.0, burst=20)
    assert all(limiter.take("alice", 100.0) == 0.0 for _ in range(20))
    wait = limiter.take("alice", 100.0)
    assert abs(wait - 0.2) < 1e-9  # one token comes back every 1/5 s
    assert limiter.take("bob", 100.0) == 0.0  # another caller has its own bucket
    assert limiter.take("alice", 100.2) == 0.0
    assert limiter.take("alice", 100.2) > 0.0


def test_the_stream_gate_counts_up_to_its_limit() -> None:
    gate = StreamGate(2)
    assert gate.enter()
    assert gate.enter()
    assert not gate.enter()
    gate.leave()
    assert gate.enter()


def test_event_ids_name_the_steps_a_listener_has() -> None:
    mask = feeds.OUTLINE | feeds.COVER | feeds.chapter_bit(0)
    text = feeds.event_id(mask)
    assert text == "3-13"
    assert feeds.parse_event_id(text) == mask
    for bad in (None, "", "x", "3-zz", "2-13", "-1--1"):
        assert feeds.parse_event_id(bad) == 0


def test_a_resumed_listener_gets_the_missing_steps_whatever_their_order() -> None:
    async def scenario() -> list[tuple[str, str]]:
        # Given a feed that replays two steps in the other order than the first gateway saw
        feed = feeds.Feed("st-1", None)
        for payload in ({"event": "outline"}, {"event": "picture", "index": -1},
                        {"event": "chapter", "index": 0, "text": "t"}):
            event = feeds.translate("st-1", payload)
            assert event is not None
            feed.add(event)
        feed.add(feeds.outcome("st-1", {"status": "complete", "publications": {"pdf": b""}}))
        have = feeds.OUTLINE | feeds.chapter_bit(0)  # had the outline and chapter 1
        return [(e.name, i) async for e, i in feed.follow(have)]

    got = asyncio.run(scenario())
    # Then it gets the cover and the outcome only, with ids that include what it had
    assert [name for name, _ in got] == ["picture", "complete"]
    assert feeds.parse_event_id(got[-1][1]) == (feeds.OUTLINE | feeds.COVER
                                                | feeds.chapter_bit(0) | feeds.OUTCOME)
