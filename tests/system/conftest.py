"""The system tier: real `python -m storymesh` daemons, spawned, signalled and waited for,
always bounded (testkit.mesh.Spawner). Every test in this folder is marked `system`.

Heartbeats are short (HEARTBEAT x LIVENESS) so dead peers show up in well under a second. A
failed wait names what it waited for and shows the tail of every process's log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storymesh.runtime.client import Client
from storymesh.settings import Settings
from testkit.mesh import Spawner, free_endpoint, new_client

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.system)


def client(endpoint: str, *, timeout: float = 5.0, retries: int = 1) -> Client:
    """An in-process storymesh client (own context) for a spawned broker."""
    return new_client(endpoint, Settings(), timeout=timeout, retries=retries)


@pytest.fixture
def spawner(tmp_path: Path) -> Iterator[Spawner]:
    s = Spawner(tmp_path)
    yield s
    s.close()


@pytest.fixture
def endpoint() -> str:
    return free_endpoint()
