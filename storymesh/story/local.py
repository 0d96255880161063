"""In-process mode: the whole mesh (broker, author, illustrator, publisher, story service)
inside one process on `inproc://` endpoints. The same code as the daemons, no network."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import zmq

from storymesh.agents.registry import build_agent
from storymesh.broker.server import BrokerServer
from storymesh.errors import StorymeshError
from storymesh.runtime.agent import Agent
from storymesh.runtime.client import Client
from storymesh.runtime.worker import run_agent
from storymesh.settings import Settings
from storymesh.story.service import run_story_service

log = logging.getLogger(__name__)

SERVICES = ("story.author", "story.illustrator", "story.publisher", "story.submit",
            "story.query", "story.watch")


class LocalMesh:
    """`with LocalMesh(settings) as mesh:` then talk to `mesh.endpoint` with `mesh.context`."""

    def __init__(self, settings: Settings, *, journal: str | Path | None = None,
                 illustrators: int = 1, authors: int = 1, start_timeout: float = 60.0,
                 factory: Callable[[str], Agent] | None = None) -> None:
        self.context: zmq.Context[Any] = zmq.Context()
        self.endpoint = f"inproc://storymesh-{uuid.uuid4().hex[:8]}"
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if journal is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="storymesh-")
            journal = Path(self._tmp.name) / "journal.db"
        self.journal_path = Path(journal)
        self.settings = dataclasses.replace(settings, bind=self.endpoint, broker=self.endpoint,
                                            journal=str(journal))
        self.counts = {"author": authors, "illustrator": illustrators, "publisher": 1}
        # role name -> agent; the configured backends unless a caller brings its own agents
        self.factory = factory or (lambda role: build_agent(role, self.settings))
        self.start_timeout = start_timeout
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self.broker: BrokerServer | None = None

    def start(self) -> Self:
        self.broker = BrokerServer(self.settings.broker_section(), context=self.context)
        self.broker.start()
        for name, count in self.counts.items():
            for _ in range(count):
                agent = self.factory(name)
                self._spawn(f"local-{name}", run_agent, agent, self.settings.peer_section(),
                            stop=self.stop_event, context=self.context)
        self._spawn("local-story", run_story_service, self.settings.story_section(),
                    self.stop_event, context=self.context)
        self._wait_ready()
        return self

    def _spawn(self, name: str, target: Any, *args: Any, **kwargs: Any) -> None:
        def body() -> None:
            try:
                target(*args, **kwargs)
            except Exception:
                log.exception("%s stopped with an error", name)
        thread = threading.Thread(target=body, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        with Client(self.endpoint, settings=self.settings.peer_section(), context=self.context,
                    timeout=1.0, retries=1) as client:
            missing = list(SERVICES)
            while missing:
                missing = [s for s in missing if not client.service_available(s)]
                if not missing:
                    return
                if time.monotonic() > deadline:
                    self.close()
                    raise StorymeshError(f"in-process mesh did not start: no worker for "
                                         f"{', '.join(missing)}")
                time.sleep(0.02)

    def close(self) -> None:
        self.stop_event.set()
        for thread in self._threads:
            thread.join(10)
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if not self.context.closed:
            self.context.term()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
