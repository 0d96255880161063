"""The deploy tier: the files an operator installs (systemd units, the example configuration,
the compose file, the Kubernetes manifests, the Dockerfile), checked offline. Every test in
this folder is marked `deploy`."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.deploy)
