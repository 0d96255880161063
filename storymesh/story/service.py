"""`storymesh agent story`: the three story services around one engine and one journal.

Separate worker connections per service (a few for `story.submit` and `story.query`, many
for the long-held `story.watch`), so watchers never starve submissions or queries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import zmq

from storymesh.errors import FatalAgentError
from storymesh.runtime.agent import Agent, AgentInfo, Final, Reply, Request
from storymesh.runtime.metrics import NULL_METRICS, Metrics
from storymesh.runtime.worker import run_agent
from storymesh.settings import StorySettings
from storymesh.story.engine import StoryEngine
from storymesh.story.journal import Journal
from storymesh.story.journal import open_journal as open_journal_at
from storymesh.story.metrics import watch_journal

log = logging.getLogger(__name__)

SUBMIT_SLOTS = 2
QUERY_SLOTS = 2


class _StoryAgent(Agent):
    def __init__(self, engine: StoryEngine) -> None:
        self.engine = engine

    def setup(self) -> AgentInfo:
        return AgentInfo(backend="story", extra={"instance": self.engine.instance})


class SubmitAgent(_StoryAgent):
    """`story.submit`: check a story, accept it, run it in the background."""

    service = "story.submit"

    def handle(self, request: Request) -> Iterator[Reply]:
        yield Final(self.engine.submit(request.payload, request.id, request.principal))


class WatchAgent(_StoryAgent):
    """`story.watch`: progress PARTIALs, then the FINAL with status and publications."""

    service = "story.watch"

    def handle(self, request: Request) -> Iterator[Reply]:
        yield from self.engine.watch(request.payload.get("corr"), request.cancel,
                                     request.principal, request.admin)


class QueryAgent(_StoryAgent):
    """`story.query`: status, history, fetch, chapter, picture, list, cancel."""

    service = "story.query"

    def handle(self, request: Request) -> Iterator[Reply]:
        payload, engine = request.payload, self.engine
        op = payload.get("op", "status")
        corr = payload.get("corr")
        who = (request.principal, request.admin)  # checked against the owner with keys on
        result: dict[str, Any]
        if op == "status":
            result = engine.status(corr, *who)
        elif op == "history":
            result = {"corr": corr, "history": engine.history(corr, *who)}
        elif op == "fetch":
            result = engine.fetch(corr, *who, fmt=payload.get("format"))
        elif op == "chapter":
            result = engine.chapter(corr, payload.get("index"), *who)
        elif op == "picture":
            result = engine.picture(corr, payload.get("index"), *who)
        elif op == "list":
            limit = payload.get("limit", 50)
            if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
                raise FatalAgentError("bad_request", "'limit' must be an integer in 1..1000")
            owner = payload.get("owner")
            if owner is not None and not isinstance(owner, str):
                raise FatalAgentError("bad_request", "'owner' must be a string")
            result = {"stories": engine.list(limit, *who, owner=owner)}
        elif op == "cancel":
            result = engine.cancel(corr, *who)
        else:
            raise FatalAgentError("bad_request", f"unknown op {op!r}; choose status, history, "
                                                 "fetch, chapter, picture, list or cancel")
        yield Final(result)


def open_journal(settings: StorySettings) -> Journal:
    """The journal the `journal` setting names: a SQLite file or a postgresql:// URL."""
    return open_journal_at(settings.journal)


def run_story_service(settings: StorySettings, stop: threading.Event, *,
                      context: zmq.Context[Any] | None = None,
                      journal: Journal | None = None, metrics: Metrics | None = None) -> int:
    """Serve the three story services until `stop`; returns the exit code. With `metrics`
    (an `AgentExporter`) the engine and the three runtimes report there."""
    journal = journal or open_journal(settings)
    metrics = metrics or NULL_METRICS
    watch_journal(metrics, journal)
    engine = StoryEngine(settings, journal, context=context, metrics=metrics)
    engine.start()
    plan = [(SubmitAgent(engine), SUBMIT_SLOTS), (QueryAgent(engine), QUERY_SLOTS),
            (WatchAgent(engine), settings.watch_slots)]
    codes: list[int] = []
    threads = [threading.Thread(target=lambda a=agent, n=slots: codes.append(
        run_agent(a, settings.peer, slots=n, stop=stop, context=context, metrics=metrics)),
        name=f"runtime-{agent.service}", daemon=True) for agent, slots in plan]
    for t in threads:
        t.start()
    log.info("story service %s up (journal %s)", engine.instance, journal.target)
    for t in threads:
        t.join()
    engine.close()
    journal.close()
    return max(codes, default=0)
