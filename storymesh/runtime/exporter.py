"""An agent daemon's Prometheus endpoint: the `Metrics` recorder backed by prometheus_client.

The only runtime module that imports prometheus_client; it is imported only when an agent's
`metrics_bind` is set. One `AgentExporter` per process and endpoint: the story service's
three runtimes share one. Families are created on `declare` (the runtime declares its own
and the agent's `metric_specs` at start, so their series are there from the first scrape)
or on first use.

Scrapes run on the HTTP server's thread and read only the metric objects (thread-safe) and
the `read` callbacks; GPU memory comes from torch at scrape time, and only when torch is
already imported and CUDA already initialised: a scrape never imports torch nor creates a
CUDA context.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from storymesh.plumbing.metrics_http import MetricsEndpoint
from storymesh.runtime.metrics import (
    GPU_ALLOCATED,
    GPU_RESERVED,
    RUNTIME_SPECS,
    MetricSpec,
    Reading,
)
from storymesh.settings import parse_bind

log = logging.getLogger(__name__)

Family = Counter | Gauge | Histogram


class _GpuCollector(Collector):
    """CUDA memory per device, from torch, read at scrape time when torch is in use."""

    def collect(self) -> Iterator[Metric]:
        torch: Any = sys.modules.get("torch")
        cuda = getattr(torch, "cuda", None)
        try:
            if cuda is None or not cuda.is_initialized():
                return
            devices = range(cuda.device_count())
            allocated = [(f"cuda:{i}", float(cuda.memory_allocated(i))) for i in devices]
            reserved = [(f"cuda:{i}", float(cuda.memory_reserved(i))) for i in devices]
        except Exception:
            log.debug("reading CUDA memory failed", exc_info=True)
            return
        for spec, values in ((GPU_ALLOCATED, allocated), (GPU_RESERVED, reserved)):
            family = GaugeMetricFamily(spec.name, spec.doc, labels=list(spec.labels))
            for device, value in values:
                family.add_metric([device], value)
            yield family


class _ReadCollector(Collector):
    """A gauge family computed by `reader()` at each scrape."""

    def __init__(self, spec: MetricSpec, reader: Callable[[], Reading]) -> None:
        self.spec = spec
        self.reader = reader

    def collect(self) -> Iterator[Metric]:
        spec = self.spec
        try:
            values = list(self.reader())
        except Exception:
            log.debug("reading %s failed", spec.name, exc_info=True)
            return
        family = GaugeMetricFamily(spec.name, spec.doc, labels=list(spec.labels))
        for labels, value in values:
            family.add_metric([str(labels.get(name, "")) for name in spec.labels], value)
        yield family


class AgentExporter:
    """`Metrics` for Prometheus, served on `serve(bind)`; `address` once serving."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` twins
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.registry.register(_GpuCollector())
        self._families: dict[str, Family] = {}
        self._lock = threading.Lock()
        self._endpoint = MetricsEndpoint(self.registry)
        self.address: str | None = None  # "host:port" as bound
        self.declare(RUNTIME_SPECS)

    # -- the Metrics interface --

    def declare(self, specs: Iterable[MetricSpec]) -> None:
        for spec in specs:
            self._family(spec)

    def inc(self, spec: MetricSpec, amount: float = 1.0, **labels: str) -> None:
        family = self._child(spec, labels)
        if isinstance(family, (Gauge, Counter)):
            family.inc(amount)

    def observe(self, spec: MetricSpec, value: float, **labels: str) -> None:
        family = self._child(spec, labels)
        if isinstance(family, Histogram):
            family.observe(value)

    def set(self, spec: MetricSpec, value: float, **labels: str) -> None:
        family = self._child(spec, labels)
        if isinstance(family, Gauge):
            family.set(value)

    def read(self, spec: MetricSpec, reader: Callable[[], Reading]) -> None:
        self.registry.register(_ReadCollector(spec, reader))

    # -- families --

    def _family(self, spec: MetricSpec) -> Family:
        with self._lock:
            family = self._families.get(spec.name)
            if family is None:
                family = self._families[spec.name] = self._create(spec)
            return family

    def _create(self, spec: MetricSpec) -> Family:
        labels, registry = list(spec.labels), self.registry
        if spec.kind == "counter":
            return Counter(spec.name.removesuffix("_total"), spec.doc, labels, registry=registry)
        if spec.kind == "histogram":
            return Histogram(spec.name, spec.doc, labels, registry=registry,
                             buckets=spec.buckets)
        return Gauge(spec.name, spec.doc, labels, registry=registry)

    def _child(self, spec: MetricSpec, labels: dict[str, str]) -> Family:
        family = self._family(spec)
        return family.labels(**labels) if spec.labels else family

    # -- the endpoint --

    def serve(self, bind: str) -> str:
        """Serve `/metrics` on `bind` ([HOST:]PORT, loopback by default); "host:port"."""
        self._endpoint.serve(*parse_bind(bind))
        self.address = self._endpoint.address
        return self.address

    def close(self) -> None:
        self._endpoint.close()
