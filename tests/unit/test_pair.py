"""The broker pair's rules on a fake clock, with no sockets: the state table, the fail-over
rule (peer silent AND a visitor), the gate in the broker core (not_active, DISCONNECT, MMI
answered), standing down, and the client's endpoint ring."""

from __future__ import annotations

import pytest

from storymesh.core import envelope, mdp
from storymesh.core.broker import BrokerCore
from storymesh.core.pair import TRANSITIONS, Pair, PEvent, PState, Role, peer_event, transition
from storymesh.runtime.timers import EndpointRing, Link, LinkTimer
from testkit.mesh import fast_settings

HB = 1.0
LIVENESS = 3
REAL = (PState.PRIMARY, PState.BACKUP, PState.ACTIVE, PState.PASSIVE)


def error_code(frames: list[mdp.Frame]) -> str:
    reply = mdp.parse_to_client(frames)
    env = envelope.unpack(reply.body)
    return str(env.payload["error"]["code"])


def started_pair(now: float = 0.0) -> tuple[Pair, Pair]:
    """A primary and a backup that have heard each other: primary ACTIVE, backup PASSIVE."""
    primary = Pair(Role.PRIMARY, HB, LIVENESS, now)
    backup = Pair(Role.BACKUP, HB, LIVENESS, now)
    primary.on_peer(PEvent.PEER_BACKUP, now)
    backup.on_peer(PEvent.PEER_ACTIVE, now)
    return primary, backup


# --- the table ----------------------------------------------------------------------------

def test_the_table_covers_every_state_and_event() -> None:
    for state in REAL:
        for event in PEvent:
            assert (state, event) in TRANSITIONS, (state, event)
            assert transition(state, event) is TRANSITIONS[(state, event)]


def test_peer_messages_are_the_four_states_and_nothing_else() -> None:
    assert peer_event(b"active") is PEvent.PEER_ACTIVE
    assert peer_event(b"passive") is PEvent.PEER_PASSIVE
    assert peer_event(b"visitor") is None
    assert peer_event(b"\xff") is None
    assert peer_event(b"") is None


def test_a_started_pair_settles_primary_active_backup_passive() -> None:
    primary, backup = started_pair()
    assert primary.state is PState.ACTIVE
    assert primary.active
    assert backup.state is PState.PASSIVE
    assert primary.failovers == backup.failovers == 0


def test_the_backup_fails_over_only_when_the_primary_is_silent_and_a_visitor_comes() -> None:
    # Given a settled pair whose primary was last heard at t=10
    _, backup = started_pair()
    backup.on_peer(PEvent.PEER_ACTIVE, 10.0)
    # When a visitor comes before liveness x interval of silence: refused
    assert backup.on_visitor(10.0 + HB * LIVENESS - 0.01) == (False, None)
    assert backup.state is PState.PASSIVE
    # When the primary stays silent past it, silence alone changes nothing
    assert backup.state is PState.PASSIVE
    assert backup.peer_silent(10.0 + HB * LIVENESS)
    # Then the first visitor after it makes the backup active
    serve, change = backup.on_visitor(10.0 + HB * LIVENESS)
    assert serve
    assert change is not None
    assert change.new is PState.ACTIVE
    assert backup.failovers == 1


def test_a_backup_that_never_heard_the_primary_never_serves() -> None:
    backup = Pair(Role.BACKUP, HB, LIVENESS, 0.0)
    assert backup.on_visitor(1000.0) == (False, None)
    assert backup.state is PState.BACKUP


def test_a_primary_alone_serves_once_its_peer_had_a_liveness_window() -> None:
    primary = Pair(Role.PRIMARY, HB, LIVENESS, 0.0)
    assert primary.on_visitor(HB * LIVENESS - 0.5) == (False, None)
    serve, change = primary.on_visitor(HB * LIVENESS)
    assert serve
    assert change is not None
    assert primary.active
    assert primary.failovers == 0  # starting up is no fail-over


def test_a_restarted_primary_comes_back_passive_and_stays_so() -> None:
    # Given the backup took over
    _, backup = started_pair()
    backup.on_visitor(HB * LIVENESS)
    assert backup.active
    # When the primary restarts and hears the active backup
    primary = Pair(Role.PRIMARY, HB, LIVENESS, 100.0)
    primary.on_peer(PEvent.PEER_ACTIVE, 100.0)
    backup.on_peer(PEvent.PEER_PRIMARY, 100.0)
    backup.on_peer(PEvent.PEER_PASSIVE, 100.5)
    # Then it is passive, refuses visitors while the backup is heard, and the backup stays
    assert primary.state is PState.PASSIVE
    for t in (100.5, 101.0, 101.5):
        primary.on_peer(PEvent.PEER_ACTIVE, t)
        assert primary.on_visitor(t + 0.1) == (False, None)
    assert backup.active
    # And it takes over again only when the backup goes silent and a visitor comes
    serve, _ = primary.on_visitor(101.5 + HB * LIVENESS)
    assert serve
    assert primary.active
    assert primary.failovers == 1


def test_a_passive_broker_serves_when_the_active_one_restarts() -> None:
    _, backup = started_pair()
    change = backup.on_peer(PEvent.PEER_PRIMARY, 5.0)
    assert change is not None
    assert change.new is PState.ACTIVE
    assert backup.failovers == 1


def test_a_healed_split_leaves_the_primary_active() -> None:
    primary, backup = started_pair()
    backup.on_visitor(HB * LIVENESS)  # the link was cut, a client came to the backup
    assert primary.active
    assert backup.active
    assert primary.on_peer(PEvent.PEER_ACTIVE, 20.0) is None
    change = backup.on_peer(PEvent.PEER_ACTIVE, 20.0)
    assert change is not None
    assert change.new is PState.PASSIVE
    assert primary.active
    assert not backup.active


def test_two_passive_brokers_resolve_to_the_primary() -> None:
    primary = Pair(Role.PRIMARY, HB, LIVENESS, 0.0)
    backup = Pair(Role.BACKUP, HB, LIVENESS, 0.0)
    primary.on_peer(PEvent.PEER_ACTIVE, 0.0)
    backup.on_peer(PEvent.PEER_ACTIVE, 0.0)
    primary.on_peer(PEvent.PEER_PASSIVE, 1.0)
    backup.on_peer(PEvent.PEER_PASSIVE, 1.0)
    assert primary.active
    assert backup.state is PState.PASSIVE


def test_two_primaries_are_a_configuration_error_that_changes_nothing() -> None:
    one = Pair(Role.PRIMARY, HB, LIVENESS, 0.0)
    assert one.on_peer(PEvent.PEER_PRIMARY, 0.0) is None
    assert one.state is PState.PRIMARY


def test_the_state_is_sent_once_per_interval() -> None:
    pair = Pair(Role.PRIMARY, HB, LIVENESS, 0.0)
    assert pair.beat(0.0) == b"primary"
    assert pair.beat(0.5) is None
    assert pair.beat(1.0) == b"primary"
    view = pair.view(1.0)
    assert view["role"] == "primary"
    assert view["state"] == "primary"
    assert view["peer"] == {"state": None, "heard_age": None, "silent": False}


# --- the gate in the broker core ----------------------------------------------------------

def core_of(role: Role) -> BrokerCore:
    settings = fast_settings(heartbeat_interval=HB, liveness=LIVENESS).broker_section()
    core = BrokerCore(settings, 0.0)
    core.set_pair(Pair(role, HB, LIVENESS, 0.0))
    return core


def request(service: bytes = b"echo", rid: str = "r1") -> list[mdp.Frame]:
    body = envelope.pack(envelope.make_header(rid), {"text": "hi"})
    return mdp.encode(mdp.ClientRequest(service, tuple(body)))


def test_a_passive_core_answers_clients_not_active_with_their_id() -> None:
    core = core_of(Role.BACKUP)
    core.on_peer_state(b"active", 0.0)
    sends = core.on_frames(b"c1", request(rid="abc"), 0.5)
    assert len(sends) == 1
    assert sends[0][0] == b"c1"
    assert error_code(sends[0][1]) == "not_active"
    assert envelope.unpack(mdp.parse_to_client(sends[0][1]).body).id == "abc"
    assert core.counters["not_active"] == 1
    assert not core.services
    # the fast path declines too
    assert core.fast_request(b"c1", b"echo", tuple(request()[3:]), 0.5) is None


def test_a_passive_core_sends_workers_away() -> None:
    core = core_of(Role.BACKUP)
    core.on_peer_state(b"active", 0.0)
    sends = core.on_frames(b"w1", mdp.encode(mdp.Ready(b"echo")), 0.5)
    assert sends == [(b"w1", mdp.encode(mdp.Disconnect()))]
    assert not core.workers


def test_a_passive_core_answers_mmi_and_stays_passive() -> None:
    core = core_of(Role.BACKUP)
    core.on_peer_state(b"active", 0.0)
    later = 100.0  # the peer is long silent: only a visitor would activate it
    sends = core.on_frames(b"m", mdp.encode(mdp.ClientRequest(b"mmi.ping", (b"",))), later)
    assert mdp.parse_to_client(sends[0][1]).body == (b"501",)
    snap = envelope.unpack(mdp.parse_to_client(core.on_frames(
        b"m", mdp.encode(mdp.ClientRequest(b"mmi.storymesh.snapshot", ())), later)[0][1]).body)
    assert snap.payload["pair"]["state"] == "passive"
    assert snap.payload["pair"]["peer"]["silent"] is True
    assert core.gated


def test_the_first_visitor_after_the_silence_is_served_by_the_new_active_core() -> None:
    # Given a passive backup whose primary was last heard at t=0, and no worker yet
    core = core_of(Role.BACKUP)
    core.on_peer_state(b"active", 0.0)
    # When a worker comes after the silence, then a client
    assert core.on_frames(b"w1", mdp.encode(mdp.Ready(b"echo")), HB * LIVENESS) == []
    sends = core.on_frames(b"c1", request(), HB * LIVENESS + 0.1)
    # Then the backup is active and dispatched the request to the worker
    assert not core.gated
    assert core.pair is not None
    assert core.pair.failovers == 1
    assert [ident for ident, _ in sends] == [b"w1"]


def test_standing_down_fails_held_requests_not_active_and_disconnects_workers() -> None:
    # Given an active core that holds a dispatched request and a queued one
    core = core_of(Role.BACKUP)
    core.on_peer_state(b"active", 0.0)
    core.on_frames(b"w1", mdp.encode(mdp.Ready(b"echo")), 10.0)
    core.on_frames(b"c1", request(rid="one"), 10.0)
    core.on_frames(b"c2", request(rid="two"), 10.0)
    assert not core.gated
    # When the primary is heard active again (a healed split)
    sends = core.on_peer_state(b"active", 11.0)
    # Then both clients get not_active, the worker DISCONNECT, and nothing is held
    by_peer = dict(sends)
    assert error_code(by_peer[b"c1"]) == error_code(by_peer[b"c2"]) == "not_active"
    assert by_peer[b"w1"] == mdp.encode(mdp.Disconnect())
    assert core.gated
    assert not core.workers
    assert not core.services
    assert core.queued() == 0


def test_a_garbled_state_message_is_counted_and_dropped() -> None:
    core = core_of(Role.PRIMARY)
    assert core.on_peer_state(b"nonsense", 0.0) == []
    assert core.counters["malformed"] == 1
    assert core.gated


# --- the client's endpoint ring and the worker's probe ------------------------------------

def test_the_ring_pings_then_moves_from_a_broker_that_never_answers() -> None:
    ring = EndpointRing(["a", "b"], HB, LIVENESS)
    ring.opened(0.0)
    assert ring.check(0.0, busy=False) is Link.WAIT
    assert ring.check(0.0, busy=True) is Link.PING
    ring.pinged(0.0)
    assert ring.check(HB - 0.01, busy=True) is Link.WAIT
    assert ring.next_due(0.5) == HB
    assert ring.check(HB, busy=True) is Link.SWITCH
    assert ring.switch(HB) == HB
    assert ring.endpoint == "b"


def test_the_ring_gives_a_broker_that_answered_the_whole_liveness_window() -> None:
    ring = EndpointRing(["a", "b"], HB, LIVENESS)
    ring.opened(0.0)
    ring.check(0.0, busy=True)
    ring.pinged(0.0)
    ring.heard(0.1)
    assert ring.check(0.5, busy=True) is Link.WAIT
    assert ring.check(1.1, busy=True) is Link.PING  # quiet for an interval: ask
    ring.pinged(1.1)
    assert ring.check(2.0, busy=True) is Link.WAIT
    assert ring.check(0.1 + HB * LIVENESS, busy=True) is Link.SWITCH


def test_an_idle_client_gives_its_broker_a_fresh_window_when_it_sends_again() -> None:
    ring = EndpointRing(["a", "b"], HB, LIVENESS)
    ring.opened(0.0)
    ring.heard(0.0)
    ring.check(0.0, busy=False)
    assert ring.check(500.0, busy=True) is Link.PING
    ring.pinged(500.0)
    assert ring.check(500.0 + HB * LIVENESS - 0.1, busy=True) is not Link.SWITCH
    assert ring.check(500.0 + HB * LIVENESS, busy=True) is Link.SWITCH


def test_the_ring_comes_back_to_a_not_active_broker_only_after_an_interval() -> None:
    ring = EndpointRing(["a", "b"], HB, LIVENESS)
    ring.not_active(5.0)
    assert ring.switch(5.0) == 5.0  # b said nothing: at once
    assert ring.switch(5.2) == 5.0 + HB  # back to a, which said not_active at 5.0
    assert ring.switches == 2


def test_the_probe_of_a_ring_fits_the_attempt_timeout() -> None:
    ring = EndpointRing(["a", "b", "c"], HB, LIVENESS, probe=0.3)
    assert ring.probe == 0.3
    assert EndpointRing(["a", "b"], HB, LIVENESS, probe=10.0).probe == HB
    with pytest.raises(ValueError, match="at least one broker endpoint is needed"):
        EndpointRing([], HB, LIVENESS)


def test_a_worker_link_that_never_heard_its_broker_expires_after_the_probe() -> None:
    timer = LinkTimer(HB, LIVENESS, probe=2 * HB)
    timer.opened(0.0)
    assert not timer.expired(2 * HB - 0.01)
    assert timer.expired(2 * HB)
    timer.opened(10.0)
    timer.heard(10.5)
    assert not timer.expired(10.5 + HB * LIVENESS - 0.01)
    assert timer.expired(10.5 + HB * LIVENESS)
    alone = LinkTimer(HB, LIVENESS)  # one broker: the whole window, as always
    alone.opened(0.0)
    assert not alone.expired(HB * LIVENESS - 0.01)
