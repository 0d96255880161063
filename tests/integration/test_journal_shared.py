"""Two story services on one PostgreSQL journal (a real server, tests/conftest.py), each in
its own in-process mesh (broker, sleepy agents) so that nothing but the database joins them.

What two boxes sharing a journal rely on: a watch served by one service follows a story run
by the other; when the box running a story drops out, the other takes the story over once its
lease runs out and finishes it, and no step journalled before the drop is computed again.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from storymesh.runtime.agent import Agent
from storymesh.settings import Settings
from storymesh.story.api import StoryClient
from storymesh.story.journal import StepKind, open_journal
from storymesh.story.local import LocalMesh
from testkit.mesh import fast_settings, wait_for
from testkit.postgres import PostgresCluster
from testkit.relay import TcpRelay
from testkit.sleepy import Costs, Observed, build_sleepy

pytestmark = pytest.mark.timeout(120)

LEASE_TTL = 1.5
CHAPTERS = 6
COSTS = Costs(outline=0.05, chapter=0.3, picture=0.2, publish=0.05)


class Calls:
    """How many times the agents of one mesh were asked each request id (one id per step)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def tally(self, rid: str) -> None:
        with self._lock:
            self.counts[rid] += 1


def counted(calls: Calls) -> Callable[[str], Agent]:
    """The mesh's agent factory: sleepy agents whose author and illustrator count calls."""
    def build(role: str) -> Agent:
        agent = build_sleepy(role, COSTS)
        if role == "publisher":
            return agent
        return Observed(agent, lambda request: calls.tally(request.id))
    return build


def mesh_settings() -> Settings:
    return fast_settings(lease_ttl=LEASE_TTL, step_timeout=30.0)


def stories_of(mesh: LocalMesh) -> StoryClient:
    return StoryClient(mesh.endpoint, settings=mesh.settings.peer_section(), context=mesh.context,
                       timeout=30.0)


def test_a_story_moves_to_the_other_service_when_its_box_drops_out(
        postgres: PostgresCluster, postgres_url: str) -> None:
    # Given two meshes whose story services share one PostgreSQL journal; box A reaches the
    # database through a relay the test can cut
    relay = TcpRelay(postgres.port).start()
    url_a = postgres_url.replace(f":{postgres.port}/", f":{relay.port}/")
    calls_a, calls_b = Calls(), Calls()
    with LocalMesh(mesh_settings(), journal=url_a, factory=counted(calls_a)) as box_a, \
            LocalMesh(mesh_settings(), journal=postgres_url, factory=counted(calls_b)) as box_b, \
            open_journal(postgres_url) as journal:
        # And a story submitted to box A, watched through box B
        with stories_of(box_a) as on_a:
            corr = on_a.submit("A mouse crosses two kingdoms", chapters=CHAPTERS)
        events: list[dict[str, Any]] = []
        outcome: dict[str, Any] = {}
        watcher = threading.Thread(target=lambda: outcome.update(
            _watch(box_b, corr, events.append)), daemon=True)
        watcher.start()

        # When box A has journalled two chapters and then loses the database
        def chapters_done() -> int:
            return sum(1 for s in journal.steps(corr, with_blobs=False)
                       if s.kind == StepKind.CHAPTER and s.done)
        wait_for(lambda: chapters_done() >= 2, 30, "box A's first chapters")
        relay.stop()
        finished_before = {(s.kind, s.index) for s in journal.steps(corr, with_blobs=False)
                           if s.done}
        story = journal.get_story(corr)
        assert story is not None
        assert story.lease_owner is not None
        owner_a = story.lease_owner

        # Then box B takes the story over once the lease runs out and the watch through B ends
        # with the finished book
        watcher.join(timeout=60)
        assert not watcher.is_alive(), "the watch through box B never ended"
        assert outcome["status"] == "complete", outcome
        assert outcome["publications"]

    # And the watch through B saw every step once, those box A made before the drop included
    seen = [(e["event"], e["index"]) for e in events if e["event"] != "publishing"]
    assert len(seen) == len(set(seen)) == 1 + CHAPTERS + CHAPTERS + 1
    # And box B did the rest: a takeover, not box A finishing late
    steps = journal_steps(postgres_url, corr)
    assert steps["chapter"] == CHAPTERS, steps
    assert calls_b.counts, "box B computed nothing"
    assert sum(1 for rid in calls_b.counts if ".chapter." in rid) >= CHAPTERS - 2
    assert owner_a.startswith(socket.gethostname())
    # And no step journalled before the drop was computed again, and no step more than twice
    # (a step box A had in flight when it dropped out is asked again by B: nobody journalled it)
    both = calls_a.counts + calls_b.counts
    again = {rid for rid, n in both.items() if n > 1}
    assert all(n <= 2 for n in both.values()), both
    assert all(rid in calls_a.counts and rid in calls_b.counts for rid in again)
    redone = {f"{corr}.{kind}.{index}" for kind, index in finished_before} & again
    assert not redone, (redone, again)
    assert len(again) <= 3, again  # at most what A had in flight: a chapter and two pictures


def _watch(mesh: LocalMesh, corr: str, on_event: Callable[[dict[str, Any]], None]
           ) -> dict[str, Any]:
    with stories_of(mesh) as stories:
        return stories.wait(corr, on_event=on_event)


def journal_steps(url: str, corr: str) -> Counter[str]:
    """Finished steps of each kind, read from the database after both services stopped."""
    with open_journal(url) as journal:
        return Counter(s.kind for s in journal.steps(corr, with_blobs=False) if s.done)
