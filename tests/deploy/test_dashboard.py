"""deploy/grafana/storymesh.json and deploy/prometheus/alerts.yaml: valid, and every query
names only metrics the code registers (the broker's, the runtime's, every agent's and the
story service's families), so a renamed metric cannot leave a silent panel or a dead alert.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from storymesh.agents.author import AuthorAgent
from storymesh.agents.illustrator import IllustratorAgent
from storymesh.agents.publisher import PublisherAgent
from storymesh.broker.metrics import METRICS as BROKER_METRICS
from storymesh.runtime.metrics import GPU_SPECS, RUNTIME_SPECS
from storymesh.story.metrics import STORY_SPECS

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "storymesh.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
NAME = re.compile(r"\bstorymesh_[a-z0-9_]+")
DURATION = re.compile(r"^\d+[smhd]$")


def registered() -> set[str]:
    """Every sample name a storymesh /metrics can show."""
    specs = (*RUNTIME_SPECS, *GPU_SPECS, *STORY_SPECS, *AuthorAgent.metric_specs,
             *IllustratorAgent.metric_specs, *PublisherAgent.metric_specs)
    return {name for spec in specs for name in spec.exposed()} | set(BROKER_METRICS)


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return out


def test_the_dashboard_queries_only_metrics_that_exist() -> None:
    # Given the dashboard file
    dashboard = json.loads(DASHBOARD.read_text())
    known = registered()
    # Then every panel's every query names metrics the code registers
    queries = [(p["title"], t["expr"]) for p in panels(dashboard) for t in p.get("targets", [])]
    assert len(queries) >= 20
    unknown = [(title, name) for title, expr in queries for name in NAME.findall(expr)
               if name not in known]
    assert unknown == []
    # And every target queries something, under a unique panel id
    assert all(NAME.search(expr) for _, expr in queries)
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_the_dashboard_covers_what_an_operator_watches() -> None:
    text = DASHBOARD.read_text()
    for needed in ("storymesh_service_queue_depth", "storymesh_service_workers",
                   "storymesh_broker_redispatched_total", "storymesh_stories",
                   "storymesh_story_seconds_bucket", "storymesh_author_tokens_total",
                   "storymesh_author_batch_size_bucket", "storymesh_illustrator_images_total",
                   "storymesh_publisher_books_total", "storymesh_gpu_memory_allocated_bytes"):
        assert needed in text, needed


def test_the_alert_rules_are_well_formed_and_name_real_metrics() -> None:
    # Given the alert rules
    rules = yaml.safe_load(ALERTS.read_text())
    known = registered()
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    # Then each is a complete Prometheus alerting rule on metrics that exist
    for rule in alerts:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert isinstance(rule["expr"], str)
        assert rule["expr"].strip()
        assert DURATION.match(rule["for"]), rule["for"]
        assert rule["labels"]["severity"] in ("page", "warning")
        assert rule["annotations"]["summary"]
        assert [n for n in NAME.findall(rule["expr"]) if n not in known] == []
    names = {rule["alert"] for rule in alerts}
    assert {"StorymeshBrokerDown", "StorymeshServiceWithoutWorker", "StorymeshQueueGrowing",
            "StorymeshStoriesFailing"} <= names
    assert len(names) == len(alerts)
    # And where promtool is installed, Prometheus itself accepts them
    promtool = shutil.which("promtool")
    if promtool is not None:
        subprocess.run([promtool, "check", "rules", str(ALERTS)], check=True, timeout=60)
