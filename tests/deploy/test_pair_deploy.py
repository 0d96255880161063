"""The broker pair in Compose and Kubernetes: a primary and a backup whose flags load into a
valid pair configuration and point at each other's state port, and every other storymesh
daemon given both brokers' endpoints, the primary first. (The files' schemas are checked in
test_units.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from storymesh import settings as settings_mod
from storymesh.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
FLAGS = {"--bind": "STORYMESH_BIND", "--ha": "STORYMESH_HA", "--ha-bind": "STORYMESH_HA_BIND",
         "--ha-peer": "STORYMESH_HA_PEER"}


def broker_settings(argv: list[str]) -> Settings:
    """The settings `storymesh broker ARGV` runs with, through their environment variables."""
    assert argv[0] == "broker", argv
    flags = dict(zip(argv[1::2], argv[2::2], strict=True))
    return settings_mod.load("/dev/null", env={FLAGS[k]: v for k, v in flags.items() if k in FLAGS})


def host_port(endpoint: str) -> tuple[str, str]:
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    return host, port


def assert_mirrored(primary: Settings, backup: Settings, names: dict[str, str]) -> list[str]:
    """Each broker's peer is the other's name on the other's state port; the endpoints every
    other daemon must be given, the primary first."""
    assert (primary.ha, backup.ha) == ("primary", "backup")
    for one, other, role in ((primary, backup, "backup"), (backup, primary, "primary")):
        assert host_port(one.ha_peer) == (names[role], host_port(other.ha_bind)[1])
    return [f"tcp://{names[role]}:{host_port(s.bind)[1]}"
            for role, s in (("primary", primary), ("backup", backup))]


# --- compose ------------------------------------------------------------------------------

def test_compose_runs_a_primary_and_a_backup_and_gives_every_daemon_both() -> None:
    services: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    brokers = {name: broker_settings(s["command"]) for name, s in services.items()
               if s.get("command", [None])[0] == "broker"}
    assert set(brokers) == {"broker-a", "broker-b"}
    expected = assert_mirrored(brokers["broker-a"], brokers["broker-b"],
                               {"primary": "broker-a", "backup": "broker-b"})
    daemons = {name: s for name, s in services.items()
               if s.get("command", [None])[0] in ("agent", "gateway")}
    assert {"story", "author", "illustrator", "publisher", "author-cpu", "illustrator-cpu",
            "gateway"} <= set(daemons)
    for name, service in daemons.items():
        listed = service["environment"]["STORYMESH_BROKER"]
        assert settings_mod.endpoints(listed) == expected, name
        assert settings_mod.load("/dev/null", env={"STORYMESH_BROKER": listed}).broker == listed
        assert {"broker-a", "broker-b"} <= set(service["depends_on"]), name
    # each broker publishes its own host ports
    published = [p for b in brokers for p in services[b]["ports"]]
    assert len(published) == len(set(published))


# --- kubernetes ---------------------------------------------------------------------------

def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d
            for p in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d}


def pod(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc["spec"]["template"]["spec"])


def test_kubernetes_runs_the_pair_as_two_pods_on_different_nodes_each_with_a_service() -> None:
    docs = manifests()
    brokers = {name: doc for (kind, name), doc in docs.items() if kind == "Deployment"
               and pod(doc)["containers"][0]["args"][0] == "broker"}
    assert set(brokers) == {"storymesh-broker-a", "storymesh-broker-b"}
    loaded = {name: broker_settings(pod(doc)["containers"][0]["args"])
              for name, doc in brokers.items()}
    expected = assert_mirrored(loaded["storymesh-broker-a"], loaded["storymesh-broker-b"],
                               {"primary": "storymesh-broker-a", "backup": "storymesh-broker-b"})
    for name, doc in brokers.items():
        assert doc["spec"]["replicas"] == 1
        assert doc["spec"]["strategy"]["type"] == "Recreate"
        labels = doc["spec"]["template"]["metadata"]["labels"]
        # its Service (the name peers are given) selects this pod and no other, ready or not
        service = docs[("Service", name)]["spec"]
        assert service["selector"].items() <= labels.items()
        assert not service["selector"].items() <= docs[("Deployment", other(name))][
            "spec"]["template"]["metadata"]["labels"].items()
        assert service["publishNotReadyAddresses"] is True
        ports = {p["name"] for p in service["ports"]}
        assert {"mdp", "state", "metrics"} <= ports
        # never on the other's node
        (term,) = pod(doc)["affinity"]["podAntiAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"].items() <= docs[
            ("Deployment", other(name))]["spec"]["template"]["metadata"]["labels"].items()
        for probe in ("readinessProbe", "livenessProbe"):
            assert pod(doc)["containers"][0][probe]["exec"]["command"][:2] == [
                "storymesh", "health"]
    # every other storymesh pod reads the broker list from the shared ConfigMap
    listed = docs[("ConfigMap", "storymesh")]["data"]["STORYMESH_BROKER"]
    assert settings_mod.endpoints(listed) == expected
    daemons = {name: pod(doc)["containers"][0] for (kind, name), doc in docs.items()
               if kind in ("Deployment", "StatefulSet")
               and pod(doc)["containers"][0].get("args", [None])[0] in ("agent", "gateway")}
    assert {"storymesh-author", "storymesh-illustrator", "storymesh-publisher",
            "storymesh-story", "storymesh-gateway"} <= set(daemons)
    for name, container in daemons.items():
        sources = [s["configMapRef"]["name"] for s in container.get("envFrom", [])
                   if "configMapRef" in s]
        assert sources == ["storymesh"], name
        assert "STORYMESH_BROKER" not in {e["name"] for e in container.get("env", [])}, name


def other(name: str) -> str:
    return {"storymesh-broker-a": "storymesh-broker-b",
            "storymesh-broker-b": "storymesh-broker-a"}[name]
