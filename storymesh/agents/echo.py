"""The echo agent: returns its request payload; a probe for the mesh and a tool for tests.

Payload options (all optional, the rest is echoed back untouched, bytes values included):
- `"sleep": s` (0..60 s): wait before replying; a cancelled request stops waiting;
- `"partials": n` (0..100): send n PARTIALs `{"index": i}` before the FINAL;
- `"fail": "code"`: raise `FatalAgentError(code, ...)`, to exercise error paths.
"""

from __future__ import annotations

from collections.abc import Iterator

from storymesh import vocabulary
from storymesh.errors import FatalAgentError
from storymesh.runtime.agent import Agent, Final, Partial, Reply, Request

MAX_PARTIALS = 100
MAX_SLEEP = 60.0


class EchoAgent(Agent):
    """Echoes the payload back as the FINAL."""

    service = "echo"

    def handle(self, request: Request) -> Iterator[Reply]:
        payload = request.payload
        fail = payload.get("fail")
        if fail is not None:
            raise FatalAgentError(str(fail)[:64], "the request asked echo to fail")
        # A number, not only an int: `"partials": 3.0` from a JSON tool is fine.
        partials = vocabulary.number_field(payload, "partials", 0, MAX_PARTIALS, default=0.0)
        if not partials.is_integer():
            raise vocabulary.bad("'partials' must be a whole number")
        sleep = vocabulary.number_field(payload, "sleep", 0, MAX_SLEEP, default=0.0)
        if sleep and request.cancel.wait(sleep):
            code = "expired" if request.expired() else "cancelled"
            raise FatalAgentError(code, "the request was cancelled while echo slept")
        for index in range(int(partials)):
            yield Partial({"index": index})
        yield Final(payload)
