"""`storymesh up`: the all-in-one launcher, a broker and the story agents as supervised children.

It owns the plan of child processes (a broker that binds `--bind`, then an author, an
illustrator, a publisher and the story service that connect to it, each as
`python -m storymesh ...` with `--config` and the log settings passed through), starting
them, restarting a child that dies (with exponential backoff, logged), giving up when a child
keeps dying (`RestartPolicy`: `limit` exits within `window` seconds) or exits with the usage
code (a configuration error no restart can fix), and stopping them all: SIGTERM to the agents
(each finishes its current job), then to the broker, SIGKILL past a grace time.

The children run in their own session, so a Ctrl-C in the terminal reaches only `up`, which
then stops them in order (agents before the broker, so their last replies still get through).
They never outlive `up`: on Linux each asks the kernel for SIGTERM when its parent dies
(PR_SET_PDEATHSIG), so a SIGKILLed `up` leaves no orphan broker holding the port (a busy
agent drains its job as on any SIGTERM); under systemd the unit's cgroup does the same.
Signal handlers only set a flag; the loop below notices it. The restart rules are pure
(`CrashHistory.crashed(now)`) and tested with a fake clock.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from storymesh.core import schema
from storymesh.errors import ConfigError
from storymesh.settings import Settings, parse_bind

log = logging.getLogger(__name__)

TURN = 0.1              # seconds between looks at the children and the stop flag
READY_EVERY = 0.5       # seconds between readiness probes until every service has a worker
READY_WARN_AFTER = 60.0  # seconds after which a mesh that is still not ready is reported
BROKER_GRACE = 5.0      # seconds the broker gets to answer what it holds on SIGTERM
EXIT_CRASH_LOOP = 1
SERVICES = ("story.author", "story.illustrator", "story.publisher", "story.submit",
            "story.query", "story.watch")


# --- pure parts: endpoints, the plan, the restart rule ----------------------------------

def connect_endpoint(bind: str) -> str:
    """Where the children connect for a broker that binds `bind`.

    A wildcard host (`*`, `0.0.0.0`, `::`) is reached on loopback. Raises ConfigError for
    what children in other processes cannot reach: `inproc://`, or a port the OS picks.
    """
    scheme, _, rest = bind.partition("://")
    if scheme == "ipc":
        return bind
    if scheme != "tcp":
        raise ConfigError(f"storymesh up needs a tcp:// or ipc:// endpoint to bind, not {bind!r} "
                          "(the agents run in other processes)")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or int(port) == 0:
        raise ConfigError(f"storymesh up needs a fixed port in --bind, e.g. tcp://127.0.0.1:5555; "
                          f"got {bind!r}")
    if host in ("*", "0.0.0.0", ""):
        host = "127.0.0.1"
    elif host in ("[::]", "::", "[*]"):
        host = "[::1]"
    return f"tcp://{host}:{port}"


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One child process: its name, its command line, and what the table shows."""

    name: str
    argv: tuple[str, ...]
    endpoint: str
    note: str = ""
    metrics: str = ""  # its Prometheus URL, with `--metrics-base`

    @property
    def is_broker(self) -> bool:
        return self.name == "broker"


def plan(settings: Settings, *, authors: int = 1, illustrators: int = 1,
         config: Path | None = None, python: str = sys.executable,
         http: bool = False, metrics_base: str | None = None) -> list[ChildSpec]:
    """The children of `storymesh up`: a broker on `settings.bind`, then the agents, and
    with `http` the HTTP gateway on `settings.gateway.http`. With `metrics_base`
    ([HOST:]PORT) the broker and the agents serve Prometheus metrics on consecutive ports
    from PORT, in the order of the plan."""
    if authors < 1 or illustrators < 1:
        raise ConfigError("storymesh up needs at least one author and one illustrator")
    bind = settings.bind
    connect = connect_endpoint(bind)
    common = ["--log-level", settings.log_level, "--log-format", settings.log_format]
    if config is not None:
        common += ["--config", str(config)]
    base = (python, "-m", "storymesh")
    specs = [ChildSpec("broker", (*base, "broker", "--bind", bind, *common), bind, "binds")]
    counts = {"author": authors, "illustrator": illustrators, "publisher": 1, "story": 1}
    for agent, count in counts.items():
        note = (f"journal {settings.journal}" if agent == "story"
                else f"backend {settings.agent(agent).backend}")
        for i in range(1, count + 1):
            name = agent if count == 1 else f"{agent}-{i}"
            specs.append(ChildSpec(name, (*base, "agent", agent, "--broker", connect, *common),
                                   connect, note))
    if http:
        listen = settings.gateway.http
        specs.append(ChildSpec("gateway", (*base, "gateway", "--broker", connect, "--http",
                                           listen, *common),
                               f"http://{listen}", "HTTP API and web page"))
    return specs if metrics_base is None else with_metrics(specs, metrics_base)


def with_metrics(specs: Sequence[ChildSpec], base: str) -> list[ChildSpec]:
    """`specs` with `--metrics-bind HOST:PORT` on each broker and agent, PORT counting up
    from `base`'s; ConfigError for a base whose ports are not all fixed and valid."""
    host, port = parse_bind(base)
    served = [s for s in specs if s.argv[3:4] in (("broker",), ("agent",))]
    if port == 0 or port + len(served) - 1 > 65535:
        raise ConfigError(f"--metrics-base {base!r}: needs a fixed port with "
                          f"{len(served)} free ports from it (at most 65535)")
    shown = f"[{host}]" if ":" in host else host
    ports = {s.name: port + i for i, s in enumerate(served)}
    return [replace(s, argv=(*s.argv, "--metrics-bind", f"{shown}:{ports[s.name]}"),
                    metrics=f"http://{shown}:{ports[s.name]}/metrics")
            if s.name in ports else s for s in specs]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Backoff `initial * 2**(n-1)` (capped) after the n-th exit within `window` seconds;
    the `limit`-th exit within `window` means the child keeps crashing: give up."""

    initial: float = 0.5
    cap: float = 10.0
    window: float = 30.0
    limit: int = 5


@dataclass(slots=True)
class CrashHistory:
    """The recent exits of one child (monotonic times)."""

    policy: RestartPolicy
    exits: deque[float] = field(default_factory=deque)

    def crashed(self, now: float) -> float | None:
        """Record an exit at `now`; the delay before the restart, or None to give up."""
        self.exits.append(now)
        while self.exits and self.exits[0] <= now - self.policy.window:
            self.exits.popleft()
        count = len(self.exits)
        if count >= self.policy.limit:
            return None
        return min(self.policy.cap, self.policy.initial * 2.0 ** (count - 1))


# --- the supervisor ----------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, loaded once in `up` (never in a forked child); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6",
                                                use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _load_prctl()


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn: the child gets SIGTERM when `up` dies, even by SIGKILL (Linux)."""
    prctl = _prctl
    if prctl is None:
        return None

    def arm() -> None:  # runs in the child between fork and exec: no imports, no locks
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # `up` died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


Popen = Callable[..., "subprocess.Popen[bytes]"]


@dataclass(slots=True)
class Child:
    """A supervised child: its spec, its current process, its crash record."""

    spec: ChildSpec
    history: CrashHistory
    proc: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None
    starts: int = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _how(code: int) -> str:
    """How a child ended, from its return code (negative: the signal that killed it)."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


class GiveUp(Exception):
    """A child cannot be kept running; `code` is what `up` exits with."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Supervisor:
    """Starts the children, restarts the ones that die, stops them all on `stop`."""

    def __init__(self, specs: Sequence[ChildSpec], stop: threading.Event, *,
                 policy: RestartPolicy = RestartPolicy(), grace: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 popen: Popen = subprocess.Popen) -> None:
        self.children = [Child(spec, CrashHistory(policy)) for spec in specs]
        self.stop = stop
        self.grace = grace
        self.clock = clock
        self.popen = popen
        self.on_turn: Callable[[], None] | None = None  # hook: the readiness probe

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def run(self) -> int:
        """Supervise until `stop` (returns 0) or a child cannot be kept up (its code)."""
        try:
            while not self.stop.wait(TURN):
                self.turn(self.clock())
                if self.on_turn is not None:
                    self.on_turn()
        except GiveUp as exc:
            log.error("%s; stopping everything", exc)
            return exc.code
        finally:
            self.stop_all()
        log.info("storymesh up: every child stopped")
        return schema.EXIT_OK

    def turn(self, now: float) -> None:
        """Notice exited children and restart the ones whose backoff has passed."""
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    self._spawn(child)
                    log.warning("%s restarted (pid %d)", child.spec.name, child.pid)
                continue
            if child.proc is None or child.proc.poll() is None:
                continue
            self._on_exit(child, child.proc.returncode, now)

    def _on_exit(self, child: Child, code: int, now: float) -> None:
        name, pid = child.spec.name, child.pid
        how = _how(code)
        if code == schema.EXIT_USAGE:
            raise GiveUp(f"{name} (pid {pid}) {how}: a usage or configuration error, which a "
                         "restart cannot fix (see its message above)", schema.EXIT_USAGE)
        delay = child.history.crashed(now)
        if delay is None:
            policy = child.history.policy
            raise GiveUp(f"{name} keeps crashing ({policy.limit} exits within "
                         f"{policy.window:g} s, the last one {how})", EXIT_CRASH_LOOP)
        child.restart_at = now + delay
        log.warning("%s (pid %d) %s; restarting in %.1f s", name, pid, how, delay)

    def _spawn(self, child: Child) -> None:
        # A session of its own: a terminal's Ctrl-C reaches `up` only, which stops the
        # children in order.
        child.proc = self.popen(list(child.spec.argv), stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))
        child.starts += 1
        log.info("started %s (pid %d): %s", child.spec.name, child.proc.pid,
                 " ".join(child.spec.argv[2:]))

    # -- stopping --

    def stop_all(self) -> None:
        """SIGTERM the agents and wait; then the broker; SIGKILL whatever outlives the grace."""
        agents = [c for c in self.children if not c.spec.is_broker]
        brokers = [c for c in self.children if c.spec.is_broker]
        self._terminate(agents, self.grace)
        self._terminate(brokers, BROKER_GRACE)

    def _terminate(self, children: list[Child], grace: float) -> None:
        live = [c for c in children if c.running()]
        for child in live:
            self._signal(child, signal.SIGTERM)
        end = time.monotonic() + grace
        for child in live:
            assert child.proc is not None  # running() checked it
            try:
                child.proc.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) still running %.0f s after SIGTERM; killing it",
                            child.spec.name, child.pid, grace)
                self._signal(child, signal.SIGKILL)
                child.proc.wait()
        for child in children:
            child.restart_at = None

    @staticmethod
    def _signal(child: Child, sig: signal.Signals) -> None:
        assert child.proc is not None  # only started children are signalled
        with contextlib.suppress(ProcessLookupError):  # it exited between check and signal
            child.proc.send_signal(sig)


# --- readiness and the table ---------------------------------------------------------------

class ReadinessProbe:
    """Asks the broker (MMI) which story services have workers, until all do; then says so."""

    def __init__(self, endpoint: str, settings: Settings, on_ready: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        import zmq

        self.endpoint = endpoint
        self.settings = settings
        self.on_ready = on_ready
        self.clock = clock
        self.context: zmq.Context[Any] = zmq.Context()
        self.started = clock()
        self.next_probe = self.started
        self.missing: list[str] = list(SERVICES)
        self.warned = False

    def __call__(self) -> None:
        now = self.clock()
        if not self.missing or now < self.next_probe:
            return
        self.next_probe = now + READY_EVERY
        from storymesh.runtime.client import Client

        # A fresh socket per round: a late MMI answer to an earlier round must not be
        # taken as the answer about another service.
        with Client(self.endpoint, settings=self.settings.peer_section(), context=self.context,
                    timeout=0.3, retries=1) as client:
            for service in list(self.missing):  # stop at the first miss: a short turn
                if client.service_available(service) is not True:
                    break
                self.missing.remove(service)
        if not self.missing:
            log.info("every story service has a worker (%.1f s after start)", now - self.started)
            self.on_ready()
        elif now - self.started > READY_WARN_AFTER and not self.warned:
            self.warned = True
            log.warning("still no worker for %s after %.0f s", ", ".join(self.missing),
                        READY_WARN_AFTER)

    def close(self) -> None:
        self.context.term()


def _show(children: Sequence[Child], out: Any) -> None:
    from rich.table import Column, Table

    metrics = any(child.spec.metrics for child in children)
    # addresses and paths are what a person copies: fold them on a narrow terminal, never cut
    endpoint, urls, note = (Column(name, overflow="fold") for name in ("endpoint", "metrics", ""))
    table = Table("process", "pid", endpoint, *([urls] if metrics else []), note,
                  title="storymesh up")
    for child in children:
        table.add_row(child.spec.name, str(child.pid), child.spec.endpoint,
                      *([child.spec.metrics or "-"] if metrics else []), child.spec.note)
    out.print(table)


def run_up(settings: Settings, *, authors: int = 1, illustrators: int = 1,
           config: Path | None = None, stop: threading.Event | None = None,
           policy: RestartPolicy = RestartPolicy(), http: bool = False,
           metrics_base: str | None = None) -> int:
    """`storymesh up`: start, show and supervise the mesh until SIGTERM/SIGINT; exit code.

    Raises ConfigError (before starting anything) for an endpoint the children cannot use.
    """
    from rich.console import Console

    from storymesh.plumbing.signals import install_signal_handlers

    specs = plan(settings, authors=authors, illustrators=illustrators, config=config,
                 http=http, metrics_base=metrics_base)
    if stop is None:
        stop = threading.Event()
        install_signal_handlers(stop, (signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
    console = Console(soft_wrap=True)
    supervisor = Supervisor(specs, stop, policy=policy, grace=settings.drain_grace + 2.0)
    connect = connect_endpoint(settings.bind)
    probe = ReadinessProbe(connect, settings, lambda: console.print(
        f"[green]ready[/green] on {connect}: storymesh story --broker {connect} --plot '...'"))
    supervisor.on_turn = probe
    try:
        try:
            supervisor.start()
        except BaseException:
            supervisor.stop_all()
            raise
        _show(supervisor.children, console)
        log.info("storymesh up (pid %d) supervising %d processes; Ctrl-C stops them",
                 os.getpid(), len(specs))
        return supervisor.run()
    finally:
        probe.close()
