"""The gateway's event streams across a fail-over of the broker pair: real `storymesh broker
--ha` daemons, a story service and sleepy agents as processes given both endpoints, the
gateway in a thread of this process given both too, and a client following
`/stories/{id}/events` while the active broker is SIGKILLed mid-story.

The stream must go on to `complete` with every step once: the gateway's watch moves to the
other broker (or breaks off and is opened again), and the feed drops the steps a new watch
replays.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from storymesh.gateway.server import GatewayServer
from testkit.mesh import Proc, Spawner
from testkit.pair import ProcessPair

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]

HEARTBEAT = 0.25
LIVENESS = 4
CHAPTERS = 5
WAIT = 60.0  # seconds the whole story may take, fail-over included


@pytest.fixture
def pair(spawner: Spawner) -> ProcessPair:
    return ProcessPair(spawner, heartbeat=HEARTBEAT, liveness=LIVENESS)


def spawn_mesh(pair: ProcessPair, journal: Path) -> list[Proc]:
    """A story service, an author, an illustrator and a publisher, all given both endpoints."""
    env = {"STORYMESH_JOURNAL": str(journal), "STORYMESH_STEP_TIMEOUT": "60",
           "STORYMESH_HEARTBEAT_INTERVAL": str(HEARTBEAT), "STORYMESH_LIVENESS": str(LIVENESS)}
    procs = [pair.spawner.spawn("story", "agent", "story", "--broker", pair.broker,
                                *pair.flags(), env=env)]
    for role, cost in (("author", 0.3), ("illustrator", 0.4), ("publisher", 0.1)):
        procs.append(pair.spawner.sleepy(role, pair.broker, cost, env))
    return procs


def registered(pair: ProcessPair, role: str) -> set[str]:
    snap = pair.snapshot(role) or {"workers": []}
    return {worker["service"] for worker in snap["workers"]}


class Follower(threading.Thread):
    """Reads one SSE stream to its end in a thread; `events` as they come (id, event, data)."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        super().__init__(name="sse-follower", daemon=True)
        self.client = client
        self.url = url
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        current: dict[str, Any] = {}
        try:
            with self.client.stream("GET", self.url) as response:
                assert response.status_code == 200, response.read()
                for line in response.iter_lines():
                    if line:
                        field, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        current[field] = json.loads(value) if field == "data" else value
                    elif "event" in current:
                        self.events.append(current)
                        current = {}
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            self.error = exc

    def seen(self, name: str) -> int:
        return sum(1 for e in list(self.events) if e["event"] == name)


def test_an_open_event_stream_goes_on_across_a_failover_with_nothing_lost_or_twice(
        pair: ProcessPair, spawner: Spawner, tmp_path: Path) -> None:
    # Given a pair, a mesh and a gateway all given both endpoints
    pair.start_both()
    spawn_mesh(pair, tmp_path / "journal.db")
    services = {"story.submit", "story.author", "story.illustrator", "story.publisher"}
    spawner.wait_until(lambda: services <= registered(pair, "primary"), 30.0,
                       "the mesh on the primary")
    settings = dataclasses.replace(pair.settings, gateway=dataclasses.replace(
        pair.settings.gateway, http="127.0.0.1:0"))
    with GatewayServer(settings) as gateway, \
            httpx.Client(base_url=gateway.url, timeout=WAIT) as http:
        response = http.post("/stories", json={"plot": "A fox and a kite cross the sea",
                                               "chapters": CHAPTERS})
        assert response.status_code == 202, response.text
        corr = response.json()["id"]
        # And a client following the story's events, one chapter in
        follower = Follower(http, f"/stories/{corr}/events")
        follower.start()
        spawner.wait_until(lambda: follower.seen("chapter") >= 1, 30.0, "the first chapter")
        # When the active broker is SIGKILLed mid-story
        pair.kill("primary")
        at_kill = len(follower.events)
        follower.join(WAIT)
        assert not follower.is_alive(), ("the stream did not end", follower.events,
                                         spawner.tails())
    assert follower.error is None, (follower.error, spawner.tails())
    events = follower.events
    # Then the stream went on to the end: every step once, each id once, `complete` last
    assert pair.active() == "backup"
    assert events[-1]["event"] == "complete", (events, spawner.tails())
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), ids
    steps = Counter((e["event"], e["data"].get("index")) for e in events)
    assert set(steps.values()) == {1}, steps
    expected = {("outline", None), ("publishing", None), ("complete", None),
                *(("chapter", n) for n in range(1, CHAPTERS + 1)),
                *(("picture", n) for n in range(1, CHAPTERS + 1))}
    assert expected <= set(steps), (sorted(expected - set(steps), key=str), events)
    assert set(steps) - expected <= {("picture", 0)}  # the cover, when the story has one
    # And chapters came after the kill too: the stream was live across it
    assert any(e["event"] == "chapter" for e in events[at_kill:]), (at_kill, events)
