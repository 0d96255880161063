"""A broker pair of two in-process brokers on tcp loopback, with echo agents and clients given
both endpoints: the pair settles, a passive broker sends peers to the active one, a stopped
active broker hands over with nothing lost, a restarted one stays passive, and a cut state
link makes no second active broker."""

from __future__ import annotations

import io
import time

from rich.console import Console, RenderableType

from storymesh.ops.monitor import Poller, render
from storymesh.runtime.client import Client
from testkit.mesh import WAIT, wait_for
from testkit.pair import BrokerPair

LIVENESS_S = 0.1 * 4  # fast_settings: heartbeat_interval x liveness


def test_the_pair_settles_and_serves_through_the_primary() -> None:
    # Given a pair and an echo agent given both endpoints
    with BrokerPair() as pair:
        pair.wait_states("active", "passive")
        pair.add_echo()
        # When a client given both endpoints calls
        with pair.client() as client:
            reply = client.call("echo", {"text": "hi"})
        # Then the primary served it and holds the worker; the backup holds nothing
        assert reply.payload["text"] == "hi"
        wait_for(lambda: pair.workers("primary") == 1, WAIT, "the worker on the primary")
        assert pair.workers("backup") == 0
        snap = pair.snapshot("backup")
        assert snap is not None
        assert snap["pair"]["role"] == "backup"
        assert snap["pair"]["peer"]["state"] == "active"
        assert snap["pair"]["failovers"] == 0


def test_a_client_sent_to_the_passive_broker_first_is_served_by_the_active_one() -> None:
    with BrokerPair() as pair:
        pair.wait_states("active", "passive")
        pair.add_echo()
        backup_first = ",".join([pair.endpoints["backup"], pair.endpoints["primary"]])
        with Client(backup_first, settings=pair.settings.peer_section(),
                    context=pair.context, timeout=WAIT, retries=1) as client:
            assert client.call("echo", {"text": "x"}).payload["text"] == "x"
            assert client.endpoint == pair.endpoints["primary"]
        snap = pair.snapshot("backup")
        assert snap is not None
        assert snap["counters"]["not_active"] >= 1
        assert pair.pair_state("backup") == "passive"


def test_stopping_the_active_broker_moves_every_request_in_flight_to_the_other() -> None:
    # Given a pair, two echo agents and ten slow requests in flight on the primary
    with BrokerPair() as pair:
        pair.wait_states("active", "passive")
        pair.add_echo(slots=5)
        pair.add_echo(slots=5)
        wait_for(lambda: pair.workers("primary") == 10, WAIT, "ten worker slots")
        with pair.client(timeout=WAIT * 2) as client:
            rids = [client.send("echo", {"text": str(i), "sleep": 0.5}) for i in range(10)]
            time.sleep(0.1)  # let the primary dispatch them
            # When the primary stops
            pair.stop("primary")
            # Then every request completes, served by the backup, which is now active
            texts = sorted(client.result(rid).payload["text"] for rid in rids)
        assert texts == sorted(str(i) for i in range(10))
        assert pair.pair_state("backup") == "active"
        snap = pair.snapshot("backup")
        assert snap is not None
        assert snap["pair"]["failovers"] == 1
        assert snap["services"]["echo"]["workers"] == 10


def test_a_restarted_primary_stays_passive_and_takes_over_when_the_backup_stops() -> None:
    with BrokerPair() as pair:
        pair.wait_states("active", "passive")
        pair.add_echo()
        # Given the backup took over from a stopped primary
        pair.stop("primary")
        with pair.client() as client:
            client.call("echo", {"text": "a"})
        pair.wait_states(None, "active")
        # When the primary comes back
        pair.start("primary")
        pair.wait_states("passive", "active")
        # Then it stays passive while the backup serves
        with pair.client() as client:
            for _ in range(5):
                client.call("echo", {"text": "b"})
                assert pair.pair_state("primary") == "passive"
            # And when the backup stops, service moves back to it
            pair.stop("backup")
            assert client.call("echo", {"text": "c"}).payload["text"] == "c"
        pair.wait_states("active", None)
        wait_for(lambda: pair.workers("primary") == 1, WAIT, "the worker back on the primary")


def test_a_cut_state_link_makes_no_second_active_broker() -> None:
    # Given a pair whose state link runs through relays, and a client on the primary
    with BrokerPair(relay=True) as pair:
        pair.wait_states("active", "passive")
        pair.add_echo()
        with pair.client() as client:
            client.call("echo", {"text": "before"})
            # When the link is cut and stays cut for many liveness windows
            pair.cut_link()
            wait_for(lambda: (s := pair.snapshot("backup")) and s["pair"]["peer"]["silent"],
                     WAIT, "the backup to find the primary silent")
            end = time.monotonic() + 5 * LIVENESS_S
            while time.monotonic() < end:
                # Then the primary keeps serving, and the backup (polled, but visited by
                # nobody) stays passive
                assert client.call("echo", {"text": "during"}).payload["text"] == "during"
                assert pair.pair_state("backup") == "passive"
        assert pair.pair_state("primary") == "active"
        assert pair.workers("backup") == 0


def test_the_monitor_shows_both_brokers_and_the_active_ones_services() -> None:
    with BrokerPair() as pair:
        pair.wait_states("active", "passive")
        pair.add_echo()
        wait_for(lambda: pair.workers("primary") == 1, WAIT, "the worker on the primary")
        poller = Poller(pair.settings, timeout=1.0, context=pair.context)
        try:
            # Given both brokers up: the primary's services are shown
            obs = poller.poll()
            assert obs.broker == pair.endpoints["primary"]
            assert obs.snapshot is not None
            assert obs.snapshot["services"]["echo"]["workers"] == 1
            assert [(b["state"], b["up"]) for b in obs.brokers or []] == [
                ("active", True), ("passive", True)]
            assert "broker pair" in _text(render(obs))
            # When the primary stops and a client moves the service to the backup
            pair.stop("primary")
            with pair.client() as client:
                client.call("echo", {"text": "moved"})
            wait_for(lambda: pair.workers("backup") == 1, WAIT, "the worker on the backup")
            obs = poller.poll()
        finally:
            poller.close()
        # Then the backup's services are shown, the primary is down, one fail-over counted
        assert obs.broker == pair.endpoints["backup"]
        states = {b["endpoint"]: b for b in obs.brokers or []}
        assert not states[pair.endpoints["primary"]]["up"]
        assert states[pair.endpoints["backup"]]["state"] == "active"
        assert states[pair.endpoints["backup"]]["failovers"] == 1
        assert obs.as_json()["brokers"] == obs.brokers


def _text(renderable: RenderableType) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()
