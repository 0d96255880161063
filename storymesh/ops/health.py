"""`storymesh health`: does the broker answer, and does each named service have a worker?

Two readings of the same question:
- `check_health` asks MMI `mmi.service` per service (open to every key) and gives an exit
  code and one line for a person or a systemd/compose health check;
- `read_health` reads the broker snapshot (`mmi.storymesh.snapshot`, the admin role when
  keys are on) and `health_report` turns it into the JSON that `storymesh health --json`
  prints and the HTTP gateway's `GET /health` serves:
  `{"status": "healthy"|"degraded"|"down", "services": {NAME: {workers, idle, busy, queue}}}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from storymesh.core import schema
from storymesh.errors import RequestTimeout
from storymesh.runtime.client import Client
from storymesh.settings import Settings
from storymesh.story.local import SERVICES as STORY_SERVICES

__all__ = ["STORY_SERVICES", "HealthReport", "check_health", "health_report", "read_health"]

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
SERVICE_KEYS = ("workers", "idle", "busy", "queue")
_EXIT = {HEALTHY: schema.EXIT_OK, DEGRADED: schema.EXIT_DEGRADED, DOWN: schema.EXIT_DOWN}


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The mesh's health: a status and the worker counts of each service reported."""

    status: str
    services: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 degraded, 2 down: the codes of `storymesh health`."""
        return _EXIT[self.status]

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "services": self.services}


def health_report(snapshot: Mapping[str, Any] | None,
                  services: Sequence[str] = ()) -> HealthReport:
    """The report for a broker snapshot (None: the broker did not answer).

    With `services`, exactly those are reported and each must have a worker, else the mesh is
    degraded; without, every service the broker knows is reported and an answer is healthy.
    """
    if snapshot is None:
        return HealthReport(DOWN)
    known: Mapping[str, Mapping[str, Any]] = snapshot.get("services") or {}
    names = list(dict.fromkeys(services)) or sorted(known)
    table = {name: {key: int(known.get(name, {}).get(key, 0)) for key in SERVICE_KEYS}
             for name in names}
    degraded = any(table[name]["workers"] == 0 for name in services)
    return HealthReport(DEGRADED if degraded else HEALTHY, table)


def read_health(settings: Settings, services: Sequence[str], timeout: float) -> HealthReport:
    """Ask the broker for its snapshot (one attempt, `timeout` s) and report on `services`.

    A refusal (`forbidden` without the admin role) is raised as `RequestFailed`.
    """
    with Client(settings.broker, settings=settings.peer_section(), timeout=timeout,
                retries=1) as client:
        try:
            snapshot = client.snapshot()
        except RequestTimeout:
            snapshot = None
    return health_report(snapshot, services)


def check_health(settings: Settings, services: list[str], timeout: float) -> tuple[int, str]:
    """(exit code, reason): 0 healthy, 1 degraded (a service has no worker), 2 broker down."""
    with Client(settings.broker, settings=settings.peer_section(), timeout=timeout,
                retries=1) as client:
        missing = []
        for name in services or ["mmi.service"]:
            found = client.service_available(name)
            if found is None:
                return (
                    schema.EXIT_DOWN,
                    f"down: broker {settings.broker} did not answer within {timeout:g} s",
                )
            if not found and services:
                missing.append(name)
    if missing:
        return schema.EXIT_DEGRADED, f"degraded: no workers for {', '.join(missing)}"
    listed = f" ({', '.join(services)} served)" if services else ""
    return schema.EXIT_OK, f"healthy: broker {settings.broker} answers{listed}"
