"""The small interface every agent implements; the runtime owns all the plumbing.

An agent names its service, loads what it needs once in `setup()` (returning what it loaded,
for the READY metadata and the monitor), serves each request in `handle()` by yielding zero
or more `Partial`s and then one `Final`, and releases its resources in `teardown()`.

`handle()` runs in a worker thread, never on the socket thread, so it may take minutes.
It raises `AgentError` (from storymesh.errors) for a request it cannot serve; the runtime
turns that into an error FINAL. Payloads are plain dicts; `bytes` values (PNGs, PDFs) are
sent as their own frames by the runtime, and arrive as `bytes`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from storymesh.errors import AgentError
from storymesh.runtime.metrics import NULL_METRICS, Metrics, MetricSpec


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """What an agent loaded, as announced in READY metadata and shown by the monitor."""

    backend: str
    model: str | None = None
    device: str | None = None
    dtype: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"backend": self.backend}
        for key in ("model", "device", "dtype"):
            value = getattr(self, key)
            if value is not None:
                meta[key] = value
        meta.update(self.extra)
        return meta


@dataclass(slots=True)
class Request:
    """One request as an agent sees it."""

    id: str
    payload: dict[str, Any]
    corr: str | None = None
    deadline: float | None = None  # absolute wall-clock seconds, or None
    principal: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    # Written by the broker with keys on: the principal's key has the admin role.
    admin: bool = False

    def expired(self, wall: float | None = None) -> bool:
        """The deadline passed at wall-clock time `wall` (default: now)."""
        now = time.time() if wall is None else wall
        return self.deadline is not None and now > self.deadline


@dataclass(frozen=True, slots=True)
class Partial:
    """A progress reply (MDP PARTIAL): streamed to the client as it is produced."""

    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Final:
    """The last reply (MDP FINAL)."""

    payload: dict[str, Any]


Reply = Partial | Final


class Agent(ABC):
    """Base class for agents; subclasses set `service` and implement `handle`."""

    service: ClassVar[str]
    # The families this agent reports besides the runtime's (declared at start, so their
    # series exist from the first scrape), and where it reports them: the runtime sets
    # `metrics` before setup() when the daemon serves /metrics; until then reports vanish.
    metric_specs: ClassVar[tuple[MetricSpec, ...]] = ()
    metrics: Metrics = NULL_METRICS

    def setup(self) -> AgentInfo:
        """Load models once, at start; return what was loaded. Errors here stop the daemon."""
        return AgentInfo(backend="builtin")

    @abstractmethod
    def handle(self, request: Request) -> Iterator[Reply]:
        """Yield Partials, then exactly one Final; raise AgentError for a bad request."""

    def batchable(self, request: Request) -> bool:
        """Whether `request` may be served together with others by `handle_batch`."""
        return False

    def handle_batch(self, requests: Sequence[Request]) -> list[Final | AgentError]:
        """Serve several batchable requests at once: one Final or AgentError per request."""
        raise NotImplementedError(f"{type(self).__name__} does not batch")

    def teardown(self) -> None:  # noqa: B027  (optional hook: most agents hold nothing)
        """Release what setup() loaded."""
