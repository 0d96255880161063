"""What agents measure, without Prometheus: metric specs, the `Metrics` recorder interface,
the no-op recorder every agent starts with, and the runtime's own request meter.

An agent daemon serves Prometheus `/metrics` only when `metrics_bind` is set; then the
daemon builds `storymesh.runtime.exporter.AgentExporter` (the one module that imports
prometheus_client) and hands it to `run_agent`, which gives it to the agent as
`agent.metrics` before `setup()`. Otherwise `agent.metrics` is `NULL_METRICS` and every
hook costs one method call that does nothing. Agents declare the families they report
(`Agent.metric_specs`, specs from this module's vocabulary) so the series exist, at zero,
from the first scrape.

Names follow the broker's (storymesh/broker/metrics.py): the `storymesh_` prefix, base
units, counters ending `_total`. Labels are bounded: a request's `op` becomes a label only
when it is a short identifier, and each service keeps at most `OP_LIMIT` distinct ops (the
rest count as `other`), so a client cannot grow the series without bound.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Kind = Literal["counter", "gauge", "histogram"]
Reading = Iterable[tuple[Mapping[str, str], float]]  # (labels, value) pairs, read at scrape

OP_LIMIT = 16  # distinct `op` label values per service; more count as "other"
DEFAULT_OP = "default"  # requests without an `op` field (the illustrator's, the publisher's)
_OP = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                   600.0, 1800.0)
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family: its exposed name (counters end `_total`), kind, help, labels."""

    name: str
    kind: Kind
    doc: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = SECONDS_BUCKETS  # histograms only

    def exposed(self) -> tuple[str, ...]:
        """The sample names a scrape shows for this family (what a query may name)."""
        if self.kind == "histogram":
            return tuple(f"{self.name}_{s}" for s in ("bucket", "sum", "count"))
        return (self.name,)


class Metrics(Protocol):
    """Where agents and the runtime report; thread-safe (handler threads call it)."""

    address: str | None  # "host:port" of the /metrics endpoint, once it serves

    def declare(self, specs: Iterable[MetricSpec]) -> None: ...

    def inc(self, spec: MetricSpec, amount: float = 1.0, **labels: str) -> None: ...

    def observe(self, spec: MetricSpec, value: float, **labels: str) -> None: ...

    def set(self, spec: MetricSpec, value: float, **labels: str) -> None: ...

    def read(self, spec: MetricSpec, reader: Callable[[], Reading]) -> None:
        """A gauge whose values `reader()` computes at each scrape (journal counts, say)."""


class NullMetrics:
    """Metrics off: every report does nothing."""

    address: str | None = None

    def declare(self, specs: Iterable[MetricSpec]) -> None:
        pass

    def inc(self, spec: MetricSpec, amount: float = 1.0, **labels: str) -> None:
        pass

    def observe(self, spec: MetricSpec, value: float, **labels: str) -> None:
        pass

    def set(self, spec: MetricSpec, value: float, **labels: str) -> None:
        pass

    def read(self, spec: MetricSpec, reader: Callable[[], Reading]) -> None:
        pass


NULL_METRICS = NullMetrics()

# --- the families of every agent (the runtime reports them) ---------------------------------

REQUESTS = MetricSpec("storymesh_agent_requests_total", "counter",
                      "requests this agent answered, by outcome (ok, cached, or the error code)",
                      ("service", "op", "outcome"))
REQUEST_SECONDS = MetricSpec("storymesh_agent_request_seconds", "histogram",
                             "seconds from a handler taking a request to its FINAL",
                             ("service", "op"))
BUSY_SLOTS = MetricSpec("storymesh_agent_busy_slots", "gauge",
                        "worker slots serving a request now", ("service",))
SLOTS = MetricSpec("storymesh_agent_slots", "gauge", "worker slots (connections) of the agent",
                   ("service",))
MODEL_LOAD_SECONDS = MetricSpec("storymesh_agent_model_load_seconds", "gauge",
                                "seconds setup() took (loading the model)", ("service",))
INFO = MetricSpec("storymesh_agent_info", "gauge", "what the agent loaded (value 1)",
                  ("service", "backend", "model", "device"))
GPU_ALLOCATED = MetricSpec("storymesh_gpu_memory_allocated_bytes", "gauge",
                           "bytes torch holds in tensors on a CUDA device", ("device",))
GPU_RESERVED = MetricSpec("storymesh_gpu_memory_reserved_bytes", "gauge",
                          "bytes torch's caching allocator reserved on a CUDA device",
                          ("device",))

RUNTIME_SPECS = (REQUESTS, REQUEST_SECONDS, BUSY_SLOTS, SLOTS, MODEL_LOAD_SECONDS, INFO)
GPU_SPECS = (GPU_ALLOCATED, GPU_RESERVED)


def op_of(payload: Mapping[str, Any]) -> str:
    """A request's `op` as a label value: the field when it is a short identifier."""
    op = payload.get("op")
    if op is None:
        return DEFAULT_OP
    return op if isinstance(op, str) and _OP.match(op) else "other"


class RequestMeter:
    """The runtime's figures for one service: requests, their time, the busy slots."""

    def __init__(self, metrics: Metrics, service: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.service = service
        self.clock = clock
        self._ops: set[str] = set()
        self._lock = threading.Lock()

    def label(self, payload: Mapping[str, Any]) -> str:
        """The `op` label of a request, bounded to OP_LIMIT values for this service."""
        op = op_of(payload)
        with self._lock:
            if op in self._ops:
                return op
            if len(self._ops) >= OP_LIMIT:
                return "other"
            self._ops.add(op)
            return op

    def loaded(self, info: Mapping[str, Any], seconds: float, slots: int) -> None:
        self.metrics.set(MODEL_LOAD_SECONDS, seconds, service=self.service)
        self.metrics.set(SLOTS, slots, service=self.service)
        self.metrics.set(BUSY_SLOTS, 0, service=self.service)
        self.metrics.set(INFO, 1, service=self.service, backend=str(info.get("backend", "")),
                         model=str(info.get("model") or ""), device=str(info.get("device") or ""))

    def started(self) -> float:
        """A handler took a request: one more busy slot; returns the start time."""
        self.metrics.inc(BUSY_SLOTS, 1, service=self.service)
        return self.clock()

    def finished(self, op: str, outcome: str, started: float) -> None:
        self.metrics.inc(BUSY_SLOTS, -1, service=self.service)
        self.answered(op, outcome)
        self.metrics.observe(REQUEST_SECONDS, max(0.0, self.clock() - started),
                             service=self.service, op=op)

    def answered(self, op: str, outcome: str) -> None:
        """A request answered (also without a handler: a replay, a refusal)."""
        self.metrics.inc(REQUESTS, 1, service=self.service, op=op, outcome=outcome)
