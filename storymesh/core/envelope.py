"""The storymesh body codec: a header frame, a payload frame, then binary frames.

    body = [header (msgpack map) | payload (msgpack map) | binary frame 0 | binary frame 1 ...]

The broker reads only the header (`read_header`). Agents and clients use `pack` / `unpack`,
which move `bytes` values of the payload into binary frames (referenced as {"$frame": k})
and back, so big images and PDFs travel as their own frames and are never re-encoded.
Every decode is bounded: header size, payload size, string/array/map lengths, nesting depth
and frame count; a bad body raises BodyError (or TooLargeError), never anything else.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from storymesh.core import schema
from storymesh.core.mdp import Frame
from storymesh.errors import BodyError, TooLargeError

# Values of the payload at least this big are sent as their own frame.
INLINE_BYTES_MAX = 4096


@dataclass(frozen=True, slots=True)
class Limits:
    """Decoding limits for one body."""

    header_bytes: int = schema.MAX_HEADER_BYTES
    payload_bytes: int = schema.MAX_PAYLOAD_BYTES
    binary_frames: int = schema.MAX_BINARY_FRAMES
    depth: int = schema.MAX_DEPTH
    str_bytes: int = schema.MAX_STR_BYTES
    container_len: int = schema.MAX_CONTAINER_LEN


DEFAULT_LIMITS = Limits()


@dataclass(slots=True)
class Envelope:
    """A decoded body: header map, payload map (bytes values resolved) and raw frames."""

    header: dict[str, Any]
    payload: dict[str, Any]
    frames: list[Frame] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.header.get(schema.H_ID, ""))

    @property
    def corr(self) -> str | None:
        corr = self.header.get(schema.H_CORR)
        return str(corr) if corr is not None else None

    @property
    def ok(self) -> bool:
        return bool(self.header.get(schema.H_OK, True))


def new_id() -> str:
    """A fresh request id."""
    return uuid.uuid4().hex


def _unpack(data: Frame, limit: int, limits: Limits, what: str) -> Any:
    size = memoryview(data).nbytes
    if size > limit:
        raise TooLargeError(f"{what} is {size} bytes, over the limit of {limit}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=limits.str_bytes,
            max_bin_len=limit,
            max_array_len=limits.container_len,
            max_map_len=limits.container_len,
            max_ext_len=0,
        )
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
        UnicodeDecodeError,
    ) as exc:
        if "exceeds max_" in str(exc):  # msgpack's own words for a length past our limits
            raise TooLargeError(f"{what} has a field over the limits: {exc}") from None
        raise BodyError(f"{what} is not valid msgpack within limits: {exc}") from None


def _check_depth(value: Any, max_depth: int) -> None:
    """Maps and arrays nested at most `max_depth` deep (the payload map is level 1);
    scalars are leaves, not a level."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        if depth > max_depth:
            raise BodyError(f"payload nested deeper than {max_depth}")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((v, depth + 1) for v in children)


def read_header(frame: Frame, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Decode only the header frame; raise BodyError when it is not a storymesh header."""
    header = _unpack(frame, limits.header_bytes, limits, "header")
    if not isinstance(header, dict):
        raise BodyError("header is not a map")
    version = header.get(schema.H_VERSION)
    if not isinstance(version, int):
        raise BodyError("header has no integer version 'v'")
    rid = header.get(schema.H_ID)
    if not isinstance(rid, str) or not rid or len(rid) > 128:
        raise BodyError("header has no request id 'id' (a string of 1-128 characters)")
    deadline = header.get(schema.H_DEADLINE)
    if deadline is not None and not isinstance(deadline, (int, float)):
        raise BodyError("header 'deadline' is not a number")
    return header


def make_header(
    rid: str | None = None,
    *,
    corr: str | None = None,
    deadline: float | None = None,
    ok: bool | None = None,
    principal: str | None = None,
) -> dict[str, Any]:
    """A header map with only the keys that are set."""
    header: dict[str, Any] = {
        schema.H_VERSION: schema.ENVELOPE_VERSION,
        schema.H_ID: rid or new_id(),
    }
    if corr is not None:
        header[schema.H_CORR] = corr
    if deadline is not None:
        header[schema.H_DEADLINE] = float(deadline)
    if ok is not None:
        header[schema.H_OK] = ok
    if principal is not None:
        header[schema.H_PRINCIPAL] = principal
    return header


def _externalise(value: Any, frames: list[Frame]) -> Any:
    """Replace big bytes values by {"$frame": k} references, collecting the frames."""
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) >= INLINE_BYTES_MAX:
        frames.append(value)
        return {schema.FRAME_REF: len(frames) - 1}
    if isinstance(value, dict):
        return {k: _externalise(v, frames) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_externalise(v, frames) for v in value]
    return value


def pack(header: dict[str, Any], payload: dict[str, Any]) -> list[Frame]:
    """Body frames for a header and a payload whose big bytes values become frames."""
    frames: list[Frame] = []
    body = _externalise(payload, frames)
    return [
        msgpack.packb(header, use_bin_type=True),
        msgpack.packb(body, use_bin_type=True),
        *frames,
    ]


def _resolve(value: Any, frames: Sequence[Frame]) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and schema.FRAME_REF in value:
            k = value[schema.FRAME_REF]
            if not isinstance(k, int) or not 0 <= k < len(frames):
                raise BodyError(f"payload references missing binary frame {k!r}")
            frame = frames[k]
            return frame if type(frame) is bytes else bytes(frame)
        return {key: _resolve(v, frames) for key, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, frames) for v in value]
    return value


def unpack(body: Sequence[Frame], limits: Limits = DEFAULT_LIMITS) -> Envelope:
    """Decode a whole body: header, payload (frame references resolved to bytes)."""
    if len(body) < 2:
        raise BodyError(
            f"a storymesh body has a header and a payload frame, got {len(body)} frame(s)"
        )
    if len(body) - 2 > limits.binary_frames:
        raise TooLargeError(
            f"{len(body) - 2} binary frames, over the limit of {limits.binary_frames}"
        )
    header = read_header(body[0], limits)
    if header[schema.H_VERSION] > schema.ENVELOPE_VERSION:
        raise BodyError(f"envelope version {header[schema.H_VERSION]} is not supported")
    payload = _unpack(body[1], limits.payload_bytes, limits, "payload")
    if not isinstance(payload, dict):
        raise BodyError("payload is not a map")
    _check_depth(payload, limits.depth)
    frames = list(body[2:])
    return Envelope(header, _resolve(payload, frames), frames)


def error_payload(
    code: str, message: str, *, retryable: bool | None = None, retry_after: float | None = None
) -> dict[str, Any]:
    """The payload of an error reply: {"error": {code, message, retryable, retry_after}}."""
    return {
        "error": {
            "code": code,
            "message": message,
            "retryable": schema.is_retryable(code) if retryable is None else retryable,
            "retry_after": retry_after,
        }
    }


def error_body(
    rid: str,
    code: str,
    message: str,
    *,
    corr: str | None = None,
    retryable: bool | None = None,
    retry_after: float | None = None,
) -> list[Frame]:
    """A whole error reply body (ok: false)."""
    header = make_header(rid or "unknown", corr=corr, ok=False)
    return pack(header, error_payload(code, message, retryable=retryable, retry_after=retry_after))


def deadline_in(seconds: float) -> float:
    """An absolute wall-clock deadline `seconds` from now (wall clock: it crosses machines)."""
    return time.time() + seconds
