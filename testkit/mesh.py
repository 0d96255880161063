"""The one mesh harness of the tests: a real broker and agents, in-process or as processes.

- `Mesh`: a real broker and agents in threads of this process, on tcp/ipc loopback (or
  inproc), sharing one zmq context; optionally keyed (CURVE, `testkit.keys`) or serving
  Prometheus metrics. Everything it started is stopped by `close()`.
- `Spawner`: `python -m storymesh ...` daemons from the repository root with a clean
  environment, each logging to a file, signalled for real and SIGKILLed at teardown.
- `wait_for(condition, timeout=...)`: poll a condition with a bound instead of sleeping.

Construction happens here and nowhere else in the tests: `new_broker`, `serve_agent`,
`broker_daemon` and `new_client` are the only calls into the constructors of the broker, the
worker runtime and the client, so a change of their signatures touches this module only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import zmq

from storymesh import settings as settings_mod
from storymesh.agents.echo import EchoAgent
from storymesh.broker.server import BrokerServer, run_broker
from storymesh.errors import RequestFailed, RequestTimeout
from storymesh.runtime.agent import Agent
from storymesh.runtime.client import Client
from storymesh.runtime.worker import run_agent
from storymesh.settings import Settings
from testkit.keys import Keys

REPO = Path(__file__).resolve().parents[1]
WAIT = 5.0  # seconds any one thing may take to happen on a busy two-core machine
START_TIMEOUT = 10.0  # a cold `python -m storymesh` start on a busy two-core machine
HEARTBEAT = 0.2  # spawned daemons: dead peers show up in HEARTBEAT x LIVENESS
LIVENESS = 4
T = TypeVar("T")

# --- waiting ------------------------------------------------------------------------------


def wait_for(condition: Callable[[], T | None], timeout: float = WAIT, what: str = "the condition",
             *, interval: float = 0.02, describe: Callable[[], str] | None = None) -> T:
    """Call `condition()` until it returns something truthy and return that, at most
    `timeout` seconds; then an AssertionError naming `what` (and `describe()`, if given)."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= end:
            detail = f"\n{describe()}" if describe is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


# --- construction: the one place the tests build brokers, agent runtimes and clients ------


def fast_settings(**flags: object) -> Settings:
    """Settings for tests: no config file, no environment, short heartbeats."""
    base: dict[str, object] = {
        "bind": "tcp://127.0.0.1:0",
        "heartbeat_interval": 0.1,
        "liveness": 4,
        "request_timeout": 5.0,
        "service_wait": 5.0,
        "drain_grace": 2.0,
        "reconnect_max": 0.5,
    }
    base.update(flags)
    return settings_mod.load("/dev/null", env={}, flags=base)


def new_broker(settings: Settings, context: zmq.Context[Any] | None = None) -> BrokerServer:
    """A BrokerServer bound to `settings.bind` (not started)."""
    return BrokerServer(settings.broker_section(), context=context)


def broker_daemon(settings: Settings, stop: threading.Event) -> int:
    """What `storymesh broker` runs (metrics, sd_notify) until `stop`: a thread's target."""
    return run_broker(settings.broker_section(), stop)


def serve_agent(agent: Agent, settings: Settings, *, slots: int = 1,
                stop: threading.Event | None = None, context: zmq.Context[Any] | None = None,
                ready: threading.Event | None = None) -> int:
    """The worker runtime serving `agent` until `stop`: a thread's target."""
    return run_agent(agent, settings.peer_section(), slots=slots, stop=stop, context=context,
                     ready=ready)


def new_client(endpoint: str, settings: Settings, *, context: zmq.Context[Any] | None = None,
               timeout: float | None = None, retries: int | None = None,
               principal: str | None = None) -> Client:
    """A storymesh Client for the broker at `endpoint`."""
    return Client(endpoint, settings=settings.peer_section(), context=context, timeout=timeout,
                  retries=retries, principal=principal)


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (whoever needs it binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def snapshot(endpoint: str, settings: Settings | None = None,
             timeout: float = 0.5) -> dict[str, Any] | None:
    """The broker's `mmi.storymesh.snapshot`, or None when it does not answer in time."""
    with new_client(endpoint, settings or Settings(), timeout=timeout, retries=1) as c:
        try:
            return c.snapshot()
        except (RequestTimeout, RequestFailed):
            return None


def worker_pids(snap: dict[str, Any]) -> dict[str, set[int]]:
    """service -> the pids (from READY metadata) of its registered workers in a snapshot."""
    found: dict[str, set[int]] = {}
    for worker in snap["workers"]:
        found.setdefault(worker["service"], set()).add(worker["meta"].get("pid"))
    return found


# --- a mesh in this process ---------------------------------------------------------------


class Mesh:
    """A real broker and agents in threads of this process, sharing one zmq context.

    `bind` is the broker's endpoint (tcp loopback on a free port by default; `ipc://...` and
    `inproc://...` work too). With `keys`, the broker is keyed and every peer uses the key
    pair it names (`client("alice")`); the admin key `ops` reads snapshots. With `metrics`,
    the broker runs as the daemon does (`run_broker`) and serves Prometheus at `metrics_url`.
    `flags` are settings for the broker and every peer (`liveness=10`, ...).
    """

    def __init__(self, bind: str = "tcp://127.0.0.1:0", *, keys: Keys | None = None,
                 metrics: bool = False, **flags: Any) -> None:
        self.keys = keys
        self.flags = flags
        self.context: zmq.Context[Any] = zmq.Context()
        self.stop = threading.Event()  # every agent and served thread stops on it at close
        self.threads: list[threading.Thread] = []
        self._stops: list[threading.Event] = [self.stop]
        self._server: BrokerServer | None = None
        self.metrics_url = ""
        if metrics:  # run_broker binds its own socket: the endpoint must be known up front
            bind = free_endpoint()
            port = free_port()
            self.metrics_url = f"http://127.0.0.1:{port}/metrics"
            self._broker_stop = threading.Event()
            self._daemon = threading.Thread(
                target=broker_daemon, daemon=True,
                args=(self.broker_settings(bind, metrics_bind=str(port)), self._broker_stop))
            self._daemon.start()
            self.endpoint = bind
            wait_for(lambda: snapshot(bind, self.peer_settings("ops")), WAIT, f"broker on {bind}")
        else:
            self._server = new_broker(self.broker_settings(bind), self.context)
            self._server.start()
            self.endpoint = self._server.endpoint
        self.settings = self.peer_settings()

    @property
    def broker(self) -> BrokerServer:
        """The in-process BrokerServer (a metrics mesh runs the daemon's loop instead)."""
        assert self._server is not None, "a metrics mesh runs run_broker: no BrokerServer"
        return self._server

    # settings

    def broker_settings(self, bind: str, **more: Any) -> Settings:
        keyed: dict[str, Any] = {}
        if self.keys is not None:
            keyed = {"curve_secret": self.keys.secret("broker"),
                     "allow_dir": str(self.keys.allow), "roles": str(self.keys.roles)}
        return fast_settings(bind=bind, **keyed, **self.flags, **more)

    def peer_settings(self, key: str | None = None, **more: Any) -> Settings:
        """Settings of a peer of this broker; on a keyed mesh, with key pair `key`."""
        keyed: dict[str, Any] = {}
        if self.keys is not None and key is not None:
            keyed = {"curve_secret": self.keys.secret(key),
                     "broker_key": self.keys.public(more.pop("broker_key", "broker"))}
        return fast_settings(broker=self.endpoint, bind=self.endpoint, **keyed,
                             **{**self.flags, **more})

    # agents

    def serve(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
        """Run `target(*args, **kwargs)` in a daemon thread, joined at close."""
        thread = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def add_agent(self, agent: Agent, *, slots: int = 1, key: str | None = None,
                  settings: Settings | None = None) -> threading.Event:
        """Serve `agent` on the real worker runtime; return once READY went out on every
        slot. The returned event stops this agent alone (close() stops them all)."""
        stop, ready = threading.Event(), threading.Event()
        self._stops.append(stop)
        self.serve(serve_agent, agent, settings or self.peer_settings(key), slots=slots,
                   stop=stop, context=self.context, ready=ready)
        wait_for(ready.is_set, WAIT, f"{agent.service} READY")
        return stop

    def add_echo(self, slots: int = 1, count: int = 1) -> threading.Event:
        """`count` echo agents of `slots` slots each; the event stops the last one."""
        stops = [self.add_agent(EchoAgent(), slots=slots) for _ in range(count)]
        return stops[-1]

    def stop_agents(self) -> None:
        for stop in self._stops:
            stop.set()

    # clients

    def client(self, key: str | None = None, *, timeout: float = WAIT, retries: int = 1,
               principal: str | None = None) -> Client:
        """A client of this broker (on a keyed mesh, with key pair `key`)."""
        return new_client(self.endpoint, self.peer_settings(key), context=self.context,
                          timeout=timeout, retries=retries, principal=principal)

    def admin(self) -> str | None:
        return "ops" if self.keys is not None else None

    def snapshot(self) -> dict[str, Any]:
        with self.client(self.admin()) as client:
            return client.snapshot()

    def wait_workers(self, service: str, count: int, timeout: float = WAIT) -> dict[str, Any]:
        """Wait until `service` has `count` registered workers; return that snapshot."""
        last: dict[str, Any] = {}

        def registered() -> dict[str, Any] | None:
            last["snap"] = snap = self.snapshot()
            return snap if snap["services"].get(service, {}).get("workers") == count else None
        return wait_for(registered, timeout, f"{count} {service} workers",
                        describe=lambda: str(last.get("snap", {}).get("services")))

    def wait_services(self, *services: str, present: bool = True,
                      timeout: float = WAIT) -> None:
        """Wait until MMI says each of `services` has a worker (or, not `present`, none)."""
        with self.client(self.admin(), timeout=0.5) as client:
            wait_for(lambda: all(client.service_available(s) is present for s in services),
                     timeout, f"{services} available={present}")

    def served(self, service: str = "echo") -> list[int]:
        """Requests served per registered worker connection of `service`, sorted."""
        return sorted(w["served"] for w in self.snapshot()["workers"] if w["service"] == service)

    # the broker

    def restart_broker(self, while_down: Callable[[], object] | None = None) -> None:
        """Stop the broker, call `while_down()`, and bind a new one to the same endpoint."""
        self.broker.stop()
        if while_down is not None:
            while_down()
        self._server = wait_for(self._rebind, WAIT, f"a new broker bound to {self.endpoint}")

    def _rebind(self) -> BrokerServer | None:
        # libzmq closes the old listener in its I/O thread, a moment after stop() returns
        try:
            server = new_broker(self.broker_settings(self.endpoint), self.context)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE:
                raise
            return None
        server.start()
        return server

    def close(self) -> None:
        self.stop_agents()
        for thread in self.threads:
            thread.join(WAIT * 2)
        if self._server is not None:
            self._server.stop()
        else:
            self._broker_stop.set()
            self._daemon.join(WAIT)
        self.context.destroy(linger=0)

    def __enter__(self) -> Mesh:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- a mesh of processes -------------------------------------------------------------------


@dataclass
class Proc:
    """One spawned daemon and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(5.0)

    def wait(self, timeout: float) -> int:
        """The exit code, or an AssertionError with the log if it is still running."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} (pid {self.pid}) still running after "
                                 f"{timeout}s\n{self.tail()}") from None

    def tail(self, chars: int = 1500) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return f"--- {self.name} (pid {self.pid}) ---\n{text[-chars:]}"


@dataclass
class Spawner:
    """Starts `python -m storymesh` daemons and kills whatever is left of them at close.

    Each runs from the repository root (with it on PYTHONPATH, for `testkit`), with a clean
    environment (no inherited STORYMESH_* or NOTIFY_* variables, `--config /dev/null`) and
    its stdout and stderr in a log file under `logs`. A failed wait shows every log's tail.
    """

    logs: Path
    procs: list[Proc] = field(default_factory=list)

    @staticmethod
    def env(extra: dict[str, str] | None = None) -> dict[str, str]:
        # nothing inherited may configure the daemons (nor make them talk to systemd)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("STORYMESH_", "NOTIFY_"))}
        env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO),
                    # a worker that lost its broker retries at most every 0.5 s
                    "STORYMESH_RECONNECT_MAX": "0.5", "STORYMESH_DRAIN_GRACE": "5"})
        env.update(extra or {})
        return env

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None,
              module: str = "storymesh") -> Proc:
        """`python -m module args...` (module `testkit.sleepy` for the sleepy agents)."""
        log = self.logs / f"{name}-{len(self.procs)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO,
                                     env=self.env(env), stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def broker(self, endpoint: str, *extra: str, env: dict[str, str] | None = None,
               wait: bool = True) -> Proc:
        """A broker daemon bound to `endpoint`; with `wait`, only once it answers MMI."""
        proc = self.spawn("broker", "broker", "--bind", endpoint, *self.common(), *extra,
                          env=env)
        if wait:
            self.wait_until(lambda: snapshot(endpoint) is not None, START_TIMEOUT,
                            f"broker on {endpoint} answering")
        return proc

    def echo(self, endpoint: str, *extra: str, env: dict[str, str] | None = None) -> Proc:
        """An echo agent daemon for the broker at `endpoint` (not waited for: see workers())."""
        return self.spawn("echo", "agent", "echo", "--broker", endpoint, *self.common(),
                          *extra, env=env)

    def sleepy(self, role: str, endpoint: str, cost: float,
               env: dict[str, str] | None = None) -> Proc:
        """A sleep-based agent daemon (`python -m testkit.sleepy`); its log (INFO) has a
        `start ...` and a `done ...` line for each step."""
        return self.spawn(f"sleepy-{role}", role, "--broker", endpoint, "--cost", str(cost),
                          "--config", "/dev/null", "--log-level", "info", env=env,
                          module="testkit.sleepy")

    @staticmethod
    def common() -> list[str]:
        return ["--heartbeat-interval", str(HEARTBEAT), "--liveness", str(LIVENESS),
                "--log-level", "warning", "--config", "/dev/null"]

    def cli(self, *args: str, timeout: float = START_TIMEOUT,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A one-shot `storymesh` command, its output captured."""
        return subprocess.run([sys.executable, "-m", "storymesh", *args], cwd=REPO,
                              env=self.env(env), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def workers(self, endpoint: str, service: str, pids: list[int],
                timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Wait until exactly the agent processes `pids` are registered for `service`
        (told apart by the pid in their READY metadata); return that snapshot."""
        def registered() -> dict[str, Any] | None:
            snap = snapshot(endpoint)
            if snap is None:
                return None
            found = sorted(w["meta"].get("pid") for w in snap["workers"]
                           if w["service"] == service)
            return snap if found == sorted(pids) else None
        return self.wait_until(registered, timeout, f"{service} workers {pids} registered")

    def wait_until(self, probe: Callable[[], T | None], timeout: float, what: str,
                   interval: float = 0.05) -> T:
        """`probe()` until it returns something truthy, at most `timeout` seconds."""
        return wait_for(probe, timeout, what, interval=interval, describe=self.tails)

    def tails(self) -> str:
        return "\n".join(p.tail() for p in self.procs)

    def close(self) -> None:
        for proc in self.procs:
            # nothing more we can do; the OS reaps it with the test runner
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.kill()
