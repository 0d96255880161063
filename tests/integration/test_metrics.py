"""The broker's Prometheus endpoint: `run_broker` with `metrics_bind`, scraped over HTTP while
real echo agents register, serve requests and leave.
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from storymesh.broker.metrics import METRICS, parse_bind
from storymesh.errors import ConfigError
from testkit.mesh import Mesh, fast_settings, wait_for

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


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
    """Scrape `url` until `check` holds for the samples; return them."""
    last: dict[str, Samples] = {}

    def matched() -> Samples | None:
        try:
            last["samples"] = samples = scrape(url)
        except OSError:
            return None
        return samples if samples and check(samples) else None
    return wait_for(matched, timeout, "the metrics to match", interval=0.1,
                    describe=lambda: f"last: {sorted(last.get('samples', {}))[:60]}")


@pytest.fixture
def mesh() -> Iterator[Mesh]:
    with Mesh(metrics=True) as m:
        yield m


def test_metrics_have_the_documented_names_and_move_with_traffic(mesh: Mesh) -> None:
    # Given a broker serving metrics and two echo workers
    mesh.add_echo(slots=2)
    before = eventually(mesh.metrics_url, lambda s: value(s, "storymesh_service_workers",
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
    with mesh.client() as client:
        ids = [client.send("echo", {"n": i, "sleep": 0.05}) for i in range(6)]
        for rid in ids:
            client.result(rid)
    # Then the counters and the service time move
    after = eventually(mesh.metrics_url, lambda s: value(
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
    both = eventually(mesh.metrics_url, lambda s: value(s, "storymesh_service_workers",
                                                service="echo") == 2)
    ids = {dict(labels)["worker"] for name, labels in both if name == "storymesh_worker_busy"}
    assert len(ids) == 2
    # When one leaves
    leaving.set()
    one = eventually(mesh.metrics_url, lambda s: value(s, "storymesh_service_workers",
                                               service="echo") == 1)
    # Then only the remaining worker has series
    left = {dict(labels)["worker"] for name, labels in one
            if name.startswith("storymesh_worker_")}
    assert len(left) == 1
    assert left < ids
    # And when the last one leaves, the service's series go too
    mesh.stop_agents()
    gone = eventually(mesh.metrics_url, lambda s: value(s, "storymesh_service_workers",
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
