"""CurveZMQ end to end in one process over TCP loopback (CURVE does not apply to inproc):
a keyed broker, workers and clients with their own key files, the allow-list and roles,
a man-in-the-middle relay that records the bytes on the wire, reload of the allow-list,
and the story service keeping each key's stories private.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from storymesh.core import envelope, mdp
from storymesh.errors import ConfigError, RequestFailed, RequestTimeout
from storymesh.runtime.agent import Agent, AgentInfo, Final, Reply, Request
from storymesh.settings import Settings
from storymesh.story.api import StoryClient
from storymesh.story.service import run_story_service
from storymesh.transport import curve
from testkit.keys import ROLES, Keys, make_keys, throw
from testkit.mesh import WAIT, Mesh, fast_settings, new_broker, new_client, wait_for
from testkit.sleepy import Costs, Observed, build_sleepy

pytestmark = pytest.mark.timeout(60)

SILENCE = 0.6  # seconds a refused peer is given to get an answer (it must get none)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("curve"))


class WhoAmI(Agent):
    """Echoes its payload with the principal and admin flag the broker wrote."""

    service = "echo"

    def setup(self) -> AgentInfo:
        return AgentInfo(backend="test")

    def handle(self, request: Request) -> Iterator[Reply]:
        yield Final({**request.payload, "principal": request.principal, "admin": request.admin})


@pytest.fixture
def mesh(keys: Keys) -> Iterator[Mesh]:
    """A keyed broker on loopback TCP and the gpu key's echo worker."""
    with Mesh(keys=keys) as m:
        m.add_agent(WhoAmI(), key="gpu")
        m.wait_services("echo", timeout=20.0)
        yield m


def reload(m: Mesh) -> None:
    """Have the broker re-read its allow-list and roles, and wait until it did: the flag
    drops as the reload starts, and the broker answers the next request only after it."""
    m.broker.request_reload()
    wait_for(lambda: not m.broker.reload_requested, WAIT, "the broker to reload")
    m.snapshot()


def raw_dealer(ctx: zmq.Context[Any], endpoint: str, keys: Keys | None = None,
               name: str = "", server: str = "broker") -> zmq.Socket[Any]:
    """A bare DEALER; with `keys`, a CURVE client with key pair `name`."""
    sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        public, secret = curve.load_keypair(keys.secret(name))
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.curve_serverkey = curve.load_public(keys.public(server))
    sock.connect(endpoint)
    return sock


def echo_request(rid: str, **payload: Any) -> list[bytes]:
    body = envelope.pack(envelope.make_header(rid), payload)
    return mdp.encode(mdp.ClientRequest(b"echo", tuple(body)))


# --- allowed peers ---------------------------------------------------------------------------

def test_an_allowed_client_and_worker_work_end_to_end(mesh: Mesh) -> None:
    # Given a keyed broker and the gpu key's echo worker
    with mesh.client("alice") as alice:
        # When alice calls echo, once and pipelined
        reply = alice.call("echo", {"text": "hi"})
        rid = alice.send("echo", {"text": "again"})
        again = alice.result(rid)
    # Then the worker served her and saw her key's name as the principal
    assert reply.payload == {"text": "hi", "principal": "alice", "admin": False}
    assert again.payload["principal"] == "alice"
    # And the snapshot names the worker's key
    workers = mesh.snapshot()["workers"]
    assert [w["principal"] for w in workers] == ["gpu"]


def test_a_forged_principal_is_overwritten_and_an_admin_is_marked(mesh: Mesh) -> None:
    # When alice names ops as her principal
    with mesh.client("alice", principal="ops") as alice:
        got = alice.call("echo", {}).payload
    # Then the worker sees alice; only the admin key's own requests carry the admin flag
    assert got["principal"] == "alice"
    assert got["admin"] is False
    with mesh.client("ops") as ops:
        got = ops.call("echo", {}).payload
    assert got["principal"] == "ops"
    assert got["admin"] is True


def test_a_delegate_key_acts_for_the_principal_it_names(mesh: Mesh) -> None:
    with mesh.client("story", principal="carol") as story:
        assert story.call("echo", {}).payload["principal"] == "carol"


# --- refused peers ---------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["no key", "key not on the list", "wrong key for a listed name",
                                 "wrong broker key"])
def test_a_peer_without_an_allowed_key_gets_no_service(mesh: Mesh, who: str) -> None:
    before = mesh.snapshot()["counters"]["unauthenticated"]
    ctx = mesh.context
    if who == "no key":
        sock = raw_dealer(ctx, mesh.endpoint)
    elif who == "key not on the list":
        sock = raw_dealer(ctx, mesh.endpoint, mesh.keys, "mallory")
    elif who == "wrong key for a listed name":  # a fresh pair filed under a listed name
        sock = raw_dealer(ctx, mesh.endpoint, mesh.keys, "imposter")
    else:  # alice's own pair, but she expects another server key
        sock = raw_dealer(ctx, mesh.endpoint, mesh.keys, "alice", server="mallory")
    try:
        # When it asks for echo, for mmi.service and tries to register a worker
        throw(sock, echo_request("r1", text="let me in"))
        throw(sock, mdp.encode(mdp.ClientRequest(b"mmi.service", (b"echo",))))
        throw(sock, mdp.encode(mdp.Ready(b"echo")))
        # Then nothing at all comes back
        assert sock.poll(int(SILENCE * 1000)) == 0
    finally:
        sock.close()
    # And the broker kept serving, with no new worker, and counted a refused handshake
    # unless the peer could not even start one (no key, or the wrong server key)
    snap = mesh.snapshot()
    assert [w["principal"] for w in snap["workers"]] == ["gpu"]
    refused = snap["counters"]["unauthenticated"] - before
    assert refused >= 1 if who in ("key not on the list", "wrong key for a listed name") \
        else refused == 0
    with mesh.client("alice") as alice:
        assert alice.call("echo", {"n": 1}).payload["n"] == 1


def test_a_client_key_cannot_register_a_worker(mesh: Mesh) -> None:
    # When alice's key sends READY for echo
    sock = raw_dealer(mesh.context, mesh.endpoint, mesh.keys, "alice")
    try:
        sock.send_multipart(mdp.encode(mdp.Ready(b"echo")))
        # Then the broker answers DISCONNECT
        assert sock.poll(3000)
        assert sock.recv_multipart() == mdp.encode(mdp.Disconnect())
    finally:
        sock.close()
    # And only the gpu key serves echo; the refusal was counted
    snap = mesh.snapshot()
    assert [w["principal"] for w in snap["workers"]] == ["gpu"]
    assert snap["counters"]["forbidden"] >= 1


def test_a_worker_key_may_not_call_services_but_mmi_service_is_open(mesh: Mesh) -> None:
    with mesh.client("gpu") as gpu:
        assert gpu.service_available("echo") is True
        with pytest.raises(RequestFailed) as err:
            gpu.call("echo", {})
    assert err.value.code == "forbidden"


def test_snapshots_need_an_admin_key(mesh: Mesh) -> None:
    with mesh.client("alice") as alice, pytest.raises(RequestFailed) as err:
        alice.snapshot()
    assert err.value.code == "forbidden"
    assert not err.value.retryable
    assert mesh.snapshot()["settings"]["keys"] is True


# --- the wire ----------------------------------------------------------------------------------

class Relay:
    """A TCP man in the middle on loopback: forwards to `target`, records every byte."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.seen = bytearray()
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.conns += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                with self.lock:
                    self.seen += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        for conn in self.conns:
            conn.close()


def through_relay(endpoint: str, settings: Settings, secret: bytes) -> tuple[dict[str, Any], bytes]:
    """Call echo through a recording relay; (the reply payload, the bytes on the wire)."""
    relay = Relay(int(endpoint.rpartition(":")[2]))
    try:
        with new_client(f"tcp://127.0.0.1:{relay.port}", settings, timeout=5.0,
                        retries=1) as client:
            payload = client.call("echo", {"text": secret.decode(), "blob": secret * 200}).payload
        return payload, bytes(relay.seen)
    finally:
        relay.close()


def test_traffic_on_the_wire_is_not_readable(mesh: Mesh) -> None:
    secret = b"MARKER-the-dragon-hides-the-moon-in-a-teacup"
    # When alice calls echo through a man in the middle that records the wire
    payload, wire = through_relay(mesh.endpoint, mesh.peer_settings("alice"), secret)
    # Then the call works, but neither the request nor the reply can be read on the wire
    assert payload["text"] == secret.decode()
    assert payload["principal"] == "alice"
    assert len(wire) > 200 * len(secret)  # the blob went both ways, encrypted
    assert secret not in wire
    assert b"echo" not in wire
    assert b"MDPC02" not in wire
    # And the same relay in front of a plain broker shows everything (the check is real)
    with Mesh() as plain:
        plain.add_agent(WhoAmI())
        _, clear = through_relay(plain.endpoint, fast_settings(), secret)
    assert secret in clear
    assert b"MDPC02" in clear
    # And a keyed client's socket is a CURVE client, a plain one has no mechanism
    for settings, mechanism in ((mesh.peer_settings("alice"), zmq.CURVE),
                                (fast_settings(), zmq.NULL)):
        sock: zmq.Socket[Any] = mesh.context.socket(zmq.DEALER)
        try:
            curve.apply_client(sock, settings.peer_section())
            assert sock.getsockopt(zmq.MECHANISM) == mechanism
        finally:
            sock.close()


# --- reload ------------------------------------------------------------------------------------

def test_the_allow_list_and_roles_reload_without_a_restart(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    keys = make_keys(tmp_path, ("broker", "alice", "bob", "gpu", "ops"))
    curve.generate_keys("carol", keys.dir)
    with Mesh(keys=keys) as m:
        m.add_agent(WhoAmI(), key="gpu")
        m.wait_services("echo", timeout=20.0)
        bob = m.client("bob", timeout=SILENCE)
        assert bob.call("echo", {}).payload["principal"] == "bob"
        # When bob's key is revoked and carol's added, and the broker told to reload
        (keys.allow / "bob.key").unlink()
        keys.allow_key("carol")
        reload(m)
        # Then bob's open connection is refused, and a new one gets nothing at all
        with pytest.raises(RequestFailed) as err:
            bob.call("echo", {})
        assert err.value.code == "forbidden"
        bob.close()
        with m.client("bob", timeout=SILENCE) as again, pytest.raises(RequestTimeout):
            again.call("echo", {})
        # And carol is served at once
        with m.client("carol") as carol:
            assert carol.call("echo", {}).payload["principal"] == "carol"
        # When the roles file no longer lets gpu serve echo (and a broken file is ignored)
        keys.roles.write_text("[keys.gpu\n")
        reload(m)
        with m.client("alice") as alice:
            assert alice.call("echo", {}).payload["principal"] == "alice"
        assert "keeping the current allow-list" in caplog.text
        keys.roles.write_text(ROLES.replace('services = ["echo"]', 'services = ["other"]'))
        reload(m)
        # Then its worker is disconnected (it reconnects, and is refused again)
        wait_for(lambda: m.snapshot()["workers"] == [], WAIT, "the gpu worker disconnected")
        assert m.snapshot()["workers"] == []


# --- stories are private ------------------------------------------------------------------------

def test_with_keys_on_a_story_is_readable_only_by_its_owner_and_admins(keys: Keys,
                                                                      tmp_path: Path) -> None:
    # Given a keyed mesh: sleepy agents (the agents key) and the story service (a delegate)
    costs = Costs(outline=0.05, chapter=0.05, picture=0.05, publish=0.05)
    with Mesh(keys=keys) as m:
        principals: dict[str, list[str | None]] = {}
        for role in ("author", "illustrator", "publisher"):
            seen = principals.setdefault(role, [])
            m.add_agent(Observed(build_sleepy(role, costs),
                                 lambda request, seen=seen: seen.append(request.principal)),
                        key="agents")
        story = m.peer_settings("story", journal=str(tmp_path / "j.db"), step_timeout=20.0,
                                watch_slots=2)
        m.serve(run_story_service, story.story_section(), m.stop)
        m.wait_services("story.submit", "story.query", "story.watch", "story.author",
                        "story.illustrator", "story.publisher", timeout=20.0)

        def stories(name: str) -> StoryClient:
            return StoryClient(m.endpoint, settings=m.peer_settings(name).peer_section(),
                               timeout=10.0)

        # When alice submits a story and it runs to its end
        with stories("alice") as alice:
            request = {"plot": "A fox learns to share", "chapters": 1, "formats": ["html"]}
            corr = alice.submit_request(request, rid="alice-rid-1")
            outcome = alice.wait(corr)
            assert outcome["status"] == "complete", outcome
            mine = alice.list()
            assert alice.status(corr)["status"] == "complete"
            assert alice.fetch(corr)
        # Then bob can neither read, watch, fetch nor cancel it, and lists nothing
        with stories("bob") as bob:
            for read in (bob.status, bob.history, bob.fetch, bob.cancel, bob.wait):
                with pytest.raises(RequestFailed) as err:
                    read(corr)
                assert err.value.code == "forbidden", read
            assert bob.list() == []
            # nor take it over by replaying its submission id
            with pytest.raises(RequestFailed) as err:
                bob.submit_request(request, rid="alice-rid-1")
            assert err.value.code == "forbidden"
        # And an admin key reads it and sees it listed
        with stories("ops") as ops:
            assert ops.status(corr)["status"] == "complete"
            assert any(s["corr"] == corr for s in ops.list())
            assert ops.history(corr)
        assert [s["corr"] for s in mine] == [corr]
        # And the story's own requests to the agents were made on alice's behalf
        assert all(principals.values()), principals
        assert {p for seen in principals.values() for p in seen} == {"alice"}


# --- configuration ------------------------------------------------------------------------------

def test_half_configured_keys_are_config_errors(keys: Keys) -> None:
    with pytest.raises(ConfigError, match="allow_dir"):
        new_broker(fast_settings(curve_secret=keys.secret("broker")), zmq.Context())
    with pytest.raises(ConfigError, match="curve_secret"):
        new_client("tcp://127.0.0.1:9", fast_settings(broker_key=keys.public("broker")))
    with pytest.raises(ConfigError, match="no secret key"):
        new_client("tcp://127.0.0.1:9", fast_settings(
            broker_key=keys.public("broker"), curve_secret=keys.public("alice")))


def test_a_plain_broker_warns_when_it_binds_beyond_loopback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="storymesh.broker.server"):
        server = new_broker(fast_settings(bind="tcp://0.0.0.0:0"))
        server.close()
        quiet = new_broker(fast_settings(bind="tcp://127.0.0.1:0"))
        quiet.close()
    warnings = [r for r in caplog.records if "WITHOUT keys" in r.getMessage()]
    assert len(warnings) == 1
    assert "0.0.0.0" in warnings[0].getMessage()


def test_an_in_process_broker_ignores_keys(keys: Keys) -> None:
    # inproc has no handshake: with keys, every in-process peer would be refused
    ctx: zmq.Context[Any] = zmq.Context()
    server = new_broker(fast_settings(bind="inproc://keyed", curve_secret=keys.secret("broker"),
                                      allow_dir=str(keys.allow)), ctx)
    try:
        assert server.zap is None
        server.start()
        with new_client("inproc://keyed", fast_settings(), context=ctx, timeout=2.0,
                        retries=1) as client:
            assert client.service_available("echo") is False
    finally:
        server.stop()
        ctx.term()
