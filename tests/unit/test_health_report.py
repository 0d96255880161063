"""`health_report`: a broker snapshot (a dict) in, the health JSON and exit code out."""

from __future__ import annotations

from typing import Any

from storymesh.core import schema
from storymesh.ops.health import health_report

SNAPSHOT: dict[str, Any] = {"services": {
    "story.query": {"workers": 2, "idle": 1, "busy": 1, "queue": 0, "served": 7,
                    "mean_service_time": 0.1},
    "story.author": {"workers": 0, "idle": 0, "busy": 0, "queue": 3},
}}


def test_no_snapshot_is_down() -> None:
    report = health_report(None, ["story.query"])
    assert report.as_json() == {"status": "down", "services": {}}
    assert report.exit_code == schema.EXIT_DOWN


def test_named_services_each_need_a_worker() -> None:
    # Given a snapshot where the author has no worker
    # When the query service alone is asked for: healthy, with its four counts only
    report = health_report(SNAPSHOT, ["story.query"])
    assert report.as_json() == {"status": "healthy", "services": {
        "story.query": {"workers": 2, "idle": 1, "busy": 1, "queue": 0}}}
    assert report.exit_code == schema.EXIT_OK
    # When the author and a service the broker never saw are asked for too: degraded
    report = health_report(SNAPSHOT, ["story.query", "story.author", "story.watch"])
    assert report.status == "degraded"
    assert report.exit_code == schema.EXIT_DEGRADED
    assert report.services["story.author"] == {"workers": 0, "idle": 0, "busy": 0, "queue": 3}
    assert report.services["story.watch"] == {"workers": 0, "idle": 0, "busy": 0, "queue": 0}


def test_without_names_every_service_is_listed_and_an_answer_is_healthy() -> None:
    report = health_report(SNAPSHOT)
    assert report.status == "healthy"
    assert list(report.services) == ["story.author", "story.query"]
