"""The HTTP gateway in tests: its settings on a free loopback port, and a running gateway in
front of an in-process mesh (`serving(mesh)`), keyed when given a keys file."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx
import zmq

from storymesh.gateway.keys import KeyRing
from storymesh.gateway.server import GatewayServer
from storymesh.settings import Settings


class MeshLike(Protocol):
    settings: Settings
    context: zmq.Context[Any]


def gateway_settings(base: Settings, **gateway: Any) -> Settings:
    """`base` with a gateway on 127.0.0.1, a free port, and the given `[gateway]` keys."""
    return dataclasses.replace(base, gateway=dataclasses.replace(
        base.gateway, http="127.0.0.1:0", **gateway))


@contextmanager
def serving(mesh: MeshLike, keys: Path | None = None, **gateway: Any) -> Iterator[GatewayServer]:
    """A gateway in front of `mesh` (sharing its zmq context); with `keys`, that keys file."""
    if keys is not None:
        gateway["api_keys"] = str(keys)
    settings = gateway_settings(mesh.settings, **gateway)
    ring = KeyRing(keys) if keys is not None else None
    with GatewayServer(settings, context=mesh.context, keys=ring) as server:
        yield server


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The gateway's error body of `response`, checked: the status, the four keys, the code."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "retryable", "retry_after"}
    assert error["code"] == code, error
    return dict(error)
