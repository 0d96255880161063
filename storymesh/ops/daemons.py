"""`storymesh agent NAME`: every daemon that serves the mesh, found by name, and its runner.

The registry lives here, among the front ends, because the story service belongs to the
orchestration layer above the agents: the agents' own registry (`agents.registry`) knows
only agents, so no agent module ever imports the story orchestration.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from storymesh.agents.registry import FACTORIES, build_agent
from storymesh.plumbing.signals import install_signal_handlers
from storymesh.runtime.worker import run_agent
from storymesh.settings import Settings

log = logging.getLogger(__name__)

Runner = Callable[[Settings, threading.Event], int]


def _run_story(settings: Settings, stop: threading.Event) -> int:
    # three services around one engine, not a single agent
    from storymesh.story.service import run_story_service
    return run_story_service(settings.story_section(), stop)


# Daemons that are not one agent behind the worker runtime.
SERVICES: dict[str, Runner] = {"story": _run_story}
NAMES: tuple[str, ...] = (*FACTORIES, *SERVICES)


def run_named_agent(name: str, settings: Settings, stop: threading.Event | None = None) -> int:
    """Run daemon `name` until SIGTERM/SIGINT (or `stop`); returns the exit code."""
    if stop is None:
        stop = threading.Event()
        install_signal_handlers(stop)
    service = SERVICES.get(name)
    if service is not None:
        return service(settings, stop)
    agent = build_agent(name, settings)
    slots = settings.agent(name).slots
    log.info("starting agent %s (%d slot%s) for %s", name, slots, "" if slots == 1 else "s",
             settings.broker)
    return run_agent(agent, settings.peer_section(), slots=slots, stop=stop)
