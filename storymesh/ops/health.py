"""`storymesh health`: does the broker answer, and does each named service have a worker?"""

from __future__ import annotations

from storymesh.core import schema
from storymesh.runtime.client import Client
from storymesh.settings import Settings


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
