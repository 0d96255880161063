"""`storymesh agent NAME`: build the named agent, wire signals, run the worker runtime."""

from __future__ import annotations

import logging
import threading

from storymesh.agents.registry import build_agent
from storymesh.agents.runtime import run_agent
from storymesh.lifecycle import install_signal_handlers
from storymesh.settings import Settings

log = logging.getLogger(__name__)


def run_named_agent(name: str, settings: Settings, stop: threading.Event | None = None) -> int:
    """Run agent `name` until SIGTERM/SIGINT (or `stop`); returns the exit code."""
    if stop is None:
        stop = threading.Event()
        install_signal_handlers(stop)
    if name == "story":  # three services around one engine, not a single agent
        from storymesh.story.service import run_story_service
        return run_story_service(settings, stop)
    agent = build_agent(name, settings)
    slots = settings.agent(name).slots
    log.info("starting agent %s (%d slot%s) for %s", name, slots, "" if slots == 1 else "s",
             settings.broker)
    return run_agent(agent, settings, slots=slots, stop=stop)
