"""The echo agent: returns its request payload; a probe for the mesh and a tool for tests.

Payload options (all optional, the rest is echoed back untouched, bytes values included):
- `"sleep": s` (0..60 s): wait before replying; a cancelled request stops waiting;
- `"partials": n` (0..100): send n PARTIALs `{"index": i}` before the FINAL;
- `"fail": "code"`: raise `FatalAgentError(code, ...)`, to exercise error paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from storymesh.errors import FatalAgentError
from storymesh.runtime.agent import Agent, Final, Partial, Reply, Request

MAX_PARTIALS = 100
MAX_SLEEP = 60.0


def _number(payload: dict[str, Any], key: str, high: float) -> float:
    value = payload.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
        raise FatalAgentError("bad_request", f"'{key}' must be a number from 0 to {high:g}")
    return float(value)


class EchoAgent(Agent):
    """Echoes the payload back as the FINAL."""

    service = "echo"

    def handle(self, request: Request) -> Iterator[Reply]:
        payload = request.payload
        fail = payload.get("fail")
        if fail is not None:
            raise FatalAgentError(str(fail)[:64], "the request asked echo to fail")
        partials = _number(payload, "partials", MAX_PARTIALS)
        if not float(partials).is_integer():
            raise FatalAgentError("bad_request", "'partials' must be a whole number")
        sleep = _number(payload, "sleep", MAX_SLEEP)
        if sleep and request.cancel.wait(sleep):
            code = "expired" if request.expired() else "cancelled"
            raise FatalAgentError(code, "the request was cancelled while echo slept")
        for index in range(int(partials)):
            yield Partial({"index": index})
        yield Final(payload)
