"""Unit tests of the pure MDP codec (storymesh.core.mdp): byte literals in, dataclasses out.

Every frame list below is copied from the tables in MDP.md / DESIGN.md section 2, with the
routing id already removed, so a change to the wire format breaks a test here first.
"""

from __future__ import annotations

import array
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storymesh.core import mdp
from storymesh.core.mdp import (
    ClientReply,
    ClientRequest,
    Dialect,
    Disconnect,
    Heartbeat,
    Ready,
    WorkerReply,
    WorkerRequest,
)
from storymesh.errors import LocalProtocolError, RemoteProtocolError

V01, V02, V02E = Dialect.V01, Dialect.V02, Dialect.V02E
BODY = (b"header", b"payload")
META = b"\x81\xa6hb_busy\xc3"  # msgpack {"hb_busy": True}


def Buffer(data: bytes) -> array.array[int]:
    """A zero-copy frame stand-in: an object with the buffer protocol that is not `bytes`
    (Python 3.11 has no `__buffer__`, so a plain class cannot offer it)."""
    return array.array("B", data)


def _frames(frames: Sequence[Any]) -> list[bytes]:
    return [bytes(f) for f in frames]


# --- the exact frames of every message, per dialect ---------------------------------------
# (message, frames as on the wire, which parser reads it)

# HEARTBEAT and DISCONNECT: the same frames whichever way they go
LINK = [
    (Heartbeat(V01), [b"", b"MDPW01", b"\x04"]),
    (Heartbeat(V02), [b"MDPW02", b"\x05"]),
    (Heartbeat(V02E), [b"", b"MDPW02", b"\x05"]),
    (Disconnect(V01), [b"", b"MDPW01", b"\x05"]),
    (Disconnect(V02), [b"MDPW02", b"\x06"]),
    (Disconnect(V02E), [b"", b"MDPW02", b"\x06"]),
]

BROKER_RECEIVES = [
    # client REQUEST
    (ClientRequest(b"echo", BODY, V01), [b"", b"MDPC01", b"echo", *BODY]),
    (ClientRequest(b"echo", BODY, V02), [b"MDPC02", b"\x01", b"echo", *BODY]),
    (ClientRequest(b"echo", BODY, V02E), [b"", b"MDPC02", b"\x02", b"echo", *BODY]),
    # worker READY, without and with the metadata frame
    (Ready(b"echo", None, V01), [b"", b"MDPW01", b"\x01", b"echo"]),
    (Ready(b"echo", None, V02), [b"MDPW02", b"\x01", b"echo"]),
    (Ready(b"echo", None, V02E), [b"", b"MDPW02", b"\x01", b"echo"]),
    (Ready(b"echo", META, V01), [b"", b"MDPW01", b"\x01", b"echo", META]),
    (Ready(b"echo", META, V02), [b"MDPW02", b"\x01", b"echo", META]),
    (Ready(b"echo", META, V02E), [b"", b"MDPW02", b"\x01", b"echo", META]),
    # worker REPLY (0.1) / PARTIAL + FINAL (0.2, 0.2e)
    (WorkerReply(b"cid", BODY, True, V01), [b"", b"MDPW01", b"\x03", b"cid", b"", *BODY]),
    (WorkerReply(b"cid", BODY, False, V02), [b"MDPW02", b"\x03", b"cid", b"", *BODY]),
    (WorkerReply(b"cid", BODY, True, V02), [b"MDPW02", b"\x04", b"cid", b"", *BODY]),
    (WorkerReply(b"cid", BODY, False, V02E), [b"", b"MDPW02", b"\x03", b"cid", b"", *BODY]),
    (WorkerReply(b"cid", BODY, True, V02E), [b"", b"MDPW02", b"\x04", b"cid", b"", *BODY]),
    # HEARTBEAT and DISCONNECT from a worker
    *LINK,
]

WORKER_RECEIVES = [
    (WorkerRequest(b"cid", BODY, V01), [b"", b"MDPW01", b"\x02", b"cid", b"", *BODY]),
    (WorkerRequest(b"cid", BODY, V02), [b"MDPW02", b"\x02", b"cid", b"", *BODY]),
    (WorkerRequest(b"cid", BODY, V02E), [b"", b"MDPW02", b"\x02", b"cid", b"", *BODY]),
    *LINK,
]

CLIENT_RECEIVES = [
    (ClientReply(b"echo", BODY, True, V01), [b"", b"MDPC01", b"echo", *BODY]),
    (ClientReply(b"echo", BODY, False, V02), [b"MDPC02", b"\x02", b"echo", *BODY]),
    (ClientReply(b"echo", BODY, True, V02), [b"MDPC02", b"\x03", b"echo", *BODY]),
    # 0.2e replies carry no service frame, so the parsed service is empty
    (ClientReply(b"", BODY, False, V02E), [b"", b"MDPC02", b"\x03", *BODY]),
    (ClientReply(b"", BODY, True, V02E), [b"", b"MDPC02", b"\x04", *BODY]),
]


def _ids(cases: list[tuple[Any, list[bytes]]]) -> list[str]:
    return [f"{type(m).__name__}-{m.dialect.value}-{len(f)}" for m, f in cases]


# Each side's messages, with the parser that side uses for what it receives.
SIDES: list[tuple[Any, list[bytes], Callable[[list[bytes]], Any]]] = [
    *((m, w, mdp.parse) for m, w in BROKER_RECEIVES),
    *((m, w, mdp.parse_to_worker) for m, w in WORKER_RECEIVES),
    *((m, w, mdp.parse_to_client) for m, w in CLIENT_RECEIVES),
]


@pytest.mark.parametrize(("msg", "wire", "parse"), SIDES,
                         ids=_ids([(m, w) for m, w, _ in SIDES]))
def test_messages_encode_to_the_documented_frames_and_parse_back(
        msg: Any, wire: list[bytes], parse: Callable[[list[bytes]], Any]) -> None:
    # Given a message one side receives, When it is encoded and parsed by that side
    frames = mdp.encode(msg)
    # Then the frames are exactly the documented ones, and parse gives the message back
    assert _frames(frames) == wire
    assert parse(frames) == msg
    assert parse(wire) == msg


def test_a_0_2e_reply_encodes_without_its_service_frame() -> None:
    # Given a FINAL for a majortomo-style client that names a service
    msg = ClientReply(b"echo", BODY, True, V02E)
    # When encoded, Then the service is left out, as that dialect expects
    assert _frames(mdp.encode(msg)) == [b"", b"MDPC02", b"\x04", *BODY]


def test_a_request_without_body_frames_parses_with_an_empty_body() -> None:
    assert mdp.parse([b"MDPC02", b"\x01", b"mmi.service"]) == ClientRequest(
        b"mmi.service", (), V02)


# --- rejections ---------------------------------------------------------------------------

MALFORMED = {
    "empty message": [],
    "only an empty frame": [b""],
    "unknown header": [b"MDPX02", b"\x01", b"echo", b"x"],
    "unknown header after empty": [b"", b"HTTP/1", b"\x01", b"echo"],
    "0.1 client header without leading empty": [b"MDPC01", b"echo", b"x"],
    "0.1 worker header without leading empty": [b"MDPW01", b"\x01", b"echo"],
    "0.2 client without command or service": [b"MDPC02", b"\x01"],
    "0.2 client header alone": [b"MDPC02"],
    "0.1 client without service": [b"", b"MDPC01"],
    "worker header alone": [b"MDPW02"],
    "0.1 worker header alone": [b"", b"MDPW01"],
    "unknown worker command 0.2": [b"MDPW02", b"\x07"],
    "unknown worker command 0.1": [b"", b"MDPW01", b"\x06"],
    "worker command of two bytes": [b"MDPW02", b"\x01\x01", b"echo"],
    "empty worker command": [b"MDPW02", b"", b"echo"],
    "unknown client command": [b"MDPC02", b"\x09", b"echo", b"x"],
    "READY without service": [b"MDPW02", b"\x01"],
    "READY with empty service": [b"MDPW02", b"\x01", b""],
    "0.1 REQUEST empty service": [b"", b"MDPC01", b"", b"x"],
    "0.2 REQUEST empty service": [b"MDPC02", b"\x01", b"", b"x"],
    "READY with 2 extra frames": [b"MDPW02", b"\x01", b"echo", META, b"x"],
    "READY with 3 extra frames": [b"MDPW02", b"\x01", b"echo", b"a", b"b", b"c"],
    "0.1 READY with 3 extra frames": [b"", b"MDPW01", b"\x01", b"echo", b"a", b"b", b"c"],
    "FINAL without delimiter": [b"MDPW02", b"\x04", b"cid", b"body"],
    "FINAL without address": [b"MDPW02", b"\x04"],
    "FINAL with address only": [b"MDPW02", b"\x04", b"cid"],
    "FINAL with empty address": [b"MDPW02", b"\x04", b"", b"", b"body"],
    "0.1 REPLY without delimiter": [b"", b"MDPW01", b"\x03", b"cid", b"x", b"body"],
    "PARTIAL without delimiter": [b"MDPW02", b"\x03", b"cid", b"x"],
    "client PARTIAL in strict 0.2": [b"MDPC02", b"\x02", b"echo", b"x"],
    "client FINAL in strict 0.2": [b"MDPC02", b"\x03", b"echo", b"x"],
    "client 0.2 REQUEST byte under 0.2e": [b"", b"MDPC02", b"\x01", b"echo", b"x"],
    "HEARTBEAT with extra frames": [b"MDPW02", b"\x05", b"x"],
    "0.1 HEARTBEAT with extra frames": [b"", b"MDPW01", b"\x04", b"cid", b"", b"x"],
    "DISCONNECT with extra frames": [b"MDPW02", b"\x06", b""],
    "worker sends REQUEST 0.2": [b"MDPW02", b"\x02", b"cid", b"", b"x"],
    "worker sends REQUEST 0.1": [b"", b"MDPW01", b"\x02", b"cid", b"", b"x"],
    "worker sends REQUEST 0.2e": [b"", b"MDPW02", b"\x02", b"cid", b"", b"x"],
}


@pytest.mark.parametrize("frames", MALFORMED.values(), ids=MALFORMED.keys())
def test_broker_rejects_malformed_messages_with_remote_protocol_error(
        frames: list[bytes]) -> None:
    # Given a malformed message, When the broker parses it, Then RemoteProtocolError
    with pytest.raises(RemoteProtocolError):
        mdp.parse(frames)


TO_WORKER_MALFORMED = {
    "client header": [b"MDPC02", b"\x02", b"echo", b"x"],
    "READY to a worker": [b"MDPW02", b"\x01", b"echo"],
    "FINAL to a worker": [b"MDPW02", b"\x04", b"cid", b"", b"x"],
    "0.1 REPLY to a worker": [b"", b"MDPW01", b"\x03", b"cid", b"", b"x"],
    "REQUEST without delimiter": [b"MDPW02", b"\x02", b"cid", b"x"],
    "REQUEST without address": [b"MDPW02", b"\x02"],
    "unknown command": [b"MDPW02", b"\x0a"],
    "HEARTBEAT with extra frames": [b"MDPW02", b"\x05", b"x"],
    "0.1 DISCONNECT with extra frames": [b"", b"MDPW01", b"\x05", b"x"],
    "empty": [],
}


@pytest.mark.parametrize("frames", TO_WORKER_MALFORMED.values(), ids=TO_WORKER_MALFORMED.keys())
def test_worker_rejects_malformed_messages(frames: list[bytes]) -> None:
    with pytest.raises(RemoteProtocolError):
        mdp.parse_to_worker(frames)


TO_CLIENT_MALFORMED = {
    "worker header": [b"MDPW02", b"\x05"],
    "0.2 REQUEST byte as a reply": [b"MDPC02", b"\x01", b"echo", b"x"],
    "0.2 reply without command": [b"MDPC02"],
    "0.2 reply without service": [b"MDPC02", b"\x03"],
    "0.2 reply with empty service": [b"MDPC02", b"\x03", b""],
    "0.2e reply with strict FINAL byte 0x02": [b"", b"MDPC02", b"\x02", b"x"],
    "0.2e reply without command": [b"", b"MDPC02"],
    "0.1 reply without service": [b"", b"MDPC01"],
    "0.1 header without leading empty": [b"MDPC01", b"echo", b"x"],
}


@pytest.mark.parametrize("frames", TO_CLIENT_MALFORMED.values(), ids=TO_CLIENT_MALFORMED.keys())
def test_client_rejects_malformed_messages(frames: list[bytes]) -> None:
    with pytest.raises(RemoteProtocolError):
        mdp.parse_to_client(frames)


# --- command bytes mean nothing without the header ----------------------------------------

def test_0x04_is_heartbeat_under_mdpw01_and_final_under_mdpw02() -> None:
    # Given the same command byte 0x04, When parsed under each worker header
    v01 = mdp.parse([b"", b"MDPW01", b"\x04"])
    v02 = mdp.parse([b"MDPW02", b"\x04", b"cid", b"", b"x"])
    # Then 0.1 reads a HEARTBEAT and 0.2 a FINAL
    assert v01 == Heartbeat(V01)
    assert v02 == WorkerReply(b"cid", (b"x",), True, V02)
    # And a FINAL framed under MDPW01 is rejected, not silently read as a HEARTBEAT
    with pytest.raises(RemoteProtocolError):
        mdp.parse([b"", b"MDPW01", b"\x04", b"cid", b"", b"x"])


def test_0x05_is_disconnect_under_mdpw01_and_heartbeat_under_mdpw02() -> None:
    assert mdp.parse([b"", b"MDPW01", b"\x05"]) == Disconnect(V01)
    assert mdp.parse([b"MDPW02", b"\x05"]) == Heartbeat(V02)
    assert mdp.parse([b"", b"MDPW02", b"\x05"]) == Heartbeat(V02E)


def test_0x03_is_reply_under_mdpw01_and_partial_under_mdpw02() -> None:
    assert mdp.parse([b"", b"MDPW01", b"\x03", b"c", b"", b"x"]) == WorkerReply(
        b"c", (b"x",), True, V01)
    assert mdp.parse([b"MDPW02", b"\x03", b"c", b"", b"x"]) == WorkerReply(
        b"c", (b"x",), False, V02)


def test_0x06_exists_only_in_mdpw02() -> None:
    assert mdp.parse([b"MDPW02", b"\x06"]) == Disconnect(V02)
    with pytest.raises(RemoteProtocolError):
        mdp.parse([b"", b"MDPW01", b"\x06"])


def test_mdpc02_0x02_is_a_request_in_0_2e_and_invalid_in_strict_0_2() -> None:
    # Given the client command byte 0x02 under MDPC02
    # When it comes with the leading empty frame, Then it is a 0.2e REQUEST
    assert mdp.parse([b"", b"MDPC02", b"\x02", b"echo", b"x"]) == ClientRequest(
        b"echo", (b"x",), V02E)
    # When it comes without, Then it is a PARTIAL, which no client may send
    with pytest.raises(RemoteProtocolError, match="REQUEST"):
        mdp.parse([b"MDPC02", b"\x02", b"echo", b"x"])


def test_mdpc02_reply_bytes_differ_between_strict_and_0_2e() -> None:
    # Strict 0.2: PARTIAL 0x02, FINAL 0x03; 0.2e: PARTIAL 0x03, FINAL 0x04.
    assert not mdp.parse_to_client([b"MDPC02", b"\x02", b"s", b"x"]).final
    assert mdp.parse_to_client([b"MDPC02", b"\x03", b"s", b"x"]).final
    assert not mdp.parse_to_client([b"", b"MDPC02", b"\x03", b"x"]).final
    assert mdp.parse_to_client([b"", b"MDPC02", b"\x04", b"x"]).final
    with pytest.raises(RemoteProtocolError):
        mdp.parse_to_client([b"MDPC02", b"\x04", b"s", b"x"])


# --- encoding errors ----------------------------------------------------------------------

def test_encoding_a_partial_for_a_0_1_client_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        mdp.encode(ClientReply(b"echo", BODY, False, V01))


def test_encoding_a_partial_from_a_0_1_worker_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        mdp.encode(WorkerReply(b"cid", BODY, False, V01))


def test_encoding_something_that_is_not_a_message_is_a_local_error() -> None:
    class Other:
        dialect = V02

    with pytest.raises(LocalProtocolError):
        mdp.encode(Other())  # type: ignore[arg-type]


# --- zero-copy frames ---------------------------------------------------------------------

@pytest.mark.parametrize("make", [memoryview, Buffer, bytearray], ids=["memoryview", "buffer",
                                                                        "bytearray"])
def test_buffer_frames_parse_and_body_frames_pass_through_untouched(make: Any) -> None:
    # Given a 0.2 worker FINAL whose every frame is a buffer object, not bytes
    body0, body1 = make(b"header"), make(b"payload")
    frames = [make(b"MDPW02"), make(b"\x04"), make(b"cid"), make(b""), body0, body1]
    # When parsed
    msg = mdp.parse(frames)
    # Then the protocol frames were read and the body frames are the very same objects
    assert isinstance(msg, WorkerReply)
    assert msg.final
    assert msg.client == b"cid"
    assert msg.body[0] is body0
    assert msg.body[1] is body1
    # And encoding it for a client keeps those same objects, never copies
    out = mdp.encode(ClientReply(b"echo", msg.body, True, V02))
    assert out[3] is body0
    assert out[4] is body1


def test_buffer_frames_in_a_client_request_pass_through_untouched() -> None:
    body = memoryview(b"payload")
    msg = mdp.parse([memoryview(b""), memoryview(b"MDPC01"), memoryview(b"echo"), body])
    assert msg == ClientRequest(b"echo", (body,), V01)
    assert isinstance(msg, ClientRequest)
    assert msg.body[0] is body
    request = mdp.encode(WorkerRequest(b"cid", msg.body, V02))
    assert request[-1] is body


def test_as_bytes_returns_bytes_itself_and_copies_buffers() -> None:
    raw = b"MDPC02"
    assert mdp.as_bytes(raw) is raw
    assert mdp.as_bytes(Buffer(b"abc")) == b"abc"


# --- property: nothing but RemoteProtocolError ---------------------------------------------

PROTOCOL_FRAMES = st.sampled_from([b"", b"MDPC01", b"MDPC02", b"MDPW01", b"MDPW02",
                                   b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06",
                                   b"echo", b"mmi.service"])
ANY_FRAME = st.one_of(PROTOCOL_FRAMES, st.binary(max_size=12))
FRAME_LISTS = st.lists(ANY_FRAME, max_size=8)


@settings(max_examples=300, deadline=None)
@given(FRAME_LISTS, st.booleans())
def test_random_frames_never_raise_anything_but_remote_protocol_error(
        frames: list[bytes], as_views: bool) -> None:
    # Given any list of frames (often built from real protocol words), as bytes or buffers
    wire: list[Any] = [memoryview(f) for f in frames] if as_views else frames
    # When each parser reads it, Then it returns a message or raises RemoteProtocolError
    for parser in (mdp.parse, mdp.parse_to_worker, mdp.parse_to_client):
        try:
            msg = parser(wire)
        except RemoteProtocolError:
            continue
        assert msg.dialect in (V01, V02, V02E)
