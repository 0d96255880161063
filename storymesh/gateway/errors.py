"""Mesh error codes as HTTP answers, and the one error body the gateway ever sends:
`{"error": {"code", "message", "retryable", "retry_after"}}`."""

from __future__ import annotations

import math
from typing import Any, Final

from storymesh.core import schema
from storymesh.errors import AgentError, RequestFailed, RequestTimeout

# code -> HTTP status; a code not listed is unexpected: 500 with code `internal`.
STATUS: Final[dict[str, int]] = {
    "bad_request": 400,
    "too_large": 400,  # a field over a limit; a body over the gateway's limit is 413
    "unsupported_version": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "busy": 429,
    "no_such_service": 503,
    "worker_lost": 503,
    "shutting_down": 503,
    "not_active": 503,
    "expired": 504,
    "internal": 500,
}
_RETRYABLE_HERE: Final = ("not_active",)  # the gateway's own codes that are worth a retry


class ApiError(Exception):
    """An error answer: raised anywhere in a request, turned into the error body."""

    def __init__(self, code: str, message: str, *, status: int | None = None,
                 retryable: bool | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        if status is None and code not in STATUS:
            code = "internal"
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS[code]
        if retryable is None:
            retryable = schema.is_retryable(code) if code in schema.ERROR_CODES else (
                code in _RETRYABLE_HERE)
        self.retryable = retryable
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message,
                          "retryable": self.retryable, "retry_after": self.retry_after}}

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


def from_mesh(exc: RequestFailed | RequestTimeout | AgentError, *,
              story: str | None = None) -> ApiError:
    """The answer for a mesh error. About a `story`, `forbidden` reads as `not_found`: a
    story of another key is answered exactly like one that does not exist."""
    if isinstance(exc, RequestTimeout):
        return ApiError("expired", f"the mesh did not answer in time: {exc}", retryable=True)
    code, message = exc.code, getattr(exc, "message", str(exc))
    if story is not None and code == "forbidden":
        return not_found(story)
    retryable = exc.retryable if isinstance(exc, RequestFailed) else None
    return ApiError(code, message, retryable=retryable, retry_after=exc.retry_after)


def not_found(corr: str) -> ApiError:
    """The one answer for a story that does not exist or is not the caller's."""
    return ApiError("not_found", f"no story {corr}")
