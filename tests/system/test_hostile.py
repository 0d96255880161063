"""Hostile input against real daemons while real traffic flows.

- A keyed broker (CURVE, allow-list, roles) under attack: plaintext garbage, handshakes
  with unknown keys, an allowed client key sending garbage and trying to register a worker;
  meanwhile an allowed client's calls are all served, in order. SIGHUP adds a key.
- A plain broker with every limit crossed, each getting its documented answer (or, for a
  frame over ZMQ_MAXMSGSIZE or too many frames, no answer at all), a flooding client that
  cannot starve another, and the story and illustrator limits through the real agents.

The garbage catalogue and the mutator come from test_mesh_processes.py (the plain-broker
garbage test); this file adds keys, limits and fairness. Heartbeat 0.2 s x 4.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
import zmq.utils.monitor

from storymesh.core import envelope, mdp
from storymesh.errors import RequestFailed, RequestTimeout
from storymesh.settings import Settings
from storymesh.transport import curve
from testkit.keys import make_keys, throw
from testkit.mesh import Spawner, fast_settings, new_client, snapshot
from tests.system.test_mesh_processes import GARBAGE, SEQUENCES, mutate

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]

class Traffic(threading.Thread):
    """Calls echo until stopped, each reply checked; records what was served."""

    def __init__(self, endpoint: str, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.endpoint, self.settings = endpoint, settings
        self.stop = threading.Event()
        self.served: list[int] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        with new_client(self.endpoint, self.settings, timeout=5.0, retries=1) as c:
            n = 0
            while not self.stop.is_set():
                try:
                    payload = c.call("echo", {"n": n, "blob": bytes(5000)}).payload
                except BaseException as exc:  # noqa: BLE001  (the test asserts on it)
                    self.errors.append(exc)
                    return
                if payload.get("n") != n or payload.get("blob") != bytes(5000):
                    self.errors.append(AssertionError(f"request {n} got {payload}"))
                    return
                self.served.append(n)
                n += 1

    def finish(self, spawner: Spawner) -> None:
        self.stop.set()
        self.join(15.0)
        assert not self.errors, f"{self.errors}\n{spawner.tails()}"
        assert self.served == list(range(len(self.served)))
        assert len(self.served) >= 10


def dealer(ctx: zmq.Context[Any], endpoint: str, keys: tuple[bytes, bytes, bytes] | None = None
           ) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = keys
    sock.connect(endpoint)
    return sock


def request(service: bytes, rid: str, payload: dict[str, Any] | None = None,
            **header: Any) -> list[bytes]:
    body = envelope.pack(envelope.make_header(rid, **header), payload or {})
    return mdp.encode(mdp.ClientRequest(service, tuple(body)))


def error_code(frames: list[bytes]) -> str:
    reply = mdp.parse_to_client(frames)
    env = envelope.unpack(reply.body)
    assert not env.ok, env.payload
    return str(env.payload["error"]["code"])


# --- a keyed broker under attack -----------------------------------------------------------

def test_a_keyed_broker_under_attack_serves_its_keys_and_nobody_else(
        spawner: Spawner, endpoint: str, tmp_path: Path) -> None:
    # Given keys made with the CLI, an allow-list without mallory's key, and a roles file
    made = spawner.cli("keys", "generate", "broker", "--dir", str(tmp_path / "keys"))
    assert made.returncode == 0, made.stderr
    keys = make_keys(tmp_path, ("broker", "alice", "gpu", "ops"), ("mallory", "carol"))
    keydir, allow, roles = keys.dir, keys.allow, keys.roles

    def settings(name: str) -> Settings:
        return fast_settings(broker=endpoint, curve_secret=keys.secret(name),
                             broker_key=keys.public("broker"))

    def admin_snapshot() -> dict[str, Any] | None:
        with new_client(endpoint, settings("ops"), timeout=0.5, retries=1) as c:
            try:
                return c.snapshot()
            except (RequestTimeout, RequestFailed):
                return None

    broker = spawner.broker(endpoint, "--curve-secret", str(keydir / "broker.key_secret"),
                            "--allow-dir", str(allow), "--roles", str(roles), wait=False)
    spawner.wait_until(admin_snapshot, 15.0, "keyed broker answering the admin key")
    agent = spawner.echo(endpoint, "--curve-secret", str(keydir / "gpu.key_secret"),
                         "--broker-key", str(keydir / "broker.key"))
    spawner.wait_until(lambda: (s := admin_snapshot()) and [w["meta"]["pid"] for w in
                                                            s["workers"]] == [agent.pid],
                       15.0, "the gpu key's echo worker")
    # And alice calling echo nonstop
    traffic = Traffic(endpoint, settings("alice"))
    traffic.start()
    ctx: zmq.Context[Any] = zmq.Context()
    server_key = curve.load_public(keydir / "broker.key")
    alice_keys = (*curve.load_keypair(keydir / "alice.key_secret"), server_key)
    rng = random.Random(7)
    try:
        # When plaintext peers throw the garbage catalogue and 200 mutations
        plain = dealer(ctx, endpoint)
        for frames in GARBAGE:
            throw(plain, frames)
        for _ in range(200):
            throw(plain, mutate(rng))
        # And 30 peers with mallory's key (not on the list) ask politely and try READY
        strangers = [dealer(ctx, endpoint, (*curve.load_keypair(
            keydir / "mallory.key_secret"), server_key)) for _ in range(30)]
        for sock in strangers:
            throw(sock, request(b"echo", "m"))
            throw(sock, mdp.encode(mdp.Ready(b"echo")))
        # And alice's own key throws garbage and stateful nonsense, and tries to register
        insider = dealer(ctx, endpoint, alice_keys)
        for frames in GARBAGE[:-1]:  # (the 5000-frame message once is enough: plain above)
            throw(insider, frames)
        for conversation in SEQUENCES:
            sock = dealer(ctx, endpoint, alice_keys)
            for frames in conversation:
                throw(sock, frames)
            sock.close(linger=200)
        for k in range(200):
            throw(insider, mutate(rng))
            if k % 50 == 0:
                time.sleep(0.02)
        # Then nobody without a key on the list heard anything back
        time.sleep(0.5)
        assert not any(sock.poll(0) for sock in [plain, *strangers])
        # And alice's key trying READY gets DISCONNECT
        ready = dealer(ctx, endpoint, alice_keys)
        ready.send_multipart(mdp.encode(mdp.Ready(b"echo")))
        assert ready.poll(3000)
        assert ready.recv_multipart() == mdp.encode(mdp.Disconnect())
        # When carol's key is added and the broker gets SIGHUP
        with (new_client(endpoint, settings("carol"), timeout=0.5, retries=1) as carol,
              pytest.raises(RequestTimeout)):
            carol.call("echo", {})
        (allow / "carol.key").write_bytes((keydir / "carol.key").read_bytes())
        broker.signal(signal.SIGHUP)
        # Then carol is served without a restart
        def carol_served() -> bool:
            with new_client(endpoint, settings("carol"), timeout=1.0, retries=1) as c:
                try:
                    return c.call("echo", {"who": "carol"}).payload == {"who": "carol"}
                except RequestTimeout:
                    return False
        spawner.wait_until(carol_served, 10.0, "carol served after SIGHUP")
    finally:
        traffic.finish(spawner)
        ctx.destroy(linger=0)
    # And every one of alice's calls was served, the broker lives, and it counted it all
    assert broker.alive(), spawner.tails()
    snap = admin_snapshot()
    assert snap is not None
    counters = snap["counters"]
    assert counters["unauthenticated"] >= 30, counters
    assert counters["forbidden"] >= 1, counters
    assert counters["malformed"] > len(GARBAGE) // 2, counters
    assert [w["meta"]["pid"] for w in snap["workers"] if w["service"] == "echo"] == [agent.pid]


# --- every limit, plain broker -------------------------------------------------------------

MIB = 1 << 20


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def test_every_limit_crossed_gets_its_documented_answer_and_others_are_served(
        spawner: Spawner, endpoint: str, tmp_path: Path) -> None:
    # Given a broker with a 1 MiB frame limit and 6 queued requests per client, one echo
    # worker, the story service and an illustrator, and a client calling echo nonstop
    broker = spawner.broker(endpoint, env={"STORYMESH_MAX_MESSAGE_BYTES": str(MIB),
                                           "STORYMESH_CLIENT_QUEUE_LIMIT": "6"})
    echo = spawner.echo(endpoint)
    spawner.spawn("illustrator", "agent", "illustrator", "--broker", endpoint,
                  *spawner.common())
    spawner.spawn("story", "agent", "story", "--broker", endpoint, *spawner.common(),
                  env={"STORYMESH_JOURNAL": str(tmp_path / "journal.db"),
                       "STORYMESH_WATCH_SLOTS": "1"})
    spawner.wait_until(lambda: (s := snapshot(endpoint)) and {"echo", "story.illustrator",
                                                               "story.submit"} <= {
        w["service"] for w in s["workers"]}, 30.0, "echo, illustrator and story workers")
    traffic = Traffic(endpoint, Settings())
    traffic.start()
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        # When a peer sends one frame over ZMQ_MAXMSGSIZE
        big = dealer(ctx, endpoint)
        monitor = big.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        big.send_multipart([*request(b"echo", "big", {"x": 1}), bytes(MIB + 1)])
        # Then libzmq cuts it off: a disconnect, and no reply
        assert monitor.poll(5000), "the oversized peer was not disconnected"
        assert zmq.utils.monitor.recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
        assert big.poll(300) == 0
        big.disable_monitor()
        monitor.close()

        probe = dealer(ctx, endpoint)

        def ask(frames: list[bytes]) -> list[bytes]:
            probe.send_multipart(frames)
            assert probe.poll(5000), f"no answer to {frames[:3]}"
            reply: list[bytes] = probe.recv_multipart()
            return reply

        # And past max_frames (80) a message is dropped without an answer
        probe.send_multipart(request(b"echo", "frames") + [b"x"] * 80)
        assert probe.poll(500) == 0
        # And the broker answers oversize bodies, bad service names, newer versions
        assert error_code(ask(request(b"echo", "two", {}) + [bytes(600_000)] * 2)) == "too_large"
        assert error_code(ask(request(b"x" * 129, "long"))) == "bad_request"
        assert error_code(ask(request(b"no spaces!", "chars"))) == "bad_request"
        v2 = mdp.encode(mdp.ClientRequest(b"echo", (msgpack.packb({"v": 2, "id": "v2"}), b"\x80")))
        assert error_code(ask(v2)) == "unsupported_version"
        # And msgpack bombs reach the agent, which answers them within its decoding limits
        huge_header = msgpack.packb({"v": 1, "id": "h", "pad": "x" * 5000})
        assert error_code(ask(mdp.encode(mdp.ClientRequest(b"echo", (huge_header, b"\x80"))))) \
            == "too_large"
        assert error_code(ask(request(b"echo", "deep", {"d": deep(20)}))) == "bad_request"
        long_array = msgpack.packb({"a": [0] * 100_001})
        header = msgpack.packb({"v": 1, "id": "arr"})
        assert error_code(ask(mdp.encode(mdp.ClientRequest(b"echo", (header, long_array))))) \
            == "too_large"
        # And the story and illustrator limits answer with their documented codes
        story_limits: list[tuple[bytes, dict[str, Any], str]] = [
            (b"story.submit", {"plot": "x" * 5000}, "too_large"),
            (b"story.submit", {"plot": "A fox", "chapters": 31}, "bad_request"),
            (b"story.illustrator", {"prompt": "a fox", "width": 4096, "height": 64}, "bad_request"),
            (b"story.illustrator", {"prompt": "a fox", "steps": 500}, "bad_request"),
            (b"story.illustrator", {"prompt": "p" * 3000}, "too_large"),
        ]
        for service, payload, code in story_limits:
            assert error_code(ask(request(service, f"s-{code}", payload))) == code, payload

        # When one client pipelines 12 slow requests and another asks once
        flood, polite = dealer(ctx, endpoint), dealer(ctx, endpoint)
        for i in range(12):
            flood.send_multipart(request(b"echo", f"f{i}", {"sleep": 0.2, "i": i}))
        time.sleep(0.3)
        polite.send_multipart(request(b"echo", "p", {"polite": True}))
        # Then the flooder's requests past 6 queued are busy at once (with a retry hint)
        arrivals: list[tuple[float, str]] = []
        busy = 0
        end = time.monotonic() + 20.0
        while len(arrivals) < 13 - busy and time.monotonic() < end:
            for sock in zmq.select([flood, polite], [], [], 0.5)[0]:
                env = envelope.unpack(mdp.parse_to_client(sock.recv_multipart()).body)
                if not env.ok:
                    assert env.payload["error"]["code"] == "busy"
                    assert env.payload["error"]["retry_after"] > 0
                    busy += 1
                else:
                    arrivals.append((time.monotonic(), env.id))
        served = [rid for _, rid in arrivals]
        assert busy >= 4, (busy, served)
        assert "p" in served, (busy, served)
        # And the polite request did not wait behind the flooder's queue
        assert served.index("p") <= 3, served
    finally:
        traffic.finish(spawner)
        ctx.destroy(linger=0)
    # And the broker and the echo worker live on; the snapshot counted the refusals
    assert broker.alive(), spawner.tails()
    assert echo.alive(), spawner.tails()
    snap = snapshot(endpoint, timeout=3.0)
    assert snap is not None
    counters = snap["counters"]
    assert counters["too_large"] >= 1
    assert counters["busy"] >= 4
    assert counters["malformed"] >= 1
