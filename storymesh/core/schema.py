"""The storymesh envelope schema: header keys, error codes, exit codes, statuses, limits.

This module is the single source of truth; docs/protocol.md describes the same thing for
third-party clients, and a unit test checks the two agree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

ENVELOPE_VERSION: Final = 1

# Header keys (frame 0 of every storymesh body; the only frame the broker reads).
H_VERSION: Final = "v"
H_ID: Final = "id"
H_CORR: Final = "corr"
H_DEADLINE: Final = "deadline"
H_OK: Final = "ok"
H_PRINCIPAL: Final = "principal"
# Written (true) by the broker on requests from admin keys, removed from all others.
H_ADMIN: Final = "admin"
HEADER_KEYS: Final = (H_VERSION, H_ID, H_CORR, H_DEADLINE, H_OK, H_PRINCIPAL, H_ADMIN)

# A binary frame referenced from the payload: {"$frame": k}, k counted from the first
# frame after the payload.
FRAME_REF: Final = "$frame"


class Status(StrEnum):
    """Story status, one enum everywhere."""

    ACCEPTED = "accepted"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Error codes: a closed list. Each maps to (meaning, retryable by default, CLI exit code).
# Exit codes 0 (ok), 1 (degraded, health only) and 2 (down / usage) are taken by the CLI.
ERROR_CODES: Final[dict[str, tuple[str, bool, int]]] = {
    # broker
    "busy": ("the service queue is full; retry after `retry_after` seconds", True, 10),
    "expired": ("the request's deadline passed before it was served", False, 11),
    "worker_lost": ("every worker that took the request died (max_attempts reached)", True, 12),
    "no_such_service": ("no worker registered for the service within the wait time", True, 13),
    "too_large": ("the message or a field is over a limit", False, 14),
    "bad_request": ("the request is malformed or has invalid values", False, 15),
    "forbidden": ("the caller's key may not do this", False, 16),
    "unsupported_version": ("the envelope's major version is newer than this peer's", False, 17),
    "shutting_down": ("the broker or agent is stopping; retry elsewhere or later", True, 18),
    "not_active": ("this broker of a pair is passive; send to the other endpoint", True, 19),
    # agents
    "model_error": ("the model failed while serving the request", True, 20),
    "internal": ("an unexpected error inside an agent or the broker", True, 21),
    "not_found": ("no such story or object", False, 22),
    "cancelled": ("the story was cancelled", False, 23),
    "failed": ("the story failed", False, 24),
}
BROKER_ERROR_CODES: Final = (
    "busy", "expired", "worker_lost", "no_such_service", "too_large", "bad_request",
    "forbidden", "unsupported_version", "shutting_down", "not_active",
)
EXIT_OK: Final = 0
EXIT_DEGRADED: Final = 1
EXIT_DOWN: Final = 2
EXIT_TIMEOUT: Final = 3
EXIT_USAGE: Final = 2


def exit_code_for(code: str) -> int:
    """The CLI exit code for an error code (unknown codes map to `internal`'s)."""
    return ERROR_CODES.get(code, ERROR_CODES["internal"])[2]


def is_retryable(code: str) -> bool:
    """Whether an error code is retryable by default."""
    return ERROR_CODES.get(code, ERROR_CODES["internal"])[1]


# Default decoding limits: bodies are decoded with these unless a caller passes others.
MAX_HEADER_BYTES: Final = 4096
MAX_PAYLOAD_BYTES: Final = 16 * 1024 * 1024
MAX_BINARY_FRAMES: Final = 64
MAX_DEPTH: Final = 16
MAX_STR_BYTES: Final = 4 * 1024 * 1024
MAX_CONTAINER_LEN: Final = 100_000
MAX_SERVICE_NAME: Final = 128
