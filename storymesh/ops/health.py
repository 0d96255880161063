"""`storymesh health`: does the broker answer, and does each named service have a worker?

Two readings of the same question:
- `check_health` asks MMI `mmi.service` per service (open to every key) and gives an exit
  code and one line for a person or a systemd/compose health check;
- `read_health` reads the broker snapshot (`mmi.storymesh.snapshot`, the admin role when
  keys are on) and `health_report` turns it into the JSON that `storymesh health --json`
  prints and the HTTP gateway's `GET /health` serves:
  `{"status": "healthy"|"degraded"|"down", "services": {NAME: {workers, idle, busy, queue}}}`.

With a list of brokers (a pair) each endpoint is asked on its own, and the mesh is as healthy
as the best of them: the active broker serving the services makes it healthy, whatever the
passive one says (it has no workers). The JSON then adds `brokers`: each endpoint's pair
state (`active`, `passive`, ..., `alone` for a broker without a pair, or `down`) and its
fail-overs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from storymesh.core import schema
from storymesh.errors import RequestTimeout
from storymesh.runtime.client import Client
from storymesh.settings import Settings, endpoints
from storymesh.story.local import SERVICES as STORY_SERVICES

__all__ = ["SERVING", "STORY_SERVICES", "HealthReport", "check_health", "health_report",
           "pair_state", "read_health"]

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
SERVICE_KEYS = ("workers", "idle", "busy", "queue")
SERVING = ("active", "alone")  # the pair states of a broker that serves the services
_EXIT = {HEALTHY: schema.EXIT_OK, DEGRADED: schema.EXIT_DEGRADED, DOWN: schema.EXIT_DOWN}


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The mesh's health: a status and the worker counts of each service reported."""

    status: str
    services: dict[str, dict[str, int]] = field(default_factory=dict)
    brokers: dict[str, dict[str, Any]] = field(default_factory=dict)  # a pair: per endpoint

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 degraded, 2 down: the codes of `storymesh health`."""
        return _EXIT[self.status]

    def as_json(self) -> dict[str, Any]:
        if self.brokers:
            return {"status": self.status, "services": self.services, "brokers": self.brokers}
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
    listed = endpoints(settings.broker)
    snapshots = {endpoint: _snapshot(settings, endpoint, timeout) for endpoint in listed}
    if len(listed) == 1:
        return health_report(snapshots[listed[0]], services)
    reports = [health_report(snap, services) for snap in snapshots.values()]
    # the active broker's report; failing that, the best any broker gives
    active = [r for r, snap in zip(reports, snapshots.values(), strict=True)
              if snap is not None and pair_state(snap) in SERVING]
    best = min(active or reports, key=lambda r: r.exit_code)
    brokers = {endpoint: {"state": "down" if snap is None else pair_state(snap),
                          "failovers": None if snap is None or not snap.get("pair")
                          else snap["pair"]["failovers"]}
               for endpoint, snap in snapshots.items()}
    return HealthReport(best.status, best.services, brokers)


def _snapshot(settings: Settings, endpoint: str, timeout: float) -> dict[str, Any] | None:
    with Client(endpoint, settings=settings.peer_section(), timeout=timeout,
                retries=1) as client:
        try:
            return client.snapshot()
        except RequestTimeout:
            return None


def pair_state(snapshot: Mapping[str, Any]) -> str:
    """A broker's pair state from its snapshot: `active`, `passive`, ..., or `alone`."""
    pair = snapshot.get("pair")
    return "alone" if not pair else str(pair.get("state"))


def check_health(settings: Settings, services: list[str], timeout: float) -> tuple[int, str]:
    """(exit code, reason): 0 healthy, 1 degraded (a service has no worker), 2 broker down.
    With a list of brokers, the best answer of any of them (the active one's)."""
    listed = endpoints(settings.broker)
    results = [_check_one(settings, endpoint, services, timeout) for endpoint in listed]
    code, reason = min(results)
    if len(listed) > 1:
        others = "; ".join(r for c, r in results if (c, r) != (code, reason))
        reason = f"{reason} (other broker: {others})" if others else reason
    return code, reason


def _check_one(settings: Settings, endpoint: str, services: list[str],
               timeout: float) -> tuple[int, str]:
    with Client(endpoint, settings=settings.peer_section(), timeout=timeout,
                retries=1) as client:
        missing = []
        for name in services or ["mmi.service"]:
            found = client.service_available(name)
            if found is None:
                return (
                    schema.EXIT_DOWN,
                    f"down: broker {endpoint} did not answer within {timeout:g} s",
                )
            if not found and services:
                missing.append(name)
    if missing:
        return schema.EXIT_DEGRADED, f"degraded: no workers for {', '.join(missing)}"
    listed = f" ({', '.join(services)} served)" if services else ""
    return schema.EXIT_OK, f"healthy: broker {endpoint} answers{listed}"
