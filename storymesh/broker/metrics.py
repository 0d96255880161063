"""Prometheus metrics of the broker: a `/metrics` endpoint served from the broker's snapshot.

The broker loop calls `BrokerMetrics.observe(core, now)` every turn; at most once per
`every` seconds it takes `core.snapshot(now)` (in the broker thread, which owns the core)
and keeps it. A scrape, on the HTTP server's own thread, only reads the last kept snapshot,
so it never touches live broker state and costs the loop nothing. Every scrape is built
afresh from that snapshot: the series of a worker that left (or a service nobody serves
any more) simply are not there, and nothing is ever cached per departed label set.

Names carry the `storymesh_` prefix and base units (seconds, requests); labels are
`service` and `worker` (and, on `storymesh_worker_info`, what the worker announced), never
anything per request. The full list is `METRICS` below and in docs/operations.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from storymesh.plumbing.metrics_http import MetricsEndpoint
from storymesh.settings import parse_bind as parse_bind  # its home; callers import it here too

log = logging.getLogger(__name__)

DEFAULT_EVERY = 1.0  # seconds between snapshots taken for scrapes

# Broker counters exported as `storymesh_broker_<name>_total`, with their help text.
BROKER_COUNTERS: dict[str, str] = {
    "requests": "client requests received (MMI included)",
    "replies": "FINAL replies relayed from workers",
    "partials": "PARTIAL replies relayed from workers",
    "mmi": "MMI requests answered by the broker",
    "redispatched": "requests re-queued after the worker holding them was lost",
    "workers_expired": "workers dropped for heartbeat expiry",
    "malformed": "invalid messages dropped",
    "violations": "protocol violations (the worker was disconnected)",
    "unreachable": "sends that failed because the peer was gone",
    "would_block": "sends deferred because a peer's pipe was full",
    "internal_errors": "messages whose handling hit an unexpected error (a bug); logged",
    "undeliverable": "replies dropped: their client was not reading and over its backlog",
}
# Broker counters that are error replies, exported as storymesh_broker_errors_total{code}.
ERROR_COUNTERS = ("busy", "expired", "worker_lost", "no_such_service", "too_large",
                  "bad_request", "shutting_down", "internal", "not_active")

METRICS: dict[str, str] = {
    "storymesh_broker_up": "gauge: 1 while the broker serves",
    "storymesh_broker_uptime_seconds": "gauge: seconds since the broker started",
    "storymesh_broker_active": "gauge{role}: 1 while this broker serves (alone, or the active "
                               "one of a pair), 0 while passive",
    "storymesh_broker_failovers_total": "counter{role}: times this broker of a pair became "
                                        "active from passive",
    **{f"storymesh_broker_{k}_total": f"counter: {v}" for k, v in BROKER_COUNTERS.items()},
    "storymesh_broker_errors_total": "counter{code}: error FINALs the broker itself sent",
    "storymesh_service_workers": "gauge{service}: registered workers",
    "storymesh_service_workers_idle": "gauge{service}: idle workers",
    "storymesh_service_workers_busy": "gauge{service}: busy workers",
    "storymesh_service_queue_depth": "gauge{service}: requests waiting for a worker",
    "storymesh_service_requests_served_total": "counter{service}: requests answered by a worker",
    "storymesh_service_requests_failed_total": "counter{service}: requests the broker failed",
    "storymesh_service_busy_seconds_total": "counter{service}: seconds workers spent serving",
    "storymesh_worker_info": "gauge{service,worker,host,backend,model,device}: 1 per worker",
    "storymesh_worker_busy": "gauge{service,worker}: 1 while serving a request",
    "storymesh_worker_heartbeat_age_seconds": "gauge{service,worker}: seconds since heard",
    "storymesh_worker_requests_served_total": "counter{service,worker}: requests served",
}


class SnapshotSource(Protocol):
    """What `observe` needs of the broker core."""

    def snapshot(self, now: float) -> dict[str, Any]: ...


def _str(value: Any) -> str:
    return "" if value is None else str(value)


class _SnapshotCollector(Collector):
    """Builds every family from the last kept snapshot, on each scrape."""

    def __init__(self, owner: BrokerMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        snap = self.owner.latest
        if snap is None:
            return
        yield GaugeMetricFamily("storymesh_broker_up", "1 while the broker serves", value=1)
        yield GaugeMetricFamily("storymesh_broker_uptime_seconds",
                                "seconds since the broker started", value=snap["uptime"])
        yield from self._pair(snap.get("pair"))
        counters: dict[str, int] = snap.get("counters", {})
        for name, doc in BROKER_COUNTERS.items():
            yield CounterMetricFamily(f"storymesh_broker_{name}", doc,
                                      value=counters.get(name, 0))
        errors = CounterMetricFamily("storymesh_broker_errors",
                                     "error FINALs the broker itself sent", labels=["code"])
        for code in ERROR_COUNTERS:
            errors.add_metric([code], counters.get(code, 0))
        yield errors
        yield from self._services(snap.get("services", {}))
        yield from self._workers(snap.get("workers", []))

    @staticmethod
    def _pair(pair: dict[str, Any] | None) -> Iterator[Metric]:
        role = "alone" if not pair else str(pair["role"])
        active = GaugeMetricFamily("storymesh_broker_active", "1 while this broker serves, "
                                   "0 while it is the passive one of a pair", labels=["role"])
        active.add_metric([role], 1 if not pair or pair["state"] == "active" else 0)
        failovers = CounterMetricFamily("storymesh_broker_failovers", "times this broker of "
                                        "a pair became active from passive", labels=["role"])
        failovers.add_metric([role], 0 if not pair else pair["failovers"])
        yield from (active, failovers)

    @staticmethod
    def _services(services: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        gauges = {key: GaugeMetricFamily(f"storymesh_service_{name}", doc, labels=["service"])
                  for key, name, doc in (
                      ("workers", "workers", "registered workers"),
                      ("idle", "workers_idle", "idle workers"),
                      ("busy", "workers_busy", "busy workers"),
                      ("queue", "queue_depth", "requests waiting for a worker"))}
        served = CounterMetricFamily("storymesh_service_requests_served",
                                     "requests answered by a worker", labels=["service"])
        failed = CounterMetricFamily("storymesh_service_requests_failed",
                                     "requests the broker answered with an error",
                                     labels=["service"])
        busy_s = CounterMetricFamily("storymesh_service_busy_seconds",
                                     "seconds workers spent serving requests", labels=["service"])
        for name, s in services.items():
            for key, family in gauges.items():
                family.add_metric([name], s.get(key, 0))
            served.add_metric([name], s.get("served", 0))
            failed.add_metric([name], s.get("failed", 0))
            busy_s.add_metric([name], (s.get("mean_service_time") or 0.0) * s.get("served", 0))
        yield from gauges.values()
        yield from (served, failed, busy_s)

    @staticmethod
    def _workers(workers: list[dict[str, Any]]) -> Iterator[Metric]:
        info = GaugeMetricFamily("storymesh_worker_info", "what each worker announced",
                                 labels=["service", "worker", "host", "backend", "model",
                                         "device"])
        busy = GaugeMetricFamily("storymesh_worker_busy", "1 while serving a request",
                                 labels=["service", "worker"])
        age = GaugeMetricFamily("storymesh_worker_heartbeat_age_seconds",
                                "seconds since the broker last heard the worker",
                                labels=["service", "worker"])
        served = CounterMetricFamily("storymesh_worker_requests_served",
                                     "requests served by the worker", labels=["service", "worker"])
        for w in workers:
            key = [w["service"], w["id"]]
            meta = w.get("meta") or {}
            info.add_metric([*key, _str(meta.get("host")), _str(meta.get("backend")),
                             _str(meta.get("model")), _str(meta.get("device"))], 1)
            busy.add_metric(key, 1 if w.get("request") else 0)
            age.add_metric(key, w.get("heartbeat_age", 0.0))
            served.add_metric(key, w.get("served", 0))
        yield from (info, busy, age, served)


class BrokerMetrics:
    """Keeps the broker's latest snapshot and serves it as Prometheus metrics."""

    def __init__(self, every: float = DEFAULT_EVERY) -> None:
        self.every = every
        self.latest: dict[str, Any] | None = None  # replaced whole: a reference swap is atomic
        self._next = 0.0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SnapshotCollector(self))
        ProcessCollector(registry=self.registry)
        self._endpoint = MetricsEndpoint(self.registry)
        self.address: tuple[str, int] | None = None

    def observe(self, core: SnapshotSource, now: float) -> None:
        """Call from the broker thread each turn; snapshots at most once per `every` s."""
        if self.latest is None or now >= self._next:
            self._next = now + self.every
            self.latest = core.snapshot(now)

    def serve(self, bind: str) -> tuple[str, int]:
        """Start the HTTP endpoint on `bind` ([HOST:]PORT); returns the bound address."""
        self.address = self._endpoint.serve(*parse_bind(bind))
        return self.address

    def close(self) -> None:
        self._endpoint.close()
