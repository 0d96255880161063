"""A broker pair for the tests and benchmarks: a primary and a backup on tcp loopback, each
one's state link optionally through a `TcpRelay` the test can cut.

- `BrokerPair`: two BrokerServers in threads of this process, with echo agents and clients
  given both endpoints;
- `ProcessPair`: two `storymesh broker --ha ...` daemons spawned by a `Spawner`, killed and
  restarted for real.

    with BrokerPair(relay=True) as pair:
        pair.wait_states("active", "passive")
        pair.add_echo()
        with pair.client() as client: ...
        pair.cut_link()      # the brokers stop hearing each other; both stay up
        pair.stop("primary") # a clean stop of one broker
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

import zmq

from storymesh.agents.echo import EchoAgent
from storymesh.broker.server import BrokerServer
from storymesh.runtime.client import Client
from storymesh.settings import Settings
from testkit.mesh import (
    START_TIMEOUT,
    WAIT,
    Proc,
    Spawner,
    fast_settings,
    free_endpoint,
    free_port,
    new_broker,
    new_client,
    serve_agent,
    snapshot,
    wait_for,
)
from testkit.relay import TcpRelay

ROLES = ("primary", "backup")


class _Endpoints:
    """A pair's endpoints: clients' and state, each state link maybe through a relay."""

    def __init__(self, relay: bool) -> None:
        self.endpoints = {role: free_endpoint() for role in ROLES}
        ports = {role: free_port() for role in ROLES}
        self.relays: list[TcpRelay] = []
        heard_at = dict(ports)  # each broker subscribes to the other's port, or a relay's
        if relay:
            for role in ROLES:
                r = TcpRelay(ports[role]).start()
                self.relays.append(r)
                heard_at[role] = r.port
        self.state = {role: f"tcp://127.0.0.1:{ports[role]}" for role in ROLES}
        self.peer_state = {"primary": f"tcp://127.0.0.1:{heard_at['backup']}",
                           "backup": f"tcp://127.0.0.1:{heard_at['primary']}"}

    @property
    def broker(self) -> str:
        """What peers are given: both endpoints, the primary's first."""
        return ",".join(self.endpoints[role] for role in ROLES)

    def cut_link(self) -> None:
        """Stop the relays: each broker stops hearing the other, both keep serving."""
        for r in self.relays:
            r.stop()

    @staticmethod
    def other(role: str) -> str:
        return ROLES[1 - ROLES.index(role)]


class BrokerPair(_Endpoints):
    """Two brokers of a pair in threads of this process, and the agents served by them."""

    def __init__(self, *, relay: bool = False, **flags: Any) -> None:
        super().__init__(relay)
        self.flags = flags
        self.context: zmq.Context[Any] = zmq.Context()
        self.servers: dict[str, BrokerServer | None] = dict.fromkeys(ROLES)
        self.stop_event = threading.Event()
        self._stops: list[threading.Event] = [self.stop_event]
        self.threads: list[threading.Thread] = []
        for role in ROLES:
            self.start(role)
        self.settings = fast_settings(broker=self.broker, **flags)

    def broker_settings(self, role: str) -> Settings:
        return fast_settings(bind=self.endpoints[role], ha=role, ha_bind=self.state[role],
                             ha_peer=self.peer_state[role], **self.flags)

    def start(self, role: str) -> BrokerServer:
        """Start (or restart) one broker on its endpoints; the port may take a moment to free."""
        def bind() -> BrokerServer | None:
            try:
                return new_broker(self.broker_settings(role), self.context)
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE:
                    raise
                return None
        server = wait_for(bind, WAIT, f"the {role} broker bound")
        server.start()
        self.servers[role] = server
        return server

    def stop(self, role: str) -> None:
        server = self.servers[role]
        if server is not None:
            server.stop()
            self.servers[role] = None

    # observation

    def snapshot(self, role: str) -> dict[str, Any] | None:
        return snapshot(self.endpoints[role], self.settings)

    def pair_state(self, role: str) -> str | None:
        snap = self.snapshot(role)
        return None if snap is None else str(snap["pair"]["state"])

    def wait_states(self, primary: str | None, backup: str | None,
                    timeout: float = WAIT) -> None:
        """Wait until the brokers are in these states (None: do not look at that one)."""
        wanted = {"primary": primary, "backup": backup}
        wait_for(lambda: all(s is None or self.pair_state(r) == s for r, s in wanted.items()),
                 timeout, f"pair states {wanted}",
                 describe=lambda: str({r: self.pair_state(r) for r in ROLES}))

    def workers(self, role: str, service: str = "echo") -> int:
        snap = self.snapshot(role)
        return 0 if snap is None else int(snap["services"].get(service, {}).get("workers", 0))

    # peers

    def add_echo(self, slots: int = 1) -> threading.Event:
        stop, ready = threading.Event(), threading.Event()
        self._stops.append(stop)
        thread = threading.Thread(target=serve_agent, args=(EchoAgent(), self.settings),
                                  kwargs={"slots": slots, "stop": stop, "context": self.context,
                                          "ready": ready}, daemon=True)
        thread.start()
        self.threads.append(thread)
        wait_for(ready.is_set, WAIT, "echo READY")
        return stop

    def client(self, *, timeout: float = WAIT, retries: int = 1) -> Client:
        return new_client(self.broker, self.settings, context=self.context, timeout=timeout,
                          retries=retries)

    def close(self) -> None:
        for stop in self._stops:
            stop.set()
        for thread in self.threads:
            thread.join(WAIT * 2)
        for role in ROLES:
            self.stop(role)
        for r in self.relays:
            r.stop()
        self.context.destroy(linger=0)

    def __enter__(self) -> BrokerPair:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class ProcessPair(_Endpoints):
    """Two `storymesh broker --ha` daemons spawned by `spawner`, with their own heartbeat."""

    def __init__(self, spawner: Spawner, *, heartbeat: float, liveness: int,
                 relay: bool = False, log_level: str = "info") -> None:
        super().__init__(relay)
        self.spawner = spawner
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.log_level = log_level
        self.procs: dict[str, Proc | None] = dict.fromkeys(ROLES)
        self.settings = fast_settings(broker=self.broker, heartbeat_interval=heartbeat,
                                      liveness=liveness)

    @property
    def liveness_s(self) -> float:
        return self.heartbeat * self.liveness

    def flags(self) -> list[str]:
        """What every daemon of the test is given besides its own flags."""
        return ["--heartbeat-interval", str(self.heartbeat), "--liveness", str(self.liveness),
                "--config", "/dev/null", "--log-level", self.log_level]

    def start(self, role: str) -> Proc:
        """Spawn one broker and wait until it answers MMI (a passive one does)."""
        proc = self.spawner.spawn(
            f"broker-{role}", "broker", "--bind", self.endpoints[role], "--ha", role,
            "--ha-bind", self.state[role], "--ha-peer", self.peer_state[role], *self.flags())
        self.procs[role] = proc
        self.spawner.wait_until(lambda: self.snapshot(role) is not None, START_TIMEOUT,
                                f"the {role} broker answering")
        return proc

    def start_both(self) -> None:
        for role in ROLES:
            self.start(role)
        self.wait_states("active", "passive")

    def kill(self, role: str) -> None:
        """SIGKILL one broker and reap it."""
        proc = self.procs[role]
        assert proc is not None, f"the {role} broker is not running"
        proc.kill()
        self.procs[role] = None

    def snapshot(self, role: str, timeout: float = 0.5) -> dict[str, Any] | None:
        return snapshot(self.endpoints[role], self.settings, timeout)

    def pair_state(self, role: str) -> str | None:
        snap = self.snapshot(role)
        return None if snap is None else str(snap["pair"]["state"])

    def active(self) -> str | None:
        """The role of the broker that says it is active (None: neither answers so)."""
        return next((role for role in ROLES if self.pair_state(role) == "active"), None)

    def wait_states(self, primary: str | None, backup: str | None,
                    timeout: float = START_TIMEOUT) -> None:
        wanted = {"primary": primary, "backup": backup}
        self.spawner.wait_until(
            lambda: all(s is None or self.pair_state(r) == s for r, s in wanted.items()),
            timeout, f"pair states {wanted}")

    def client(self, *, timeout: float = WAIT, retries: int = 1) -> Client:
        """A client (own context) given both endpoints."""
        return new_client(self.broker, self.settings, timeout=timeout, retries=retries)
