"""The broker's Prometheus endpoint: `run_broker` with `metrics_bind`, scraped over HTTP while
real echo agents register, serve requests and leave.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from storymesh.agents.echo import EchoAgent
from storymesh.broker.metrics import METRICS, parse_bind
from storymesh.broker.server import run_broker
from storymesh.errors import ConfigError
from storymesh.runtime.client import Client
from storymesh.runtime.worker import run_agent
from storymesh.settings import Settings
from tests.conftest import fast_settings

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def num(samples: Samples, name: str, **labels: str) -> float:
    found = value(samples, name, **labels)
    assert found is not None, f"no {name}{labels}"
    return found


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def eventually(url: str, check: Callable[[Samples], bool], timeout: float = 6.0) -> Samples:
    end = time.monotonic() + timeout
    while True:
        try:
            samples = scrape(url)
        except OSError:
            samples = {}
        if samples and check(samples):
            return samples
        if time.monotonic() > end:
            raise AssertionError(f"metrics never matched; last: {sorted(samples)[:60]}")
        time.sleep(0.1)


class Mesh:
    def __init__(self) -> None:
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.url = f"http://127.0.0.1:{free_port()}/metrics"
        self.settings: Settings = fast_settings(
            bind=self.endpoint, broker=self.endpoint,
            metrics_bind=self.url.split("/")[2].split(":")[1])  # port only: loopback
        self.stop_broker = threading.Event()
        self.broker = threading.Thread(target=run_broker, args=(self.settings, self.stop_broker),
                                       daemon=True)
        self.broker.start()
        self.context: zmq.Context[Any] = zmq.Context()
        self.agents: list[tuple[threading.Event, threading.Thread]] = []

    def add_echo(self, slots: int) -> threading.Event:
        stop = threading.Event()
        t = threading.Thread(target=run_agent, args=(EchoAgent(), self.settings),
                             kwargs={"slots": slots, "stop": stop, "context": self.context},
                             daemon=True)
        t.start()
        self.agents.append((stop, t))
        return stop

    def close(self) -> None:
        for stop, t in self.agents:
            stop.set()
            t.join(5)
        self.stop_broker.set()
        self.broker.join(5)
        self.context.term()


@pytest.fixture
def mesh() -> Iterator[Mesh]:
    m = Mesh()
    yield m
    m.close()


def test_metrics_have_the_documented_names_and_move_with_traffic(mesh: Mesh) -> None:
    # Given a broker serving metrics and two echo workers
    mesh.add_echo(slots=2)
    before = eventually(mesh.url, lambda s: value(s, "storymesh_service_workers",
                                                  service="echo") == 2)
    # Then every documented metric is there, with the storymesh_ prefix
    documented = set(METRICS)
    exposed = {n for n in names(before) if n.startswith("storymesh_")}
    assert documented <= exposed | {n.removesuffix("_total") for n in exposed}
    assert all(n.startswith("storymesh_") for n in documented)
    assert value(before, "storymesh_broker_up") == 1
    assert value(before, "storymesh_service_requests_served_total", service="echo") == 0
    assert not any(("id", "") in labels or "request" in dict(labels) for _, labels in before)
    workers = [dict(labels) for name, labels in before if name == "storymesh_worker_info"]
    assert len(workers) == 2
    assert {w["backend"] for w in workers} == {"builtin"}
    assert {w["host"] for w in workers} == {socket.gethostname()}

    # When requests flow through the broker
    with Client(mesh.endpoint, settings=mesh.settings) as client:
        ids = [client.send("echo", {"n": i, "sleep": 0.05}) for i in range(6)]
        for rid in ids:
            client.result(rid)
    # Then the counters and the service time move
    after = eventually(mesh.url, lambda s: value(
        s, "storymesh_service_requests_served_total", service="echo") == 6)
    assert num(after, "storymesh_broker_replies_total") >= 6
    assert num(after, "storymesh_broker_requests_total") >= 6
    assert num(after, "storymesh_service_busy_seconds_total", service="echo") >= 6 * 0.05 * 0.8
    served = sum(v for (name, _), v in after.items()
                 if name == "storymesh_worker_requests_served_total")
    assert served == 6
    assert num(after, "storymesh_broker_uptime_seconds") > num(
        before, "storymesh_broker_uptime_seconds")


def test_series_of_departed_workers_are_removed(mesh: Mesh) -> None:
    # Given two agents of one service
    mesh.add_echo(slots=1)
    leaving = mesh.add_echo(slots=1)
    both = eventually(mesh.url, lambda s: value(s, "storymesh_service_workers",
                                                service="echo") == 2)
    ids = {dict(labels)["worker"] for name, labels in both if name == "storymesh_worker_busy"}
    assert len(ids) == 2
    # When one leaves
    leaving.set()
    one = eventually(mesh.url, lambda s: value(s, "storymesh_service_workers",
                                               service="echo") == 1)
    # Then only the remaining worker has series
    left = {dict(labels)["worker"] for name, labels in one
            if name.startswith("storymesh_worker_")}
    assert len(left) == 1 and left < ids
    # And when the last one leaves, the service's series go too
    for stop, _ in mesh.agents:
        stop.set()
    gone = eventually(mesh.url, lambda s: value(s, "storymesh_service_workers",
                                                service="echo") is None)
    assert not any(name.startswith("storymesh_worker_") for name, _ in gone)


def test_every_metric_is_documented() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = [name for name in METRICS if name not in doc]
    assert not missing


@pytest.mark.parametrize(("text", "expected"), [
    ("9100", ("127.0.0.1", 9100)),
    (":9100", ("127.0.0.1", 9100)),
    ("0.0.0.0:9100", ("0.0.0.0", 9100)),
    ("[::1]:9100", ("::1", 9100)),
])
def test_metrics_bind_is_loopback_unless_a_host_is_given(text: str, expected: tuple[str, int]) -> None:
    assert parse_bind(text) == expected


@pytest.mark.parametrize("text", ["host:", "host:http", "70000", "a:b:c"])
def test_a_bad_metrics_bind_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_bind(text)
    with pytest.raises(ConfigError, match="metrics_bind"):
        fast_settings(metrics_bind=text)
