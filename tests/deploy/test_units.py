"""Deployment files: systemd units (`systemd-analyze verify` and the options that matter), the
example configuration and `storymesh config show`, the compose file against the Compose
Specification's JSON schema, and the Kubernetes manifests with kubernetes-validate.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from storymesh import settings as settings_mod
from storymesh.settings import AgentSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
DEPLOY = ROOT / "deploy"
EXAMPLE = ROOT / "config" / "storymesh.example.toml"
INSTALLED = "/opt/storymesh/bin/storymesh"  # where docs/deploy.md installs the console script
K8S_VERSION = "1.30.0"


def installed_storymesh() -> str:
    """The `storymesh` console script of the environment running the tests."""
    found = Path(sys.executable).parent / "storymesh"
    return str(found) if found.exists() else shutil.which("storymesh") or INSTALLED


def unit_options(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment; keys may repeat in unit files."""
    out, section = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def option(path: Path, key: str) -> list[str]:
    return [v for _, k, v in unit_options(path) if k == key]


# --- systemd ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def verify_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Copies of the units whose ExecStart points at the installed `storymesh` (verify insists
    that the binary exists)."""
    where = tmp_path_factory.mktemp("units")
    for unit in UNITS.glob("storymesh*"):
        text = unit.read_text(encoding="utf-8").replace(INSTALLED, installed_storymesh())
        (where / unit.name).write_text(text, encoding="utf-8")
    return where


@pytest.mark.parametrize("unit", ["storymesh-broker.service", "storymesh.target",
                                  "storymesh-agent@.service",
                                  "storymesh-agent@illustrator-gpu1.service",
                                  "storymesh-agent@author.service",
                                  "storymesh-gateway.service"])
def test_systemd_analyze_verify_passes(verify_dir: Path, unit: str) -> None:
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", f"./{unit}"],
                            cwd=verify_dir, capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    # verify exits 0 on warnings (an unknown key, a bad value it ignores): fail on any line
    # it prints about our units as well
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "storymesh" in line]
    assert result.returncode == 0, result.stdout + result.stderr
    assert not ours, result.stdout + result.stderr


def test_verify_catches_a_broken_unit(verify_dir: Path, tmp_path: Path) -> None:
    # the check above is only worth something if verify speaks up about mistakes
    broken = (verify_dir / "storymesh-broker.service").read_text().replace(
        "Restart=on-failure", "Restart=on-failure\nRestartt=always")
    (tmp_path / "storymesh-broker.service").write_text(broken)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no",
                             "./storymesh-broker.service"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)
    assert "Restartt" in result.stderr


@pytest.mark.parametrize("name", ["storymesh-broker.service", "storymesh-agent@.service"])
def test_daemons_are_notify_services_with_watchdog_hardening_and_restart(name: str) -> None:
    unit = UNITS / name
    assert option(unit, "Type") == ["notify"]
    assert option(unit, "NotifyAccess") == ["main"]
    assert option(unit, "WatchdogSec")
    assert option(unit, "Restart") == ["on-failure"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes")):
        assert option(unit, key) == [value], key
    assert option(unit, "ExecStart")[0].startswith(INSTALLED + " ")
    assert ("Install", "WantedBy", "storymesh.target") in unit_options(unit)


def seconds(text: str) -> float:
    units = {"min": 60, "s": 1, "h": 3600}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def test_agent_template_selects_agent_and_env_file_and_keeps_gpus_visible() -> None:
    unit = UNITS / "storymesh-agent@.service"
    assert option(unit, "ExecStart")[0].split()[1:3] == ["agent", "%i"]
    assert "-/etc/storymesh/%i.env" in option(unit, "EnvironmentFile")
    # GPU device nodes stay visible: no private /dev, no device allow-list
    assert option(unit, "PrivateDevices") in ([], ["no"])
    assert option(unit, "DevicePolicy") in ([], ["auto"])
    # the journal in the state directory, model files in the cache directory
    assert option(unit, "StateDirectory") == ["storymesh"]
    assert option(unit, "CacheDirectory") == ["storymesh"]
    env = dict(v.split("=", 1) for v in option(unit, "Environment"))
    assert env["HF_HOME"].startswith("%C/storymesh")
    assert env["STORYMESH_JOURNAL"].startswith("%S/storymesh")
    # systemd waits longer than one job: the drain grace, plus a margin
    assert seconds(option(unit, "TimeoutStopSec")[0]) > float(env["STORYMESH_DRAIN_GRACE"])


def test_example_env_file_sets_the_gpu() -> None:
    lines = (UNITS / "illustrator-gpu1.env.example").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    settings = settings_mod.load("/dev/null", env={k: v for k, v in env.items()
                                                    if k.startswith("STORYMESH_")})
    assert settings.illustrator.backend == "diffusers"
    assert settings.illustrator.device == "cuda"


@pytest.mark.parametrize("instance", ["illustrator-gpu1", "bogus-gpu1"])
def test_agent_instance_names_select_the_agent(instance: str) -> None:
    # `storymesh agent illustrator-gpu1` is the illustrator; a bad prefix is named in the error
    result = subprocess.run([sys.executable, "-m", "storymesh", "agent", instance,
                             "--config", "/dev/null", "--backend", "nonsense"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "STORYMESH_BROKER": "tcp://127.0.0.1:1"})
    assert result.returncode == 2
    kind = instance.partition("-")[0]
    if kind == "bogus":
        assert "unknown agent 'bogus'" in result.stderr
    else:
        assert "nonsense" in result.stderr
        assert "unknown agent" not in result.stderr


# --- configuration ----------------------------------------------------------------------------

def test_example_config_documents_every_key_at_its_default() -> None:
    loaded = settings_mod.load(EXAMPLE, env={})
    # every value in it is the default (so the file tells the truth about defaults) ...
    assert loaded == Settings()
    # ... every top-level key is set in it ...
    top = {f.name for f in fields(Settings)} - {"sources", "gateway",
                                                 *settings_mod.AGENT_SECTIONS}
    from_file = {k for k, _, source in settings_mod.describe(loaded) if source == str(EXAMPLE)}
    assert top <= from_file, sorted(top - from_file)
    # ... every key of the [gateway] table is set in it ...
    gateway = {f"gateway.{f.name}" for f in fields(settings_mod.GatewaySettings)}
    assert gateway <= from_file, sorted(gateway - from_file)
    # ... and every agent key is set in at least one agent table
    agent_keys = {k.split(".", 1)[1] for k in from_file
                  if "." in k and not k.startswith("gateway.")}
    assert {f.name for f in fields(AgentSettings)} <= agent_keys


def config_show(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STORYMESH_")}
    return subprocess.run([sys.executable, "-m", "storymesh", "config", "show", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
                          env={**clean, **(env or {})})


def test_config_show_prints_values_and_where_they_came_from(tmp_path: Path) -> None:
    # Given a file, an environment variable and (through the file) an agent table
    config = tmp_path / "storymesh.toml"
    config.write_text('liveness = 5\nmetrics_bind = "9100"\n[illustrator]\ndevice = "cuda"\n')
    result = config_show("--json", "--config", str(config),
                         env={"STORYMESH_LIVENESS": "6", "STORYMESH_HEARTBEAT_INTERVAL": "1.5"})
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["liveness"] == {"value": 6, "source": "environment"}
    assert shown["heartbeat_interval"] == {"value": 1.5, "source": "environment"}
    assert shown["metrics_bind"] == {"value": "9100", "source": str(config)}
    assert shown["illustrator.device"] == {"value": "cuda", "source": str(config)}
    assert shown["queue_limit"] == {"value": 1000, "source": "default"}


def test_config_show_rejects_a_bad_value_in_one_line() -> None:
    result = config_show("--config", "/dev/null", env={"STORYMESH_METRICS_BIND": "nine"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [(
        "storymesh: configuration error: invalid value 'nine' for metrics_bind "
        "(from environment): must be empty (off), PORT or HOST:PORT")]


# --- containers -------------------------------------------------------------------------------

def compose_validator() -> jsonschema.Draft201909Validator:
    schema = json.loads((DEPLOY / "schema" / "compose-spec.json").read_text())
    return jsonschema.Draft201909Validator(schema)


def test_compose_file_follows_the_compose_specification() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    errors = [f"{list(e.path)}: {e.message}" for e in compose_validator().iter_errors(compose)]
    assert not errors
    services = compose["services"]
    assert {"broker-a", "broker-b", "story", "author", "illustrator", "publisher"} <= set(services)
    for gpu in ("author", "illustrator"):
        devices = services[gpu]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in services["publisher"]
    for broker in ("broker-a", "broker-b"):
        assert services[broker]["healthcheck"]["test"][1:3] == ["storymesh", "health"]


def test_compose_schema_rejects_a_mistake() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    compose["services"]["broker-a"]["restart_policy"] = "always"  # not a service key
    assert list(compose_validator().iter_errors(compose))


def manifests() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
            for path in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_kubernetes_manifests_validate() -> None:
    docs = manifests()
    assert {"Deployment", "Service", "StatefulSet", "ConfigMap", "Namespace"} <= {
        d["kind"] for _, d in docs}
    for name, doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{name}: {exc}") from None
    gpu = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["resources"]
           for _, d in docs if d["kind"] == "Deployment"}
    assert gpu["storymesh-illustrator"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in gpu["storymesh-publisher"].get("limits", {})


def test_kubernetes_validate_rejects_a_mistake() -> None:
    _, doc = next((n, d) for n, d in manifests() if d["kind"] == "Deployment")
    doc["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_dockerfile_runs_storymesh_as_an_unprivileged_user() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    assert any(line.startswith("FROM python:3.11") for line in lines)
    assert "USER storymesh" in lines
    assert 'ENTRYPOINT ["storymesh"]' in lines
    copied = [line.split()[1:-1] for line in lines if line.startswith("COPY ")]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), source
