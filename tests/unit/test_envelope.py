"""Unit tests of the storymesh body codec (storymesh.core.envelope): header, payload, binary frames,
and the limits every decode enforces (BodyError / TooLargeError, never anything else)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storymesh.core import envelope, schema
from storymesh.core.envelope import INLINE_BYTES_MAX, Limits
from storymesh.errors import BodyError, RemoteProtocolError, TooLargeError


def packb(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


HEADER = {"v": 1, "id": "req-1"}


def body(payload: Any, *frames: bytes, header: Any = None) -> list[bytes]:
    return [packb(HEADER if header is None else header), packb(payload), *frames]


# --- round trip ---------------------------------------------------------------------------

def test_big_bytes_travel_as_frames_and_small_ones_inline() -> None:
    # Given a payload with two big binaries (one nested in a list) and one small one
    png = b"\x89PNG" + b"p" * INLINE_BYTES_MAX
    pdf = b"%PDF" + b"d" * (2 * INLINE_BYTES_MAX)
    small = b"s" * (INLINE_BYTES_MAX - 1)
    payload = {"title": "Moon", "image": png, "pages": [{"pdf": pdf}], "thumb": small, "n": 3}
    header = envelope.make_header("r1", corr="story-9")
    # When packed
    frames = envelope.pack(header, payload)
    # Then the big values are their own frames, referenced as {"$frame": k} in order
    assert len(frames) == 4
    assert frames[2] is png
    assert frames[3] is pdf
    wire_payload = msgpack.unpackb(frames[1])
    assert wire_payload["image"] == {"$frame": 0}
    assert wire_payload["pages"] == [{"pdf": {"$frame": 1}}]
    assert wire_payload["thumb"] == small
    # And unpack gives back the same header and payload, bytes resolved
    env = envelope.unpack(frames)
    assert env.header == header
    assert env.payload == payload
    assert env.id == "r1"
    assert env.corr == "story-9"
    assert env.ok
    assert env.frames == [png, pdf]


def test_value_of_exactly_the_inline_limit_goes_to_a_frame() -> None:
    frames = envelope.pack(envelope.make_header("r"), {"b": b"x" * INLINE_BYTES_MAX})
    assert len(frames) == 3


def test_buffer_binary_frames_resolve_to_bytes() -> None:
    # Given a body whose binary frame is a zero-copy buffer, When unpacked
    env = envelope.unpack(body({"img": {"$frame": 0}}, memoryview(b"PNGDATA")))  # type: ignore[arg-type]
    # Then the payload holds real bytes
    assert env.payload["img"] == b"PNGDATA"
    assert type(env.payload["img"]) is bytes


def test_make_header_only_sets_given_keys() -> None:
    header = envelope.make_header("r", deadline=5, ok=False, principal="alice")
    assert header == {"v": 1, "id": "r", "deadline": 5.0, "ok": False, "principal": "alice"}
    assert isinstance(header["deadline"], float)
    fresh = envelope.make_header()
    assert set(fresh) == {"v", "id"}
    assert len(fresh["id"]) == 32
    assert envelope.make_header()["id"] != fresh["id"]


def test_envelope_corr_is_none_without_corr_and_ok_defaults_true() -> None:
    env = envelope.unpack(body({}))
    assert env.corr is None
    assert env.ok
    assert env.id == "req-1"


# --- read_header --------------------------------------------------------------------------

BAD_HEADERS = {
    "not msgpack": b"\xc1",
    "truncated msgpack": b"\x82\xa1v",
    "trailing bytes": packb(HEADER) + b"\x00",
    "not a map": packb([1, "req"]),
    "a string": packb("v"),
    "no v": packb({"id": "r"}),
    "v not an integer": packb({"v": "1", "id": "r"}),
    "no id": packb({"v": 1}),
    "id not a string": packb({"v": 1, "id": 7}),
    "empty id": packb({"v": 1, "id": ""}),
    "id over 128": packb({"v": 1, "id": "x" * 129}),
    "deadline a string": packb({"v": 1, "id": "r", "deadline": "soon"}),
    "deadline a list": packb({"v": 1, "id": "r", "deadline": [1]}),
    "integer map key": packb({1: 1, "v": 1, "id": "r"}),
    "ext type": packb(msgpack.ExtType(1, b"x")),
}


@pytest.mark.parametrize("frame", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_read_header_rejects_what_is_not_a_storymesh_header(frame: bytes) -> None:
    with pytest.raises(BodyError):
        envelope.read_header(frame)


def test_read_header_accepts_a_minimal_header_and_numeric_deadlines() -> None:
    assert envelope.read_header(packb(HEADER)) == HEADER
    assert envelope.read_header(packb({"v": 1, "id": "r", "deadline": 17}))["deadline"] == 17
    assert envelope.read_header(packb({"v": 1, "id": "r", "deadline": None}))["id"] == "r"
    assert envelope.read_header(packb({"v": 1, "id": "x" * 128}))["id"] == "x" * 128


def test_read_header_over_the_header_limit_is_too_large() -> None:
    frame = packb({"v": 1, "id": "r", "pad": "x" * 100})
    with pytest.raises(TooLargeError):
        envelope.read_header(frame, Limits(header_bytes=64))


# --- limits -------------------------------------------------------------------------------

def test_payload_over_payload_bytes_is_too_large() -> None:
    # Given a payload frame of 201 bytes
    frames = body({"text": "x" * 193})
    assert len(frames[1]) == 201
    # When unpacked with a 201-byte limit it is fine, with a 200-byte limit: TooLargeError
    assert envelope.unpack(frames, Limits(payload_bytes=201)).payload["text"] == "x" * 193
    with pytest.raises(TooLargeError) as info:
        envelope.unpack(frames, Limits(payload_bytes=200))
    assert info.value.code == "too_large"


def test_too_many_binary_frames_is_too_large() -> None:
    frames = body({}, b"a", b"b", b"c")
    assert envelope.unpack(frames, Limits(binary_frames=3)).frames == [b"a", b"b", b"c"]
    with pytest.raises(TooLargeError):
        envelope.unpack(frames, Limits(binary_frames=2))


def _nested(levels: int) -> dict[str, Any]:
    """A payload with `levels` maps nested (the payload itself is level 1), a scalar inside."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def test_depth_limit_counts_nested_maps_and_arrays() -> None:
    # Given depth 3: three nested containers (with a scalar inside) are fine, four are not
    limits = Limits(depth=3)
    assert envelope.unpack(body(_nested(3)), limits).payload == _nested(3)
    assert envelope.unpack(body({"a": [{"b": 1}]}), limits).payload == {"a": [{"b": 1}]}
    with pytest.raises(BodyError):
        envelope.unpack(body(_nested(4)), limits)
    with pytest.raises(BodyError):
        envelope.unpack(body({"a": [[[]]]}), limits)


def test_default_depth_limit_is_schema_max_depth() -> None:
    assert envelope.unpack(body(_nested(schema.MAX_DEPTH))).payload == _nested(schema.MAX_DEPTH)
    with pytest.raises(BodyError):
        envelope.unpack(body(_nested(schema.MAX_DEPTH + 1)))


def test_very_deep_msgpack_is_a_body_error_not_a_crash() -> None:
    # Given 100 000 nested one-element arrays (200 kB): msgpack's own stack limit trips
    deep = b"\x91" * 100_000 + b"\x00"
    with pytest.raises(BodyError):
        envelope.unpack([packb(HEADER), deep])


@pytest.mark.parametrize(("payload", "limits"), [
    ({"s": "x" * 11}, Limits(str_bytes=10)),
    ({"a": list(range(6))}, Limits(container_len=5)),
    ({f"k{i}": i for i in range(6)}, Limits(container_len=5)),
    ({"b": b"x" * 300}, Limits(payload_bytes=200)),
], ids=["string", "array", "map", "bin"])
def test_oversized_strings_arrays_maps_raise_body_errors(payload: dict[str, Any],
                                                         limits: Limits) -> None:
    with pytest.raises(BodyError):
        envelope.unpack(body(payload), limits)


def test_oversized_header_string_is_a_body_error() -> None:
    with pytest.raises(BodyError):
        envelope.read_header(packb({"v": 1, "id": "r", "x": "y" * 20}), Limits(str_bytes=10))


@pytest.mark.parametrize("ref", [1, -1, "0", None, 1.0], ids=["past end", "negative", "string",
                                                              "nil", "float"])
def test_frame_reference_out_of_range_or_not_an_int_is_a_body_error(ref: Any) -> None:
    with pytest.raises(BodyError, match="binary frame"):
        envelope.unpack(body({"img": {"$frame": ref}}, b"only frame 0"))


def test_frame_reference_with_other_keys_is_an_ordinary_map() -> None:
    env = envelope.unpack(body({"m": {"$frame": 9, "x": 1}}))
    assert env.payload == {"m": {"$frame": 9, "x": 1}}


def test_newer_envelope_version_is_rejected() -> None:
    with pytest.raises(BodyError, match="version"):
        envelope.unpack(body({}, header={"v": 2, "id": "r"}))


@pytest.mark.parametrize("frames", [[], [packb(HEADER)]], ids=["none", "header only"])
def test_body_without_payload_frame_is_a_body_error(frames: list[bytes]) -> None:
    with pytest.raises(BodyError):
        envelope.unpack(frames)


@pytest.mark.parametrize("payload", [[1, 2], "text", 3, None], ids=["list", "str", "int", "nil"])
def test_payload_that_is_not_a_map_is_a_body_error(payload: Any) -> None:
    with pytest.raises(BodyError):
        envelope.unpack(body(payload))


# --- error bodies -------------------------------------------------------------------------

def test_error_body_shape() -> None:
    # Given a busy error with a retry hint, When built and unpacked
    env = envelope.unpack(envelope.error_body("r7", "busy", "queue full", corr="s1",
                                              retry_after=2.5))
    # Then ok is false, ids are echoed and the payload is exactly {"error": {...}}
    assert env.header["ok"] is False
    assert not env.ok
    assert env.id == "r7"
    assert env.corr == "s1"
    assert env.header["v"] == 1
    assert env.payload == {"error": {"code": "busy", "message": "queue full",
                                     "retryable": True, "retry_after": 2.5}}


def test_error_body_retryable_defaults_from_the_schema_and_can_be_overridden() -> None:
    for code, (_, retryable, _) in schema.ERROR_CODES.items():
        err = envelope.unpack(envelope.error_body("r", code, "m")).payload["error"]
        assert err["retryable"] is retryable
        assert err["retry_after"] is None
    err = envelope.unpack(envelope.error_body("r", "expired", "m", retryable=True)).payload
    assert err["error"]["retryable"] is True


def test_error_body_without_request_id_still_has_a_valid_header() -> None:
    env = envelope.unpack(envelope.error_body("", "bad_request", "no header"))
    assert env.id == "unknown"
    assert env.header["ok"] is False


def test_deadline_in_is_wall_clock_seconds_ahead() -> None:
    import time

    before = time.time()
    deadline = envelope.deadline_in(10.0)
    assert before + 10.0 <= deadline <= time.time() + 10.0


# --- property: nothing but BodyError ------------------------------------------------------

MSGPACKISH = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda h, tail: packb(h) + tail,
              st.dictionaries(st.sampled_from(["v", "id", "deadline", "$frame", "ok"]),
                              st.one_of(st.integers(-2**63, 2**64 - 1), st.text(max_size=4), st.none(),
                                        st.floats(), st.booleans()), max_size=4),
              st.binary(max_size=3)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(MSGPACKISH, max_size=5))
def test_random_bytes_never_raise_anything_but_body_error(frames: list[bytes]) -> None:
    # Given arbitrary frames (random bytes, or msgpack maps with likely keys and a random tail)
    # When the broker reads a header or a peer unpacks a body
    # Then each either succeeds or raises BodyError
    limits = Limits(header_bytes=128, payload_bytes=128, binary_frames=2, depth=3,
                    str_bytes=16, container_len=8)
    for call in (lambda: envelope.read_header(frames[0] if frames else b"", limits),
                 lambda: envelope.unpack(frames, limits)):
        try:
            call()
        except BodyError:
            pass
        except RemoteProtocolError as exc:  # pragma: no cover - reported clearly below
            pytest.fail(f"raised {type(exc).__name__}, not a BodyError: {exc}")
