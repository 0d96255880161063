"""The broker pair's systemd environment files: each loads into a valid pair configuration,
and the two mirror each other (each one's peer is the other's box, on the same state port)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storymesh import settings as settings_mod
from storymesh.errors import ConfigError

UNITS = Path(__file__).resolve().parents[2] / "systemd"


def env_file(name: str) -> dict[str, str]:
    lines = (UNITS / name).read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_pair_env_files_load_as_a_primary_and_its_backup() -> None:
    primary = settings_mod.load("/dev/null", env=env_file("broker-primary.env.example"))
    backup = settings_mod.load("/dev/null", env=env_file("broker-backup.env.example"))
    assert (primary.ha, backup.ha) == ("primary", "backup")
    for one, other in ((primary, backup), (backup, primary)):
        assert one.ha_bind.rsplit(":", 1)[1] == other.ha_peer.rsplit(":", 1)[1]
        assert one.ha_peer != other.ha_peer
        assert one.broker_section().ha_bind == one.ha_bind


def test_a_comma_separated_broker_list_is_a_valid_broker_setting() -> None:
    env = {"STORYMESH_BROKER": "tcp://broker-a:5555, tcp://broker-b:5555"}
    loaded = settings_mod.load("/dev/null", env=env)
    assert settings_mod.endpoints(loaded.broker) == ["tcp://broker-a:5555",
                                                     "tcp://broker-b:5555"]


def test_a_bad_endpoint_in_the_list_or_a_bad_role_is_a_configuration_error() -> None:
    for env in ({"STORYMESH_BROKER": "tcp://a:5555,udp://b:5555"}, {"STORYMESH_HA": "both"},
                {"STORYMESH_HA_PEER": "b:5556"}):
        with pytest.raises(ConfigError):
            settings_mod.load("/dev/null", env=env)
