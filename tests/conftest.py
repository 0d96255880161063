"""Shared fixtures: settings with short heartbeats, and a real broker on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import zmq

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from storymesh import settings as settings_mod  # noqa: E402
from storymesh.broker.server import BrokerServer  # noqa: E402
from storymesh.settings import Settings  # noqa: E402


def fast_settings(**flags: object) -> Settings:
    """Settings for tests: no config file, no environment, short heartbeats."""
    base: dict[str, object] = {
        "bind": "tcp://127.0.0.1:0",
        "heartbeat_interval": 0.1,
        "liveness": 4,
        "request_timeout": 5.0,
        "service_wait": 5.0,
        "drain_grace": 2.0,
        "reconnect_max": 0.5,
    }
    base.update(flags)
    return settings_mod.load("/dev/null", env={}, flags=base)


@pytest.fixture
def settings() -> Settings:
    return fast_settings()


@pytest.fixture
def broker(settings: Settings) -> Iterator[BrokerServer]:
    """A real broker on a random loopback port, in a thread; `broker.endpoint` to connect."""
    server = BrokerServer(settings, context=zmq.Context())
    server.start()
    yield server
    server.stop()
    server.context.term()


@pytest.fixture
def endpoint_settings(broker: BrokerServer, settings: Settings) -> Settings:
    """The test settings with `broker` pointing at the running broker."""
    return settings_mod.load("/dev/null", env={}, flags={
        **{k: getattr(settings, k) for k in ("heartbeat_interval", "liveness", "request_timeout",
                                               "service_wait", "drain_grace", "reconnect_max")},
        "broker": broker.endpoint,
    })
