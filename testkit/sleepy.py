"""Sleep-based story agents with a set cost per step, for tests and benchmarks.

`SleepyAuthor`, `SleepyIllustrator` and `SleepyPublisher` serve the same services and the
same payload keys as the real agents (DESIGN.md section 4), but each step only sleeps for its
configured cost and returns a small, valid answer: an outline and chapters with the keys the
story pipeline reads, a tiny PNG, a few bytes per publication format. So a test or a benchmark
can set how long every step takes and check how the story service schedules them.

Each agent logs `start <op> <request id>` and `done <op> <request id>` at INFO, so a system
test can see from a process's log what it was doing when it was killed.

Two ways to run them:
- in one process: `SleepyMesh(settings, costs, illustrators=2)`, a broker, the sleepy agents
  and the story service in threads on an `inproc://` endpoint (like `LocalMesh`);
- as a daemon: `python -m testkit.sleepy illustrator --broker EP --cost 1.0`.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storymesh import vocabulary
from storymesh.errors import FatalAgentError, StorymeshError
from storymesh.runtime.agent import Agent, AgentInfo, Final, Partial, Reply, Request
from storymesh.runtime.worker import run_agent
from storymesh.settings import Settings
from storymesh.story.local import LocalMesh

log = logging.getLogger(__name__)

ROLES = ("author", "illustrator", "publisher")
PNG_SIDE = 16  # pixels: tiny, but a real PNG every publisher can embed


@dataclass(frozen=True, slots=True)
class Costs:
    """Seconds each step sleeps."""

    outline: float = 0.2
    chapter: float = 0.5
    picture: float = 1.0
    publish: float = 0.3

    def critical_path(self, chapters: int) -> float:
        """The fastest a story can be with enough illustrators: outline, every chapter
        written in order, the last chapter's picture, publishing."""
        return self.outline + chapters * self.chapter + self.picture + self.publish


def _sleep(request: Request, seconds: float) -> None:
    """Sleep, but stop early (with an error the runtime reports) if the request is cancelled."""
    if seconds > 0 and request.cancel.wait(seconds):
        raise FatalAgentError("cancelled", "the request was cancelled while it slept")


def tiny_png(seed: int = 0) -> bytes:
    """A PNG_SIDE x PNG_SIDE PNG whose colour depends on `seed`."""
    from PIL import Image  # Pillow: a core dependency, imported only when a picture is made

    colour = (seed * 67 % 256, seed * 131 % 256, seed * 29 % 256)
    buffer = io.BytesIO()
    Image.new("RGB", (PNG_SIDE, PNG_SIDE), colour).save(buffer, format="PNG")
    return buffer.getvalue()


class _Sleepy(Agent):
    def __init__(self, costs: Costs) -> None:
        self.costs = costs

    def setup(self) -> AgentInfo:
        return AgentInfo(backend="sleepy", extra={"costs": dataclasses.asdict(self.costs)})

    def _step(self, request: Request, op: str, seconds: float) -> None:
        log.info("start %s %s", op, request.id)
        _sleep(request, seconds)
        log.info("done %s %s", op, request.id)


class SleepyAuthor(_Sleepy):
    """`story.author`: an outline of `chapters` chapters, then chapters, after set sleeps."""

    service = "story.author"

    def handle(self, request: Request) -> Iterator[Reply]:
        payload = request.payload
        op = payload.get("op")
        if op == "outline":
            chapters = vocabulary.int_field(payload, "chapters", 1, vocabulary.MAX_CHAPTERS)
            self._step(request, "outline", self.costs.outline)
            yield Partial({"text": "An outline.\n"})
            yield Final(self._outline(str(payload.get("plot", "")), chapters))
        elif op == "chapter":
            index = vocabulary.int_field(payload, "index", 0, vocabulary.MAX_CHAPTERS)
            self._step(request, f"chapter-{index}", self.costs.chapter)
            yield Partial({"text": f"Chapter {index + 1}. "})
            yield Final({"title": f"Chapter {index + 1}",
                         "text": f"This is chapter {index + 1}. The mouse walked on.\n\n"
                                 "And then the day was over.",
                         "picture_prompt": f"a mouse in scene {index + 1}"})
        else:
            raise vocabulary.bad(f"unknown op {op!r}; choose outline or chapter")

    @staticmethod
    def _outline(plot: str, chapters: int) -> dict[str, Any]:
        return {"title": "The Sleepy Mouse",
                "characters": [{"name": "Mo", "look": "a small grey mouse"}],
                "chapters": [{"title": f"Chapter {i + 1}", "plan": f"{plot[:40]} (part {i + 1})"}
                             for i in range(chapters)],
                "cover_prompt": "a small grey mouse on a hill"}


class SleepyIllustrator(_Sleepy):
    """`story.illustrator`: a tiny PNG after a set sleep."""

    service = "story.illustrator"

    def setup(self) -> AgentInfo:
        tiny_png()  # import Pillow now: a first picture must cost its sleep, not an import
        return super().setup()

    def handle(self, request: Request) -> Iterator[Reply]:
        payload = request.payload
        vocabulary.text_field(payload, "prompt", vocabulary.MAX_PROMPT_CHARS, required=True)
        seed = vocabulary.seed_field(payload, low=0)
        self._step(request, "picture", self.costs.picture)
        yield Final({"width": PNG_SIDE, "height": PNG_SIDE, "seed": seed, "backend": "sleepy",
                     "png": tiny_png(seed)})


class SleepyPublisher(_Sleepy):
    """`story.publisher`: a few bytes per requested format after a set sleep."""

    service = "story.publisher"

    def handle(self, request: Request) -> Iterator[Reply]:
        payload = request.payload
        formats = vocabulary.formats_field(payload)
        chapters = vocabulary.list_field(payload, "chapters", vocabulary.MAX_CHAPTERS,
                                         required=True)
        self._step(request, "publish", self.costs.publish)
        title = str(payload.get("title", ""))
        yield Final({"publications": {fmt: f"{fmt}: {title}, {len(chapters)} chapters".encode()
                                      for fmt in formats}})


def build_sleepy(role: str, costs: Costs) -> Agent:
    """The sleepy agent for `role` (author, illustrator or publisher)."""
    kinds: dict[str, type[_Sleepy]] = {"author": SleepyAuthor, "illustrator": SleepyIllustrator,
                                        "publisher": SleepyPublisher}
    if role not in kinds:
        raise StorymeshError(f"unknown sleepy role {role!r}; choose one of {', '.join(ROLES)}")
    return kinds[role](costs)


class Observed(Agent):
    """Wraps an agent and shows `seen` every request before the agent handles it (a test
    counts calls per request id, or records principals)."""

    def __init__(self, inner: Agent, seen: Callable[[Request], object]) -> None:
        self.inner = inner
        self.seen = seen
        self.service = inner.service  # type: ignore[misc]

    def setup(self) -> AgentInfo:
        return self.inner.setup()

    def handle(self, request: Request) -> Iterator[Reply]:
        self.seen(request)
        yield from self.inner.handle(request)

    def teardown(self) -> None:
        self.inner.teardown()


class SleepyMesh(LocalMesh):
    """Broker, sleepy agents and the story service in threads of this process (inproc).

    `with SleepyMesh(settings, Costs(...), illustrators=2) as mesh:` then talk to
    `mesh.endpoint` with `mesh.context`; `mesh.journal_path` is the story journal.
    """

    def __init__(self, settings: Settings, costs: Costs, *, illustrators: int = 1,
                 journal: str | Path | None = None, start_timeout: float = 30.0) -> None:
        super().__init__(settings, journal=journal, illustrators=illustrators,
                         start_timeout=start_timeout,
                         factory=lambda role: build_sleepy(role, costs))
        self.costs = costs


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m testkit.sleepy ROLE --broker EP --cost S`: one sleepy daemon."""
    from storymesh import settings as settings_mod
    from storymesh.plumbing.logs import setup_logging
    from storymesh.plumbing.signals import install_signal_handlers

    parser = argparse.ArgumentParser(prog="python -m testkit.sleepy",
                                     description="Run a sleep-based story agent.")
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("--broker", help="broker endpoint to connect to")
    parser.add_argument("--config", help="TOML settings file")
    parser.add_argument("--cost", type=float, default=None,
                        help="seconds per step (all ops of this role)")
    parser.add_argument("--log-level", default=None)
    args = parser.parse_args(argv)
    settings = settings_mod.load(args.config, flags={"broker": args.broker,
                                                     "log_level": args.log_level})
    setup_logging(settings.log_level, settings.log_format)
    costs = Costs()
    if args.cost is not None:
        costs = Costs(outline=args.cost, chapter=args.cost, picture=args.cost,
                      publish=args.cost)
    stop = threading.Event()
    install_signal_handlers(stop)
    return run_agent(build_sleepy(args.role, costs), settings.peer_section(), stop=stop)


if __name__ == "__main__":
    # Run the imported module's main, so loggers and classes carry their package names.
    from testkit.sleepy import main as _main
    raise SystemExit(_main())
