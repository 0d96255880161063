"""The gateway tier's shared fixtures: a keys file, and an anonymous and a keyed gateway in
front of the module's own `mesh` fixture (each test module sets its agents' costs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storymesh.gateway.keys import add_key
from storymesh.gateway.server import GatewayServer
from testkit.gateway import serving
from testkit.sleepy import SleepyMesh

# a key named "None" must never be mistaken for the anonymous caller
KEY_NAMES = ("alice", "bob", "None")


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """An API keys file and the secret of each of KEY_NAMES."""
    path = tmp_path_factory.mktemp("keys") / "api-keys"
    return path, {name: add_key(path, name) for name in KEY_NAMES}


@pytest.fixture(scope="module")
def gateway(mesh: SleepyMesh) -> Iterator[GatewayServer]:
    """A gateway without keys (loopback only)."""
    with serving(mesh) as server:
        yield server


@pytest.fixture(scope="module")
def keyed(mesh: SleepyMesh, keyfile: tuple[Path, dict[str, str]]) -> Iterator[GatewayServer]:
    """A gateway that requires the keys of `keyfile`."""
    with serving(mesh, keyfile[0]) as server:
        yield server
