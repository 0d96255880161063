"""`storymesh agent NAME`: every daemon that serves the mesh, found by name, and its runner.

The registry lives here, among the front ends, because the story service belongs to the
orchestration layer above the agents: the agents' own registry (`agents.registry`) knows
only agents, so no agent module ever imports the story orchestration.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from storymesh.agents.registry import FACTORIES, build_agent
from storymesh.plumbing.signals import install_signal_handlers
from storymesh.runtime.metrics import Metrics
from storymesh.runtime.worker import run_agent
from storymesh.settings import Settings

log = logging.getLogger(__name__)

Runner = Callable[[Settings, threading.Event, Metrics | None], int]


@contextmanager
def metrics_endpoint(bind: str) -> Iterator[Metrics | None]:
    """An agent's Prometheus endpoint on `bind` while the block runs; None when '' (off).
    prometheus_client is imported only here, only when on."""
    if not bind:
        yield None
        return
    from storymesh.runtime.exporter import AgentExporter

    exporter = AgentExporter()
    exporter.serve(bind)
    try:
        yield exporter
    finally:
        exporter.close()


def _run_story(settings: Settings, stop: threading.Event, metrics: Metrics | None) -> int:
    # three services around one engine, not a single agent
    from storymesh.story.service import run_story_service
    return run_story_service(settings.story_section(), stop, metrics=metrics)


# Daemons that are not one agent behind the worker runtime.
SERVICES: dict[str, Runner] = {"story": _run_story}
NAMES: tuple[str, ...] = (*FACTORIES, *SERVICES)


def run_named_agent(name: str, settings: Settings, stop: threading.Event | None = None) -> int:
    """Run daemon `name` until SIGTERM/SIGINT (or `stop`); returns the exit code."""
    if stop is None:
        stop = threading.Event()
        install_signal_handlers(stop)
    service = SERVICES.get(name)
    section = settings.agent(name)
    with metrics_endpoint(section.metrics_bind) as metrics:
        if service is not None:
            return service(settings, stop, metrics)
        agent = build_agent(name, settings)
        slots = section.slots
        log.info("starting agent %s (%d slot%s) for %s", name, slots,
                 "" if slots == 1 else "s", settings.broker)
        return run_agent(agent, settings.peer_section(), slots=slots, stop=stop,
                         metrics=metrics)
