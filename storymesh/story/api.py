"""The Python API for programs: submit a story, follow it, query it, fetch the book.

    from storymesh import StoryClient
    with StoryClient("tcp://127.0.0.1:5555") as stories:
        corr = stories.submit("A brave mouse goes on an adventure", themes=["courage"])
        result = stories.wait(corr, on_event=print)        # or: for event in stories.events(corr)
        paths = stories.save(corr, "out/")                   # {"pdf": Path(...), ...}

The seed's functions keep working and run the whole mesh in this process when no broker is
given: `create_story({...})`, `get_task_status(corr)`, `get_message_history(corr)`.
"""

from __future__ import annotations

import atexit
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import zmq

from storymesh import settings as settings_mod
from storymesh.core.envelope import new_id
from storymesh.runtime.client import Client
from storymesh.settings import PeerSettings

EventCallback = Callable[[dict[str, Any]], None]


class StoryClient:
    """A client of the story services (one thread at a time, like `Client`)."""

    def __init__(self, broker: str | None = None, *, settings: PeerSettings | None = None,
                 context: zmq.Context[Any] | None = None, timeout: float | None = None) -> None:
        # no section given: the configured one (file and STORYMESH_* variables), as a program
        # that only names a broker expects
        self.settings = settings or settings_mod.load().peer_section()
        self.client = Client(broker or self.settings.broker, settings=self.settings,
                             context=context, timeout=timeout)

    def submit(self, plot: str, *, themes: list[str] | tuple[str, ...] = (),
               target_age: str | None = None, length: str | None = None,
               chapters: int | None = None, art_style: str | None = None,
               formats: list[str] | tuple[str, ...] | None = None, seed: int | None = None,
               title: str | None = None, language: str | None = None) -> str:
        """Submit a story; returns its correlation id at once (the story runs in the mesh)."""
        request: dict[str, Any] = {"plot": plot, "themes": list(themes)}
        extras = {"target_age": target_age, "length": length, "chapters": chapters,
                  "art_style": art_style, "formats": list(formats) if formats else None,
                  "seed": seed, "title": title, "language": language}
        request.update({k: v for k, v in extras.items() if v is not None})
        return self.submit_request(request)

    def submit_request(self, request: dict[str, Any], *, rid: str | None = None) -> str:
        """Submit a `story.submit` payload as a dict; returns the correlation id."""
        final = self.client.call("story.submit", request, rid=rid or new_id())
        return str(final.payload["corr"])

    def events(self, corr: str) -> Iterator[dict[str, Any]]:
        """Progress events (`event`, `index`, `done`, `total`, ...); the last one is the
        outcome (`status`, `title`, `publications`)."""
        for reply in self.client.stream("story.watch", {"corr": corr}):
            yield {**reply.payload, "final": reply.final}

    def wait(self, corr: str, on_event: EventCallback | None = None) -> dict[str, Any]:
        """Follow a story to its end; calls `on_event` per progress event; the outcome."""
        outcome: dict[str, Any] = {}
        for event in self.events(corr):
            if event["final"]:
                outcome = event
            elif on_event is not None:
                on_event(event)
        return outcome

    def _query(self, op: str, **fields: Any) -> dict[str, Any]:
        return self.client.call("story.query", {"op": op, **fields}).payload

    def status(self, corr: str) -> dict[str, Any]:
        return self._query("status", corr=corr)

    def history(self, corr: str) -> list[dict[str, Any]]:
        return list(self._query("history", corr=corr)["history"])

    def fetch(self, corr: str) -> dict[str, bytes]:
        return dict(self._query("fetch", corr=corr).get("publications") or {})

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self._query("list", limit=limit)["stories"])

    def cancel(self, corr: str) -> dict[str, Any]:
        return self._query("cancel", corr=corr)

    def save(self, corr: str, out_dir: str | Path, *,
             publications: dict[str, bytes] | None = None,
             title: str | None = None) -> dict[str, Path]:
        """Write a story's publications to `out_dir`; returns {format: path}."""
        pubs = publications if publications is not None else self.fetch(corr)
        return write_publications(pubs, out_dir, title or corr)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def slug(text: str) -> str:
    """A file-name-safe stem for a title."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return stem[:60] or "story"


def write_publications(pubs: dict[str, bytes], out_dir: str | Path, title: str) -> dict[str, Path]:
    """Write each format to `out_dir/<slug(title)>.<format>`; returns {format: path}."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt, data in sorted(pubs.items()):
        path = folder / f"{slug(title)}.{fmt}"
        path.write_bytes(data)
        paths[fmt] = path
    return paths


# --- the seed's interface -------------------------------------------------------------

class _Session:
    """The process-wide mesh behind the seed functions: in-process unless a broker is given."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mesh: Any = None
        self.broker: str | None = None

    def client(self, broker: str | None) -> StoryClient:
        with self.lock:
            if broker is not None:
                self.broker = broker
                return StoryClient(broker)
            if self.broker is not None:
                return StoryClient(self.broker)
            if self.mesh is None:
                from storymesh.story.local import LocalMesh
                self.mesh = LocalMesh(settings_mod.load()).start()
                atexit.register(self.mesh.close)
            return StoryClient(self.mesh.endpoint, settings=self.mesh.settings.peer_section(),
                               context=self.mesh.context)


_session = _Session()


def create_story(request: dict[str, Any], *, broker: str | None = None,
                 out_dir: str | Path = "storymesh-output") -> dict[str, Any]:
    """Make a whole book and wait for it. Returns {"correlation_id", "status", "title",
    "publications": {format: path}}; runs the mesh in this process when `broker` is None."""
    with _session.client(broker) as stories:
        corr = stories.submit_request(request)
        outcome = stories.wait(corr)
        pubs = outcome.get("publications") or {}
        title = outcome.get("title") or corr
        paths = write_publications(pubs, out_dir, title) if pubs else {}
    return {"correlation_id": corr, "corr": corr, "status": outcome.get("status"),
            "title": outcome.get("title"), "error": outcome.get("error"),
            "publications": {fmt: str(path) for fmt, path in paths.items()}}


def submit_story(request: dict[str, Any], *, broker: str | None = None) -> str:
    """Submit a story and return its id at once, without waiting for the book."""
    with _session.client(broker) as stories:
        return stories.submit_request(request)


def get_task_status(correlation_id: str, *, broker: str | None = None) -> dict[str, Any]:
    """The status of a story: {"status", "steps", "title", ...}."""
    with _session.client(broker) as stories:
        return stories.status(correlation_id)


def get_message_history(correlation_id: str, *, broker: str | None = None) -> list[dict[str, Any]]:
    """A story's messages: entries with sender, receiver, message_type, time, id."""
    with _session.client(broker) as stories:
        return stories.history(correlation_id)
