"""The multi-box parts of deploy/: the KEDA ScaledObject for illustrators (a KEDA resource,
so kubernetes-validate cannot check it: its required fields are checked here), the story
services on PostgreSQL in Kubernetes and Compose, probes on every agent, and the cpu profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KEDA = DEPLOY / "kubernetes" / "keda" / "illustrator-scaledobject.yaml"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def core_manifests() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d
            for p in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for d in docs(p)}


def test_scaled_object_has_keda_required_fields_and_reads_the_broker_queue() -> None:
    (scaled,) = docs(KEDA)
    # KEDA's required fields: apiVersion/kind, a name, spec.scaleTargetRef.name, triggers
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["kind"] == "ScaledObject"
    assert scaled["metadata"]["name"]
    assert scaled["metadata"]["namespace"] == "storymesh"
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    # the target exists among the core manifests
    assert ("Deployment", target["name"]) in core_manifests()
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    meta = trigger["metadata"]
    # the Prometheus scaler's required metadata: serverAddress, query, threshold (a string)
    assert meta["serverAddress"].startswith("http")
    assert "storymesh_service_queue_depth" in meta["query"]
    assert 'service="story.illustrator"' in meta["query"]
    assert isinstance(meta["threshold"], str)
    assert float(meta["threshold"]) > 0


def test_every_agent_pod_has_readiness_and_liveness_probes_running_storymesh_health() -> None:
    pods = {name: d["spec"]["template"]["spec"]["containers"][0]
            for (kind, name), d in core_manifests().items()
            if kind in ("Deployment", "StatefulSet") and d["spec"]["template"]["spec"]
            ["containers"][0].get("args", [None])[0] == "agent"}
    assert set(pods) == {"storymesh-author", "storymesh-illustrator", "storymesh-publisher",
                         "storymesh-story"}
    for name, container in pods.items():
        for probe in ("readinessProbe", "livenessProbe"):
            command = container[probe]["exec"]["command"]
            assert command[:2] == ["storymesh", "health"], (name, probe)
            assert "--service" in command, (name, probe)


def test_kubernetes_story_services_share_a_postgresql_journal_from_a_secret() -> None:
    manifests = core_manifests()
    story = manifests[("Deployment", "storymesh-story")]
    assert story["spec"]["replicas"] >= 2
    env = {e["name"]: e for e in story["spec"]["template"]["spec"]["containers"][0]["env"]}
    ref = env["STORYMESH_JOURNAL"]["valueFrom"]["secretKeyRef"]
    secret = manifests[("Secret", ref["name"])]
    assert secret["stringData"][ref["key"]].startswith("postgresql://")
    assert ("StatefulSet", "storymesh-postgres") in manifests
    assert ("Service", "storymesh-postgres") in manifests


def test_compose_runs_two_story_services_on_postgres_and_a_cpu_profile() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    story = services["story"]
    assert story["deploy"]["replicas"] == 2
    assert story["environment"]["STORYMESH_JOURNAL"].startswith("postgresql://")
    assert story["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    # `--profile cpu` adds embedded agents and nothing that wants a GPU
    cpu = {n for n, s in services.items() if "cpu" in s.get("profiles", [])}
    always = {n for n, s in services.items() if not s.get("profiles")}
    running = {n: services[n] for n in cpu | always}
    assert {"broker-a", "broker-b", "story", "postgres", "publisher"} <= always
    assert {"author-cpu", "illustrator-cpu"} == cpu
    assert all("deploy" not in s or "resources" not in s["deploy"] for s in running.values())
    assert services["author-cpu"]["environment"]["STORYMESH_AUTHOR_BACKEND"] == "embedded"
    assert services["illustrator-cpu"]["environment"]["STORYMESH_ILLUSTRATOR_BACKEND"] == \
        "embedded"
    assert all(services[g]["profiles"] == ["gpu"] for g in ("author", "illustrator"))
