"""The fuzz targets of fuzz/targets.py under hypothesis, bounded for CI (a few seconds each).

test_mdp.py and test_envelope.py already throw random frames at the parsers; these go
further: structure-aware inputs (protocol tokens, valid bodies then mutated), round trips
(what parses re-encodes to the same message; what unpacks re-packs to the same payload),
and whole conversations with a BrokerCore, plain and with keys on, checking its invariants
after every message. `python -m fuzz TARGET` runs the same targets under atheris.
"""

from __future__ import annotations

import random
from typing import Any

import msgpack
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fuzz.targets import (
    check_envelope,
    check_mdp,
    core_one_input,
    envelope_one_input,
    frames_from_bytes,
    mdp_one_input,
    run_core,
)
from storymesh.core import envelope, mdp

BOUNDED = settings(max_examples=200, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TOKEN = st.integers(0x80, 0xFF).map(lambda b: bytes([b]))
FUZZ_BYTES = st.lists(st.one_of(TOKEN, st.binary(max_size=6)), max_size=40).map(b"".join)


@BOUNDED
@given(FUZZ_BYTES)
@example(bytes([3, 0x82, 0x85, 0x8b]))                 # MDPC02 | 0x01 | echo
@example(bytes([4, 0x80, 0x83, 0x85, 0x8b]))           # "" | MDPW01 | 0x01 | echo
def test_what_parses_re_encodes_to_the_same_message(data: bytes) -> None:
    mdp_one_input(data)


@BOUNDED
@given(st.sampled_from(list(mdp.Dialect)), st.binary(max_size=20),
       st.lists(st.binary(max_size=20), max_size=4), st.integers(0, 6), st.binary(max_size=3))
def test_valid_messages_with_one_frame_corrupted_only_raise_protocol_errors(
        dialect: mdp.Dialect, service: bytes, body: list[bytes], at: int, junk: bytes) -> None:
    for msg in (mdp.ClientRequest(service or b"s", tuple(body), dialect),
                mdp.Ready(service or b"s", None, dialect),
                mdp.WorkerReply(b"c", tuple(body), True, dialect),
                mdp.WorkerRequest(b"c", tuple(body), dialect)):
        frames = mdp.encode(msg)
        check_mdp(frames)
        frames[at % len(frames)] = junk
        check_mdp(frames)


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1),
                    st.floats(allow_nan=True), st.text(max_size=30), st.binary(max_size=30),
                    st.binary(min_size=4096, max_size=5000))
PAYLOADS = st.dictionaries(st.text(max_size=8), st.recursive(
    SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                     st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12), max_size=6)


@settings(BOUNDED, max_examples=100)  # big binaries make each example slow to generate
@given(PAYLOADS, st.integers(0, 3), st.integers(0, 200), st.binary(max_size=4))
def test_packed_bodies_round_trip_and_survive_corruption(payload: dict[str, Any], frame: int,
                                                         cut: int, junk: bytes) -> None:
    body = [bytes(f) for f in envelope.pack(envelope.make_header("r", corr="c"), payload)]
    # Then a body as packed unpacks to the same payload and round-trips again
    check_envelope(body)
    unpacked = envelope.unpack(body).payload
    assert msgpack.packb(unpacked) == msgpack.packb(_lists(payload))
    # And cut short or with bytes spliced in, it raises BodyError or decodes consistently
    i = frame % len(body)
    body[i] = body[i][:cut] + junk + body[i][cut:]
    check_envelope(body)


def _lists(value: Any) -> Any:
    """What msgpack gives back: tuples as lists."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


@BOUNDED
@given(FUZZ_BYTES)
def test_random_bodies_only_raise_body_errors(data: bytes) -> None:
    envelope_one_input(data)


CORE_BYTES = st.lists(st.one_of(st.integers(0, 255).map(lambda b: bytes([b])), TOKEN,
                                st.binary(max_size=4)), min_size=1, max_size=120).map(b"".join)


# Found by atheris: requests lost with their worker are re-queued past queue_limit (by
# design: never dropped), which an earlier invariant did not allow for.
REQUEUE_PAST_LIMIT = bytes.fromhex("c2c2c20110000000000000e0a2a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0dbd4d4a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0dbd4d4d4a0d4a0d4d4d47a7ad4c27265616479c2c2c2c2c2c20124")


@BOUNDED
@given(CORE_BYTES)
@example(REQUEUE_PAST_LIMIT)
def test_the_broker_core_survives_any_conversation_and_keeps_its_invariants(data: bytes) -> None:
    core_one_input(data)


def test_the_core_driver_reaches_dispatch_replies_and_refusals() -> None:
    # Given 300 fixed pseudo-random inputs, the fuzz driver reaches past the header checks:
    # dispatches, replies, full queues, lost workers, refusals by the roles
    rng = random.Random(1)
    seen: dict[str, int] = {}
    for _ in range(300):
        for core in run_core(rng.randbytes(200)):
            for key, value in core.counters.items():
                seen[key] = max(seen.get(key, 0), value)
    for key in ("replies", "partials", "busy", "worker_lost", "redispatched", "expired",
                "no_such_service", "forbidden", "violations", "malformed"):
        assert seen[key] > 0, (key, seen)


def test_frames_from_bytes_reads_tokens_and_literals() -> None:
    assert frames_from_bytes(bytes([3, 0x82, 0x85, 2, 0x41, 0x42])) == [mdp.C02, b"\x01", b"AB"]
    assert frames_from_bytes(b"") == []
