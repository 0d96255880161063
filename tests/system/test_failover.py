"""The broker pair as real processes: `storymesh broker --ha primary|backup` daemons, agents,
story services and clients given both endpoints, and SIGKILL.

Heartbeats are 0.25 s x 4, so a broker is found dead after 1 s and the first request after a
kill must be served by the other broker within 2 x that. The two story services share one
PostgreSQL journal (a real throwaway server, tests/conftest.py), as two boxes would: a story
is owned through its lease, and the survivor takes over the killed service's stories when their
leases run out. Every wait is bounded; a failed one shows the processes' logs.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from storymesh.story.api import StoryClient
from storymesh.story.journal import open_journal
from testkit.mesh import Proc, Spawner, worker_pids
from testkit.pair import ProcessPair

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]

HEARTBEAT = 0.25
LIVENESS = 4
BOUND = 2 * LIVENESS * HEARTBEAT  # the first request after a kill is served within this


@pytest.fixture
def pair(spawner: Spawner) -> Iterator[ProcessPair]:
    p = ProcessPair(spawner, heartbeat=HEARTBEAT, liveness=LIVENESS)
    yield p
    p.cut_link()


def spawn_echo(pair: ProcessPair, slots: int = 2) -> Proc:
    return pair.spawner.spawn("echo", "agent", "echo", "--broker", pair.broker,
                              "--slots", str(slots), *pair.flags())


def spawn_story(pair: ProcessPair, env: dict[str, str]) -> Proc:
    return pair.spawner.spawn("story", "agent", "story", "--broker", pair.broker,
                              *pair.flags(), env=env)


def workers(pair: ProcessPair, role: str) -> dict[str, set[int]]:
    """service -> pids of the processes registered with the broker `role`."""
    return worker_pids(pair.snapshot(role) or {"workers": []})


def wait_workers(pair: ProcessPair, role: str, wanted: dict[str, list[int]],
                 timeout: float = 30.0) -> None:
    pair.spawner.wait_until(
        lambda: all(workers(pair, role).get(s) == set(p) for s, p in wanted.items()),
        timeout, f"workers {wanted} on the {role} broker")


def first_reply_after(pair: ProcessPair, killed_at: float) -> float:
    """Seconds from `killed_at` to the first echo reply, from a fresh client given both
    endpoints that starts asking right after the kill."""
    with pair.client(timeout=10.0) as client:
        client.call("echo", {"text": "first"})
        return time.monotonic() - killed_at


def owned_unfinished(url: str, corrs: list[str], services: list[Proc]) -> tuple[Proc, list[str]]:
    """The story service holding the leases of the most unfinished stories, and those stories
    (an instance's name carries its pid: host-PID-suffix)."""
    with open_journal(url) as journal:
        rows = [row for corr in corrs if (row := journal.get_story(corr)) and not row.done]
    owned = {s.pid: [r.corr for r in rows if f"-{s.pid}-" in (r.lease_owner or "")]
             for s in services}
    victim = max(services, key=lambda s: len(owned[s.pid]))
    return victim, owned[victim.pid]


def test_killing_the_active_broker_with_stories_in_flight_loses_none(
        pair: ProcessPair, spawner: Spawner, postgres_url: str) -> None:
    # Given a pair, two story services on one PostgreSQL journal, two authors, two
    # illustrators, a publisher and an echo agent, all given both endpoints
    env = {"STORYMESH_JOURNAL": postgres_url,
           "STORYMESH_HEARTBEAT_INTERVAL": str(HEARTBEAT), "STORYMESH_LIVENESS": str(LIVENESS),
           "STORYMESH_LEASE_TTL": "2", "STORYMESH_STEP_TIMEOUT": "60"}
    pair.start_both()
    services = [spawn_story(pair, env) for _ in range(2)]
    authors = [spawner.sleepy("author", pair.broker, 0.3, env) for _ in range(2)]
    painters = [spawner.sleepy("illustrator", pair.broker, 0.5, env) for _ in range(2)]
    publisher = spawner.sleepy("publisher", pair.broker, 0.1, env)
    echo = spawn_echo(pair)
    wait_workers(pair, "primary", {
        "story.submit": [s.pid for s in services], "story.author": [a.pid for a in authors],
        "story.illustrator": [p.pid for p in painters], "story.publisher": [publisher.pid],
        "echo": [echo.pid]})
    with StoryClient(pair.broker, settings=pair.settings.peer_section(),
                     timeout=30.0) as stories:
        corrs = [stories.submit(f"A fox and a kite number {i}", chapters=6, seed=i)
                 for i in range(4)]
        time.sleep(1.0)  # stories in flight: outlines and chapters being written
        # When the active broker is SIGKILLed
        killed_at = time.monotonic()
        pair.kill("primary")
        # Then the first request after it is served by the backup within the bound
        took = first_reply_after(pair, killed_at)
        assert took < BOUND, (took, spawner.tails())
        assert pair.active() == "backup"
        # When the story service that owns the most unfinished stories is SIGKILLed too, once
        # everyone is on the backup
        wait_workers(pair, "backup", {"story.submit": [s.pid for s in services],
                                      "story.author": [a.pid for a in authors]})
        victim, orphans = owned_unfinished(postgres_url, corrs, services)
        assert orphans, ("no unfinished story left to take over", spawner.tails())
        victim.signal(signal.SIGKILL)
        # Then every story completes: the killed service's stories taken over by the other
        outcomes = {corr: stories.wait(corr) for corr in corrs}
    assert {o["status"] for o in outcomes.values()} == {"complete"}, (outcomes, spawner.tails())
    survivor = next(s for s in services if s is not victim)
    with open_journal(postgres_url) as journal:
        for corr in orphans:  # finished by the survivor, each step saved once
            row = journal.get_story(corr)
            assert row is not None, corr
            assert row.lease_owner is None, row
            steps = journal.steps(corr, with_blobs=False)
            assert len({(s.kind, s.index) for s in steps}) == len(steps)
    assert survivor.alive()
    # And the backup counts one fail-over
    snap = pair.snapshot("backup")
    assert snap is not None
    assert snap["pair"]["failovers"] == 1


def test_a_restarted_broker_stays_passive_and_service_moves_back_when_the_other_dies(
        pair: ProcessPair, spawner: Spawner) -> None:
    # Given a pair with an echo agent, and the primary killed: the backup serves
    pair.start_both()
    echo = spawn_echo(pair)
    wait_workers(pair, "primary", {"echo": [echo.pid]})
    pair.kill("primary")
    assert first_reply_after(pair, time.monotonic()) < BOUND
    # When the primary is started again
    pair.start("primary")
    pair.wait_states("passive", "active")
    # Then it stays passive while the backup serves, for many liveness windows
    with pair.client() as client:
        end = time.monotonic() + 4 * LIVENESS * HEARTBEAT
        while time.monotonic() < end:
            assert client.call("echo", {"text": "x"}).payload["text"] == "x"
            assert pair.pair_state("primary") == "passive"
    wait_workers(pair, "backup", {"echo": [echo.pid]})
    # When the now-active backup is killed
    killed_at = time.monotonic()
    pair.kill("backup")
    # Then service moves back to the primary within the bound
    assert first_reply_after(pair, killed_at) < BOUND, spawner.tails()
    assert pair.active() == "primary"
    wait_workers(pair, "primary", {"echo": [echo.pid]})


def test_a_cut_state_link_keeps_the_primary_serving_and_the_backup_passive(
        spawner: Spawner) -> None:
    # Given a pair whose state link runs through relays, and an echo agent on the primary
    pair = ProcessPair(spawner, heartbeat=HEARTBEAT, liveness=LIVENESS, relay=True)
    try:
        pair.start_both()
        echo = spawn_echo(pair)
        wait_workers(pair, "primary", {"echo": [echo.pid]})
        # When the link is cut (both brokers up, neither hearing the other)
        pair.cut_link()
        spawner.wait_until(lambda: (s := pair.snapshot("backup")) and s["pair"]["peer"]["silent"],
                           10.0, "the backup to find the primary silent")
        # Then clients keep being served by the primary, and the backup (polled by this
        # test, visited by nobody) stays passive for many liveness windows
        with pair.client() as client:
            end = time.monotonic() + 5 * LIVENESS * HEARTBEAT
            while time.monotonic() < end:
                assert client.call("echo", {"text": "y"}).payload["text"] == "y"
                assert pair.pair_state("backup") == "passive"
                assert client.endpoint == pair.endpoints["primary"]
        assert pair.pair_state("primary") == "active"
        assert workers(pair, "backup") == {}
    finally:
        pair.cut_link()


def test_health_with_both_endpoints_is_ok_when_the_active_broker_serves(
        pair: ProcessPair, spawner: Spawner) -> None:
    pair.start_both()
    echo = spawn_echo(pair)
    wait_workers(pair, "primary", {"echo": [echo.pid]})
    args = ["health", "--broker", pair.broker, "--service", "echo", "--config", "/dev/null"]
    assert spawner.cli(*args).returncode == 0
    pair.kill("primary")
    assert first_reply_after(pair, time.monotonic()) < 10.0
    done = spawner.cli(*args)
    assert done.returncode == 0, (done.stdout, done.stderr)

