"""`storymesh monitor`: a live view of the broker, its services, its workers and the stories
in progress, and `--once` / `--json` snapshots for scripts.

Three layers, so the view is testable without a terminal:
- `Poller` talks to the broker (`mmi.storymesh.snapshot`) and, when a story service is
  registered, to `story.query` (`list`, then `status` of each story in progress). A broker
  that does not answer is not an error: the poll says it is down, and the next poll tries
  again on a fresh socket, so the monitor rides out broker restarts.
- `AgentScraper` reads the Prometheus `/metrics` of agents that announced one in READY
  (`meta["metrics"]`), at most every `AGENT_EVERY` seconds each, and turns the counters of
  the last minute into tokens per second (authors) and images per minute (illustrators).
  An agent whose metrics do not answer shows nothing more, and is asked again later.
- `Observation` is what one poll saw (pure data), and `rates()` turns two of them into
  messages per second.
- `render(observation)` is a pure function from that data to a rich renderable.

With a list of brokers (a pair) the poller asks each one for its snapshot on its own socket;
the view shows every broker's pair state and fail-overs, and the services, workers and
stories of the active one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from storymesh.core import schema
from storymesh.errors import RequestFailed, RequestTimeout, StorymeshError
from storymesh.ops.health import SERVING, pair_state
from storymesh.runtime.client import Client
from storymesh.settings import Settings, endpoints

log = logging.getLogger(__name__)

STORY_QUERY = "story.query"
IN_PROGRESS = ("accepted", "running")
STORY_LIMIT = 50        # stories listed per poll; the view shows those in progress
STORY_DETAILS = 10      # stories whose current step is asked for, per poll
STORY_EVERY = 1.0       # seconds between story polls (the snapshot is polled faster)
MESSAGE_COUNTERS = ("requests", "replies", "partials")
AGENT_EVERY = 2.0       # seconds between scrapes of one agent's /metrics
AGENT_RETRY = 10.0      # seconds before asking an agent whose metrics did not answer again
AGENT_TIMEOUT = 0.3     # seconds one scrape may take
RATE_WINDOW = 60.0      # the agents' rates are over the last minute
# What the monitor shows of an agent: (metric whose samples are summed, key, per seconds)
AGENT_RATES = (("storymesh_author_tokens_total", "tokens_per_s", 1.0),
               ("storymesh_illustrator_images_total", "images_per_min", 60.0))


@dataclass
class Observation:
    """One poll: the broker snapshot (None while down) and the stories in progress."""

    broker: str
    at: float                                   # wall clock of the poll
    snapshot: dict[str, Any] | None = None
    error: str | None = None                    # why the snapshot is missing
    down_since: float | None = None             # wall clock of the first failed poll
    stories: list[dict[str, Any]] | None = None  # None: no story service registered
    messages_per_s: float | None = None
    # per agent metrics address ("host:port"): rates from its /metrics, when it answers
    agents: dict[str, dict[str, float]] = field(default_factory=dict)
    # a broker pair: each endpoint's `endpoint`, `up`, `state`, `failovers`, `error`
    brokers: list[dict[str, Any]] | None = None

    @property
    def up(self) -> bool:
        return self.snapshot is not None

    def as_json(self) -> dict[str, Any]:
        out = {"broker": self.broker, "up": self.up, "at": self.at, "error": self.error,
               "messages_per_s": self.messages_per_s, "snapshot": self.snapshot,
               "stories": self.stories, "agents": self.agents}
        if self.brokers is not None:
            out["brokers"] = self.brokers
        return out


def rates(previous: Observation | None, current: Observation) -> float | None:
    """Messages per second between two polls of the same broker run (None if unknown)."""
    if previous is None or previous.snapshot is None or current.snapshot is None:
        return None
    elapsed = float(current.snapshot["uptime"]) - float(previous.snapshot["uptime"])
    if elapsed <= 0:  # the broker restarted between the polls: its counters started again
        return None
    count = sum(int(current.snapshot["counters"].get(k, 0))
                - int(previous.snapshot["counters"].get(k, 0)) for k in MESSAGE_COUNTERS)
    return max(0.0, count / elapsed)


def current_step(steps: dict[str, Any] | None, status: str) -> str:
    """A story's step in words, from `story.query` op `status` progress counts."""
    if not steps:
        return status
    chapters = int(steps.get("chapters") or 0)
    written = int(steps.get("chapters_written") or 0)
    pictures = int(steps.get("pictures_painted") or 0)
    if not steps.get("outline"):
        return "outline"
    parts = []
    if written < chapters:
        parts.append(f"chapter {written + 1}/{chapters}")
    if pictures < chapters + 1:
        parts.append(f"pictures {pictures}/{chapters + 1}")
    return ", ".join(parts) if parts else "publishing"


# --- the agents' own metrics -----------------------------------------------------------

def metrics_address(worker: dict[str, Any]) -> str | None:
    """Where a worker's agent serves /metrics ("host:port"), a wildcard bind read as the
    worker's host; None when it announced none."""
    meta = worker.get("meta") or {}
    address = meta.get("metrics")
    if not isinstance(address, str) or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "[::]", "", "*") and isinstance(meta.get("host"), str):
        host = meta["host"]
    return f"{host}:{port}"


def read_totals(text: str) -> dict[str, float]:
    """The sums of the AGENT_RATES counters in a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {name for name, _, _ in AGENT_RATES}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def fetch_metrics(address: str, timeout: float) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as reply:
        text: str = reply.read().decode("utf-8", errors="replace")
        return text


@dataclass
class _Agent:
    samples: deque[tuple[float, dict[str, float]]] = field(default_factory=deque)
    next_at: float = float("-inf")


class AgentScraper:
    """Scrapes the agents' /metrics and keeps the last minute of their counters."""

    def __init__(self, fetch: Callable[[str, float], str] = fetch_metrics,
                 timeout: float = AGENT_TIMEOUT) -> None:
        self.fetch = fetch
        self.timeout = timeout
        self._agents: dict[str, _Agent] = {}

    def figures(self, snap: dict[str, Any], now: float) -> dict[str, dict[str, float]]:
        """Rates per metrics address of the snapshot's workers, scraping those due."""
        addresses = {a for w in snap.get("workers", []) if (a := metrics_address(w))}
        for gone in set(self._agents) - addresses:
            del self._agents[gone]
        out: dict[str, dict[str, float]] = {}
        for address in sorted(addresses):
            agent = self._agents.setdefault(address, _Agent())
            if now >= agent.next_at:
                self._scrape(address, agent, now)
            rates = agent_rates(agent.samples)
            if rates:
                out[address] = rates
        return out

    def _scrape(self, address: str, agent: _Agent, now: float) -> None:
        try:
            totals = read_totals(self.fetch(address, self.timeout))
        except (OSError, ValueError) as exc:
            log.debug("agent metrics at %s: %s", address, exc)
            agent.samples.clear()  # nothing stale is shown while it does not answer
            agent.next_at = now + AGENT_RETRY
            return
        agent.next_at = now + AGENT_EVERY
        samples = agent.samples
        if samples and any(totals.get(k, 0.0) < v for k, v in samples[-1][1].items()):
            samples.clear()  # a counter went back: the agent restarted
        samples.append((now, totals))
        while len(samples) > 2 and samples[1][0] <= now - RATE_WINDOW:
            samples.popleft()  # keep one sample at or past the window's start


def agent_rates(samples: deque[tuple[float, dict[str, float]]]) -> dict[str, float]:
    """Rates between the oldest and newest samples (over about the last minute)."""
    if len(samples) < 2:
        return {}
    (first_at, first), (last_at, last) = samples[0], samples[-1]
    elapsed = last_at - first_at
    if elapsed <= 0:
        return {}
    return {key: (last[name] - first.get(name, 0.0)) / elapsed * per
            for name, key, per in AGENT_RATES if name in last}


def _work(rates: dict[str, float] | None) -> str:
    if not rates:
        return "-"
    parts = []
    if "tokens_per_s" in rates:
        parts.append(f"{rates['tokens_per_s']:.1f} tok/s")
    if "images_per_min" in rates:
        parts.append(f"{rates['images_per_min']:.1f} img/min")
    return " ".join(parts) or "-"


# --- rendering ------------------------------------------------------------------------

def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _pair_lines(obs: Observation) -> list[Text]:
    """One line per broker of a pair: its state and fail-overs, or why it is down."""
    lines = []
    for b in obs.brokers or []:
        if not b["up"]:
            lines.append(Text.assemble("\n", ("down", "red"), f"  {b['endpoint']}: ",
                                       (b.get("error") or "no answer", "red")))
            continue
        style = "bold green" if b["state"] in SERVING else "yellow"
        lines.append(Text.assemble("\n", (str(b["state"]), style), f"  {b['endpoint']}"
                                   f"  fail-overs {b.get('failovers') or 0}"))
    return lines


def _broker_panel(obs: Observation) -> Panel:
    if obs.snapshot is None:
        since = f" for {_age(obs.at - obs.down_since)}" if obs.down_since else ""
        text = Text.assemble(("DOWN", "bold red"), f"  broker {obs.broker}{since}: ",
                             (obs.error or "no answer", "red"), *_pair_lines(obs))
        return Panel(text, title="broker", border_style="red")
    snap = obs.snapshot
    c = snap.get("counters", {})
    rate = "-" if obs.messages_per_s is None else f"{obs.messages_per_s:.1f}"
    errors = sum(c.get(k, 0) for k in ("busy", "expired", "worker_lost", "no_such_service",
                                        "too_large", "bad_request", "shutting_down"))
    text = Text.assemble(
        ("UP", "bold green"), f"  broker {obs.broker}  pid {snap.get('pid', '?')}  "
        f"uptime {_age(snap.get('uptime'))}\n",
        f"requests {c.get('requests', 0)}  replies {c.get('replies', 0)}  "
        f"partials {c.get('partials', 0)}  messages/s {rate}  errors {errors}  "
        f"re-dispatched {c.get('redispatched', 0)}  workers expired "
        f"{c.get('workers_expired', 0)}  malformed {c.get('malformed', 0)}", *_pair_lines(obs))
    return Panel(text, title="broker pair" if obs.brokers else "broker", border_style="green")


def _services_table(snap: dict[str, Any]) -> Table:
    table = Table("service", "workers", "idle", "busy", "queue", "served", "failed",
                  "mean time", title="services", expand=True)
    for name, s in sorted(snap.get("services", {}).items()):
        mean = s.get("mean_service_time")
        style = "red" if s.get("workers", 0) == 0 else None
        table.add_row(name, str(s.get("workers", 0)), str(s.get("idle", 0)),
                      str(s.get("busy", 0)), str(s.get("queue", 0)), str(s.get("served", 0)),
                      str(s.get("failed", 0)), "-" if mean is None else f"{mean:.3f}s",
                      style=style)
    return table


def _loaded(meta: dict[str, Any]) -> str:
    parts = [str(meta[k]) for k in ("backend", "model", "device", "dtype") if meta.get(k)]
    return " ".join(parts) or "-"


IDLE_GROUP = 3  # more idle connections than this of one process and service: one row


def _workers_table(snap: dict[str, Any],
                   agents: dict[str, dict[str, float]] | None = None) -> Table:
    """One row per worker, except that many idle connections of one process and service
    (a story service's 16 watch slots) share a row, so busy workers stay in view. With
    `agents` (rates from the agents' own metrics) a `work` column shows them."""
    table = Table(title="workers", expand=True)
    for name in ("service", "worker", "state", "heartbeat", "served",
                 *(["work"] if agents else [])):
        table.add_column(name, no_wrap=True)  # short values that must stay readable
    for name in ("request", "story", "host", "loaded"):
        table.add_column(name, overflow="fold")
    idle: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for w in snap.get("workers", []):
        if w.get("state") == "idle":
            idle.setdefault((w["service"], _host(w)), []).append(w)
    grouped = {id(w) for group in idle.values() if len(group) > IDLE_GROUP for w in group}
    rows: list[tuple[tuple[str, str], list[Any]]] = []
    for w in snap.get("workers", []):
        if id(w) in grouped:
            continue
        req = w.get("request") or {}
        state_style = "yellow" if w.get("state") == "busy" else "green"
        work = [_work(agents.get(metrics_address(w) or ""))] if agents else []
        rows.append(((w["service"], w["id"]), [
            w["service"], w["id"], Text(str(w.get("state")), style=state_style),
            _age(w.get("heartbeat_age")), str(w.get("served", 0)), *work,
            f"{req.get('id') or '?'} ({_age(req.get('age'))})" if req else "-",
            req.get("corr") or "-", _host(w), _loaded(w.get("meta") or {})]))
    for (service, host), group in idle.items():
        if len(group) > IDLE_GROUP:
            oldest = max((w.get("heartbeat_age") or 0.0) for w in group)
            work = [_work(agents.get(metrics_address(group[0]) or ""))] if agents else []
            rows.append(((service, ""), [
                service, f"{len(group)} connections", Text("idle", style="green"),
                _age(oldest), str(sum(w.get("served", 0) for w in group)), *work, "-", "-",
                host,
                _loaded(group[0].get("meta") or {})]))
    for _, row in sorted(rows, key=lambda r: r[0]):
        table.add_row(*row)
    return table


def _host(worker: dict[str, Any]) -> str:
    meta = worker.get("meta") or {}
    return f"{meta.get('host', '?')}:{meta.get('pid', '?')}" if meta else "-"


def _stories_table(stories: list[dict[str, Any]]) -> Table:
    table = Table("story", "status", "step", "title", "updated", title="stories in progress",
                  expand=True)
    for s in stories:
        table.add_row(s.get("corr", "?"), s.get("status", "?"), s.get("step", "?"),
                      s.get("title") or s.get("plot") or "-",
                      time.strftime("%H:%M:%S", time.localtime(s["updated"]))
                      if s.get("updated") else "-")
    return table


def render(obs: Observation, *, live: bool = False) -> RenderableType:
    """The whole view of one observation (pure: data in, renderable out)."""
    parts: list[RenderableType] = [_broker_panel(obs)]
    if obs.snapshot is not None:
        parts += [_services_table(obs.snapshot), _workers_table(obs.snapshot, obs.agents)]
        if obs.stories is not None:
            parts.append(_stories_table(obs.stories))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(obs.at))
    hint = "  (Ctrl-C to quit)" if live else ""
    parts.append(Text(f"storymesh monitor  {stamp}{hint}", style="dim"))
    return Group(*parts)


# --- polling --------------------------------------------------------------------------

class Poller:
    """Polls one broker; survives it going away and coming back."""

    def __init__(self, settings: Settings, *, timeout: float = 1.0,
                 clock: Callable[[], float] = time.time,
                 context: zmq.Context[Any] | None = None,
                 scraper: AgentScraper | None = None) -> None:
        self.settings = settings
        self.scraper = scraper or AgentScraper()
        self.context = context  # a caller's own context (needed to reach inproc://)
        self.timeout = timeout
        self.clock = clock
        self.endpoints = endpoints(settings.broker)
        self._clients: dict[str, Client] = {}
        self._endpoint = self.endpoints[0]  # the broker whose services are shown
        self._last: Observation | None = None
        self._down_since: float | None = None
        self._stories: list[dict[str, Any]] | None = None
        self._stories_at = float("-inf")

    def poll(self) -> Observation:
        now = self.clock()
        if len(self.endpoints) == 1:
            obs = Observation(self.settings.broker, now)
            obs.snapshot, obs.error = self._snapshot_of(self._endpoint)
        else:
            obs = self._poll_pair(now)
        if obs.snapshot is None:
            self._down_since = self._down_since or now
            obs.down_since = self._down_since
            self._stories = None
        else:
            self._down_since = None
            obs.stories = self._poll_stories(obs.snapshot, now)
            obs.agents = self.scraper.figures(obs.snapshot, now)
        obs.messages_per_s = rates(self._last, obs)
        if obs.snapshot is not None:
            self._last = obs
        return obs

    def _poll_pair(self, now: float) -> Observation:
        """Every broker of the list; the active one's snapshot is the one shown."""
        brokers, shown = [], None
        for endpoint in self.endpoints:
            snap, error = self._snapshot_of(endpoint)
            state = None if snap is None else pair_state(snap)
            brokers.append({"endpoint": endpoint, "up": snap is not None, "state": state,
                            "failovers": ((snap or {}).get("pair") or {}).get("failovers"),
                            "error": error})
            if snap is not None and (shown is None or state in SERVING):
                shown = (endpoint, snap)
        if shown is not None and shown[0] != self._endpoint:
            self._last = None  # another broker's counters: no rate across the move
            self._endpoint = shown[0]
        obs = Observation(self._endpoint, now, brokers=brokers)
        if shown is None:
            obs.error = "no broker of the list answers"
        else:
            obs.snapshot = shown[1]
        return obs

    def _snapshot_of(self, endpoint: str) -> tuple[dict[str, Any] | None, str | None]:
        """(snapshot, None) or (None, why not)."""
        try:
            return self._connect(endpoint).snapshot(), None
        except RequestTimeout:
            self._reset(endpoint)  # a fresh socket next time: nothing stale is left on it
            return None, f"no answer within {self.timeout:g} s"
        except (RequestFailed, StorymeshError) as exc:
            self._reset(endpoint)
            return None, str(exc) or type(exc).__name__

    def _connect(self, endpoint: str | None = None) -> Client:
        endpoint = endpoint or self._endpoint
        client = self._clients.get(endpoint)
        if client is None:
            client = self._clients[endpoint] = Client(
                endpoint, settings=self.settings.peer_section(), context=self.context,
                timeout=self.timeout, retries=1)
        return client

    def _poll_stories(self, snap: dict[str, Any], now: float) -> list[dict[str, Any]] | None:
        if snap.get("services", {}).get(STORY_QUERY, {}).get("workers", 0) == 0:
            self._stories = None
            return None
        if now - self._stories_at < STORY_EVERY and self._stories is not None:
            return self._stories
        self._stories_at = now
        try:
            self._stories = self._fetch_stories()
        except (RequestTimeout, RequestFailed) as exc:
            log.debug("story.query failed: %s", exc)
            self._reset()
        return self._stories

    def _fetch_stories(self) -> list[dict[str, Any]]:
        client = self._connect()
        listed = client.call(STORY_QUERY, {"op": "list", "limit": STORY_LIMIT}).payload
        running = [s for s in listed.get("stories", []) if s.get("status") in IN_PROGRESS]
        for story in running[:STORY_DETAILS]:
            try:
                status = client.call(STORY_QUERY, {"op": "status", "corr": story["corr"]}).payload
            except RequestFailed:
                continue  # finished or pruned in between: the next poll will not list it
            story["status"] = status.get("status", story.get("status"))
            story["step"] = current_step(status.get("steps"), story["status"])
        return running

    def _reset(self, endpoint: str | None = None) -> None:
        client = self._clients.pop(endpoint or self._endpoint, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        for endpoint in list(self._clients):
            self._reset(endpoint)


def run_monitor(settings: Settings, *, refresh: float = 0.25, once: bool = False,
                as_json: bool = False, console: Console | None = None,
                stop: threading.Event | None = None) -> int:
    """The `storymesh monitor` command; returns its exit code.

    `once` prints one snapshot (JSON with `as_json`) and exits 0 when the broker answered,
    2 when it is down; otherwise the live view runs until Ctrl-C (or `stop`).
    """
    console = console or Console()
    stop = stop or threading.Event()
    poller = Poller(settings, timeout=max(0.5, min(2.0, refresh * 4)))
    try:
        if once:
            obs = poller.poll()
            if as_json:
                console.print_json(json.dumps(obs.as_json(), default=str))
            else:
                console.print(render(obs))
            return schema.EXIT_OK if obs.up else schema.EXIT_DOWN
        rate = max(1, int(1 / refresh))
        with Live(render(poller.poll(), live=True), console=console, refresh_per_second=rate,
                  screen=False) as live:
            while not stop.wait(refresh):
                live.update(render(poller.poll(), live=True))
    except KeyboardInterrupt:
        pass
    finally:
        poller.close()
    return schema.EXIT_OK
