"""storymesh.core.policy / storymesh.transport.curve without sockets (key files, allow-list, roles file, ZAP answers,
loopback test) and BrokerCore with a policy: roles enforced, `principal` and `admin` written
by the broker, a revoked key's worker disconnected. Bytes in, bytes out, a fake clock.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import msgpack
import pytest
from zmq.utils import z85

from storymesh.core import envelope, mdp, schema
from storymesh.core.policy import ROLES, KeyRoles, Policy, is_loopback, zap_reply
from storymesh.errors import ConfigError
from storymesh.transport import curve
from tests.unit.test_broker_core import Mesh

ALL = frozenset(ROLES)


# --- key files -----------------------------------------------------------------------------

def test_generate_writes_a_public_and_a_private_secret_file_pyzmq_can_read(tmp_path: Path) -> None:
    # When a key pair is generated into a new folder
    public, secret = curve.generate_keys("alice", tmp_path / "keys")
    # Then NAME.key and NAME.key_secret exist, the secret readable by its owner only
    assert (public.name, secret.name) == ("alice.key", "alice.key_secret")
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    # And the public key of both files agrees, and only the secret file has the secret
    pub, sec = curve.load_keypair(secret)
    assert curve.load_public(public) == pub
    assert len(pub) == len(sec) == 40
    with pytest.raises(ConfigError, match="no secret key"):
        curve.load_keypair(public)


def test_generate_refuses_to_overwrite_and_bad_names(tmp_path: Path) -> None:
    curve.generate_keys("bob", tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        curve.generate_keys("bob", tmp_path)
    old = curve.load_public(tmp_path / "bob.key")
    curve.generate_keys("bob", tmp_path, force=True)
    assert curve.load_public(tmp_path / "bob.key") != old
    for bad in ("", "../evil", "a b", "x" * 65):
        with pytest.raises(ConfigError, match="key name"):
            curve.generate_keys(bad, tmp_path)


def test_a_missing_or_garbage_key_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "junk.key").write_text("not a certificate")
    for path in (tmp_path / "nope.key_secret", tmp_path / "junk.key"):
        with pytest.raises(ConfigError):
            curve.load_public(path)


# --- allow-list and roles ------------------------------------------------------------------

def allow_dir(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "allow"
    keys = tmp_path / "keys"
    for name in names:
        public, _ = curve.generate_keys(name, keys)
        folder.mkdir(exist_ok=True)
        (folder / public.name).write_bytes(public.read_bytes())
    return folder


def raw(folder: Path, name: str) -> bytes:
    return z85.decode(curve.load_public(folder / f"{name}.key"))


def test_without_a_roles_file_every_allowed_key_has_every_role(tmp_path: Path) -> None:
    folder = allow_dir(tmp_path, "alice", "gpu1")
    (folder / "README").write_text("ignored")
    policy = curve.load_policy(folder)
    assert policy.authenticate(raw(folder, "alice")) == "alice"
    assert policy.authenticate(b"\0" * 32) is None
    gpu1 = policy.of("gpu1")
    assert gpu1 is not None
    assert gpu1.roles == ALL
    assert gpu1.may_register(b"anything")


def test_a_roles_file_binds_services_and_roles_per_key(tmp_path: Path) -> None:
    # Given an allow-list of four keys and a roles file naming three of them
    folder = allow_dir(tmp_path, "gpu1", "alice", "ops", "someone")
    roles = tmp_path / "roles.toml"
    roles.write_text('[keys.gpu1]\nroles = ["worker"]\nservices = ["story.illustrator*"]\n'
                     '[keys.alice]\nroles = ["client"]\ncall = ["story.*", "echo"]\n'
                     '[keys.ops]\nroles = ["admin"]\n')
    policy = curve.load_policy(folder, roles)
    gpu1, alice, ops, someone = (policy.of(n) for n in ("gpu1", "alice", "ops", "someone"))
    assert gpu1
    assert alice
    assert ops
    assert someone
    # Then the worker key may register only its pattern and may not call anything
    assert gpu1.may_register(b"story.illustrator")
    assert gpu1.may_register(b"story.illustrator-xl")
    assert not gpu1.may_register(b"story.author")
    assert not gpu1.may_call(b"echo")
    # And the client key may call only its patterns and register nothing
    assert alice.may_call(b"story.submit")
    assert alice.may_call(b"echo")
    assert not alice.may_call(b"echo2")
    assert not alice.may_register(b"echo")
    # And admin implies client; a key the roles file does not name is a plain client
    assert ops.admin
    assert ops.may_call(b"echo")
    assert not ops.delegate
    assert someone.roles == {"client"}
    assert not someone.admin
    # And a roles entry for a key that is not on the allow-list grants nothing
    assert policy.of("ghost") is None
    assert policy.of(None) is None


@pytest.mark.parametrize(("text", "match"), [
    ('[keys.a]\nroles = ["root"]\n', "unknown role"),
    ('[keys.a]\nroles = ["worker"]\n', "needs `services`"),
    ('[keys.a]\nroles = "client"\n', "list of non-empty strings"),
    ('[keys.a]\nrole = ["client"]\n', "unknown key"),
    ('[people.a]\nroles = ["client"]\n', "unknown table"),
    ('[keys.a\n', "cannot be read"),
])
def test_a_bad_roles_file_is_a_config_error_naming_the_problem(tmp_path: Path, text: str,
                                                              match: str) -> None:
    folder = allow_dir(tmp_path, "a")
    roles = tmp_path / "roles.toml"
    roles.write_text(text)
    with pytest.raises(ConfigError, match=match):
        curve.load_policy(folder, roles)


def test_the_allow_list_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="required"):
        curve.load_policy("")
    with pytest.raises(ConfigError, match="not a folder"):
        curve.load_policy(tmp_path / "missing")


def test_a_default_table_sets_the_roles_of_unnamed_keys(tmp_path: Path) -> None:
    folder = allow_dir(tmp_path, "x")
    roles = tmp_path / "roles.toml"
    roles.write_text("[default]\nroles = []\n")
    x = curve.load_policy(folder, roles).of("x")
    assert x is not None
    assert not x.may_call(b"echo")
    assert not x.may_register(b"echo")


# --- ZAP -----------------------------------------------------------------------------------

def zap(policy: Policy, key: bytes, *, mechanism: bytes = b"CURVE",
        domain: bytes = b"storymesh") -> list[bytes]:
    request = [b"1.0", b"7", domain, b"127.0.0.1", b"", mechanism, key]
    return zap_reply(request, policy)[0]


def test_zap_admits_a_listed_key_under_its_name_and_refuses_the_rest() -> None:
    policy = Policy({b"k" * 32: "alice"}, {"alice": KeyRoles("alice", ALL, ("*",))})
    assert zap(policy, b"k" * 32) == [b"1.0", b"7", b"200", b"OK", b"alice", b""]
    assert zap(policy, b"x" * 32)[2] == b"400"
    assert zap(policy, b"k" * 32, mechanism=b"PLAIN")[2] == b"400"
    assert zap(policy, b"k" * 32, domain=b"other")[2] == b"400"
    assert zap_reply([b"1.0", b"9"], policy)[0][:3] == [b"1.0", b"9", b"500"]
    assert zap_reply([], policy)[0][2] == b"500"


@pytest.mark.parametrize(("endpoint", "local"), [
    ("tcp://127.0.0.1:5555", True), ("tcp://localhost:1", True), ("tcp://[::1]:5", True),
    ("ipc:///tmp/x", True), ("inproc://x", True), ("tcp://0.0.0.0:5555", False),
    ("tcp://*:5555", False), ("tcp://10.0.0.3:5555", False), ("tcp://eth0:5555", False),
])
def test_is_loopback(endpoint: str, local: bool) -> None:
    assert is_loopback(endpoint) is local


# --- the broker core with keys on ----------------------------------------------------------

def policy(**roles: KeyRoles) -> Policy:
    return Policy({name.encode().ljust(32, b"."): name for name in roles}, roles)


ROLES = policy(
    alice=KeyRoles("alice", frozenset({"client"})),
    bob=KeyRoles("bob", frozenset({"client"})),
    gpu=KeyRoles("gpu", frozenset({"worker"}), ("echo",)),
    story=KeyRoles("story", frozenset({"client", "worker", "delegate"}), ("story.*",)),
    ops=KeyRoles("ops", frozenset({"admin"})),
)


class KeyedMesh(Mesh):
    """Mesh whose peers come with the key names ZAP authenticated (`users`)."""

    def __init__(self, **flags: Any) -> None:
        super().__init__(**flags)
        self.core.set_policy(ROLES, self.now)
        self.users: dict[bytes, str | None] = {}

    def send(self, sender: bytes, frames: list[Any]) -> list[Any]:
        return self.core.on_frames(sender, list(frames), self.now, self.wall,
                                   self.users.get(sender))


def error_of(sends: list[Any]) -> str:
    (_, frames), = sends
    return str(envelope.unpack(mdp.parse_to_client(frames).body).payload["error"]["code"])


def header_at_worker(sends: list[Any]) -> dict[str, Any]:
    (_, frames), = sends
    req = mdp.parse_to_worker(frames)
    assert isinstance(req, mdp.WorkerRequest)
    return envelope.read_header(req.body[0])


@pytest.fixture
def keyed() -> KeyedMesh:
    m = KeyedMesh()
    m.users = {b"A": "alice", b"B": "bob", b"G": "gpu", b"S": "story", b"O": "ops",
               b"X": "revoked-or-unknown"}
    assert m.ready(b"G") == []  # the worker key may register echo
    return m


def test_the_broker_writes_the_principal_over_whatever_the_client_sent(keyed: KeyedMesh) -> None:
    # When alice claims to be bob and an admin in her header
    sends = keyed.request(b"A", rid="r1", principal="bob")
    header = header_at_worker(sends)
    # Then the worker sees alice, and no admin flag
    assert header[schema.H_PRINCIPAL] == "alice"
    assert schema.H_ADMIN not in header
    body = envelope.pack({**envelope.make_header("r2"), schema.H_ADMIN: True}, {})
    keyed.reply(b"G", b"A", tuple(envelope.pack(envelope.make_header("r1"), {})))
    sends = keyed.send(b"A", mdp.encode(mdp.ClientRequest(b"echo", tuple(body))))
    assert schema.H_ADMIN not in header_at_worker(sends)


def test_a_delegate_may_name_the_principal_it_acts_for(keyed: KeyedMesh) -> None:
    header = header_at_worker(keyed.request(b"S", rid="s1", principal="carol"))
    assert header[schema.H_PRINCIPAL] == "carol"
    keyed.reply(b"G", b"S", tuple(envelope.pack(envelope.make_header("s1"), {})))
    # and without naming one it is itself
    assert header_at_worker(keyed.request(b"S", rid="s2"))[schema.H_PRINCIPAL] == "story"


def test_an_admin_request_carries_the_admin_flag(keyed: KeyedMesh) -> None:
    header = header_at_worker(keyed.request(b"O", rid="o1"))
    assert header[schema.H_PRINCIPAL] == "ops"
    assert header[schema.H_ADMIN] is True


def test_keys_without_the_client_role_or_unknown_keys_are_forbidden(keyed: KeyedMesh) -> None:
    # A worker-only key, a key no longer in the policy, and a peer without a user id
    keyed.users[b"N"] = None
    for peer in (b"G", b"X", b"N"):
        assert error_of(keyed.request(peer, rid="r")) == "forbidden"
    assert keyed.core.counters["forbidden"] == 3
    # And the broker still serves alice
    assert header_at_worker(keyed.request(b"A", rid="ok"))[schema.H_PRINCIPAL] == "alice"


def test_with_keys_on_a_body_without_a_storymesh_header_is_a_bad_request(keyed: KeyedMesh) -> None:
    sends = keyed.send(b"A", mdp.encode(mdp.ClientRequest(b"echo", (b"foreign", b"x"))))
    (_, frames), = sends
    reply = envelope.unpack(mdp.parse_to_client(frames).body)
    assert reply.payload["error"]["code"] == "bad_request"


def test_a_client_key_registering_a_worker_is_disconnected(keyed: KeyedMesh) -> None:
    keyed.users[b"G2"] = "gpu"  # a second connection of the worker key
    for peer, service in ((b"A", b"echo"), (b"G2", b"story.author"), (b"X", b"echo")):
        sends = keyed.ready(peer, service)
        assert sends == [(peer, mdp.encode(mdp.Disconnect()))]
    assert set(keyed.core.workers) == {b"G"}
    assert keyed.core.counters["forbidden"] == 3


def test_mmi_snapshot_needs_admin_and_mmi_service_is_open(keyed: KeyedMesh) -> None:
    snap = mdp.ClientRequest(b"mmi.storymesh.snapshot", tuple(envelope.pack(
        envelope.make_header("s"), {})))
    assert error_of(keyed.send(b"A", mdp.encode(snap))) == "forbidden"
    (_, frames), = keyed.send(b"O", mdp.encode(snap))
    assert envelope.unpack(mdp.parse_to_client(frames).body).payload["settings"]["keys"] is True
    for peer in (b"G", b"A", b"X"):
        (_, frames), = keyed.send(peer, mdp.encode(mdp.ClientRequest(b"mmi.service", (b"echo",))))
        assert mdp.parse_to_client(frames).body == (b"200",)


def test_fair_share_lanes_are_principals_not_connections(keyed: KeyedMesh) -> None:
    # Given the worker busy, alice queueing from two connections, and the story service
    # queueing on behalf of carol
    keyed.users[b"A2"] = "alice"
    keyed.request(b"A", rid="a0")
    for i in range(3):
        keyed.request(b"A", rid=f"a{i + 1}")
        keyed.request(b"A2", rid=f"b{i}")
    keyed.request(b"S", rid="c0", principal="carol")
    # Then the queue holds two lanes: alice and carol
    queue = keyed.core.services[b"echo"].queue
    assert queue.lanes == 2
    assert queue.lane_len("alice") == 6
    assert queue.lane_len("carol") == 1


def test_revoking_a_key_disconnects_its_workers(keyed: KeyedMesh) -> None:
    # Given gpu holding alice's request
    keyed.request(b"A", rid="held")
    # When the reloaded policy no longer lets gpu serve echo
    reduced = policy(alice=ROLES.roles["alice"],
                     gpu=KeyRoles("gpu", frozenset({"worker"}), ("other",)))
    sends = keyed.core.set_policy(reduced, keyed.now)
    # Then gpu gets DISCONNECT and the request waits in the queue for another worker
    assert (b"G", mdp.encode(mdp.Disconnect())) in sends
    assert not keyed.core.workers
    assert len(keyed.core.services[b"echo"].queue) == 1


def test_a_header_repacked_by_the_broker_keeps_every_other_key(keyed: KeyedMesh) -> None:
    header = {**envelope.make_header("r9", corr="st-1", deadline=keyed.wall + 60),
              "x-extra": [1, 2]}
    body = (msgpack.packb(header), msgpack.packb({"p": 1}), b"\x89PNG" * 2000)
    (_, frames), = keyed.send(b"A", mdp.encode(mdp.ClientRequest(b"echo", body)))
    req = mdp.parse_to_worker(frames)
    assert isinstance(req, mdp.WorkerRequest)
    got = envelope.read_header(req.body[0])
    assert got == {**header, schema.H_PRINCIPAL: "alice"}
    assert req.body[1:] == body[1:]
