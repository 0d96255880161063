"""Batching across slots: chapters that arrive together on several worker connections of one
process are served by one `handle_batch` call (one generate for several stories)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from storymesh.agents.author import AuthorAgent
from storymesh.agents.illustrator import IllustratorAgent
from storymesh.broker.server import BrokerServer
from storymesh.errors import AgentError, FatalAgentError, RequestFailed
from storymesh.runtime.agent import Agent, Final, Reply, Request
from storymesh.runtime.client import Client
from storymesh.runtime.worker import WorkerRuntime
from storymesh.settings import Settings


class CountingAgent(Agent):
    """Batches requests whose payload says so; records every batch it is given."""

    service = "count"

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.gate = threading.Event()

    def batchable(self, request: Request) -> bool:
        return bool(request.payload.get("batch"))

    def handle(self, request: Request) -> Iterator[Reply]:
        yield Final({"alone": request.payload["n"]})

    def handle_batch(self, requests: Sequence[Request]) -> list[Final | AgentError]:
        self.calls.append(len(requests))
        return [FatalAgentError("bad_request", "odd one out") if r.payload["n"] == 99
                else Final({"n": r.payload["n"], "batch": len(requests)}) for r in requests]


@contextmanager
def serving(agent: Agent, broker: BrokerServer, settings: Settings,
            slots: int) -> Iterator[tuple[WorkerRuntime, Client]]:
    """`agent` on the real worker runtime with `slots` slots, and a client of the broker."""
    stop, ready = threading.Event(), threading.Event()
    runtime = WorkerRuntime(agent, settings.peer_section(), slots=slots, stop=stop,
                            context=broker.context, ready=ready)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        with Client(broker.endpoint, settings=settings.peer_section(), context=broker.context,
                    timeout=60) as client:
            yield runtime, client
    finally:
        stop.set()
        thread.join(10)


def test_requests_arriving_together_share_one_batch_call(
        broker: BrokerServer, endpoint_settings: Settings) -> None:
    # Given an agent with 4 slots in one process
    agent = CountingAgent()
    with serving(agent, broker, endpoint_settings, 4) as (runtime, client):
        # When 4 batchable requests are pipelined, plus one that may not batch
        rids = [client.send("count", {"n": i, "batch": True}) for i in range(3)]
        bad = client.send("count", {"n": 99, "batch": True})
        alone = client.call("count", {"n": 7})
        finals = [client.result(rid).payload for rid in rids]
        # Then the batchable ones were served together, each with its own answer
        assert sorted(f["n"] for f in finals) == [0, 1, 2]
        assert max(agent.calls) >= 2
        assert sum(agent.calls) == 4
        # and one bad request in a batch fails alone, with its own error
        with pytest.raises(RequestFailed) as failed:
            client.result(bad)
        assert failed.value.code == "bad_request"
        # and a request that may not batch goes through handle() as usual
        assert alone.payload == {"alone": 7}
        assert runtime.batcher is not None
        assert runtime.batcher.batches == agent.calls


@pytest.mark.ml
def test_a_model_author_batches_chapters_of_several_stories(
        broker: BrokerServer, endpoint_settings: Settings, tiny_lm: Path) -> None:
    # Given a transformers author on a tiny random model with 3 slots
    agent = AuthorAgent(backend="transformers", model=str(tiny_lm), max_new_tokens=24)
    with serving(agent, broker, endpoint_settings, 3) as (runtime, client):
        outlines = [client.call("story.author", {"op": "outline", "plot": plot,
                                                 "chapters": 2, "seed": 1}).payload
                    for plot in ("A fox finds a lantern", "A whale learns to sing",
                                 "A robot plants a garden")]
        # When the first chapter of each of the three stories is asked for at once
        rids = [client.send("story.author", {"op": "chapter", "outline": o, "index": 0,
                                             "seed": 2}) for o in outlines]
        chapters = [client.result(rid).payload for rid in rids]
        # Then every story gets a whole chapter, and they shared generate calls
        assert all(c["text"].strip() and c["picture_prompt"] for c in chapters)
        assert runtime.batcher is not None
        assert max(runtime.batcher.batches) >= 2


@pytest.mark.ml
def test_a_diffusers_illustrator_paints_pictures_of_several_stories_in_one_call(
        broker: BrokerServer, endpoint_settings: Settings, tiny_sd: Path) -> None:
    # Given a diffusers illustrator on a tiny random pipeline with 2 slots
    agent = IllustratorAgent(backend="diffusers", model=str(tiny_sd), steps=2)
    ask = {"width": 64, "height": 64, "steps": 2}
    with serving(agent, broker, endpoint_settings, 2) as (runtime, client):
        # When two stories' pictures are asked for at once
        rids = [client.send("story.illustrator", {"prompt": prompt, "seed": seed, **ask})
                for prompt, seed in (("a fox in a forest", 5), ("a whale at sea", 6))]
        batched = [client.result(rid).payload for rid in rids]
        # Then both are PNGs of the asked size, painted in one pipeline call
        assert all(p["png"].startswith(b"\x89PNG") and p["width"] == 64 for p in batched)
        assert runtime.batcher is not None
        assert max(runtime.batcher.batches) == 2
        # and a picture painted alone from the same seed looks the same
        alone = client.call("story.illustrator",
                            {"prompt": "a fox in a forest", "seed": 5, **ask}).payload
        diff = ImageChops.difference(Image.open(io.BytesIO(alone["png"])).convert("RGB"),
                                     Image.open(io.BytesIO(batched[0]["png"])).convert("RGB"))
        assert max(high for _, high in diff.getextrema()) <= 8
