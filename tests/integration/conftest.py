"""Fixtures of the integration tier."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq


@pytest.fixture
def context() -> Iterator[zmq.Context[Any]]:
    """A ZeroMQ context of the test's own, destroyed (linger 0) at its end."""
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)
