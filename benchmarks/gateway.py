"""The HTTP gateway under load: many event streams on few stories, and a burst of submissions.

Everything runs as its own process on loopback, as deployed: a broker, sleep-based agents
(`python -m testkit.sleepy ROLE --cost S`: every step sleeps S seconds), the story service, and
one gateway (`python -m storymesh gateway`, its submission rate limit and stream cap raised).
This process is the client side.

1. **Streams**: STORIES stories are submitted over HTTP; each is followed by STREAMS_PER
   event streams (`GET /stories/{id}/events`, 200 in all by default) and, for comparison,
   one direct `story.watch` through the mesh (`StoryClient.events`, in a thread each). Checks
   and figures:
   - no event lost or duplicated: every stream gets each step of its story exactly once (the
     steps the direct watch saw), ids never repeat, the last event is `complete`;
   - the direct watch's own latency: its arrival after the story service journalled the
     step (the story's history, wall clock of this machine), p50 and p99;
   - the latency the gateway adds to an event: its arrival on a stream minus its arrival on
     the direct watch (monotonic clock of this process), p50 and p99, only for events that
     happened after the stream was open (a replay has no latency). Aim: the added p99
     within the direct watch's own p99;
   - the gateway's CPU time (user + system, all threads) per event delivered, and its RSS.
2. **Burst**: RATE submissions a second for SECONDS seconds (`POST /stories`, one story of
   one chapter each), each sent on schedule without waiting for the previous answer: answers
   by status, latency p50/p99, and afterwards that every accepted id is in `GET /stories`.

    .venv/bin/python benchmarks/gateway.py [--quick] [--json]
        [--stories 20 --streams-per 10 --rate 50 --seconds 10 --cost 0.1]

Needs the `web` extra, psutil (the `bench` extra) and httpx (FastAPI's test client's).
Every child is ended on exit (SIGTERM, then SIGKILL after 3 s); every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from storymesh import settings as settings_mod
from storymesh.story.api import StoryClient
from testkit.mesh import free_port

PHASE_TIMEOUT = 180.0  # seconds any phase may take before it is called off
START_TIMEOUT = 60.0
Key = tuple[str, int]  # (event name, index in the gateway's numbering)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --- the processes ----------------------------------------------------------------------------


class Children:
    """The mesh and the gateway as child processes, ended however this process ends."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("STORYMESH_")}
        full = {**clean, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
        out = (self.folder / f"{name}.log").open("wb")
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=full, stdout=out,
                                stderr=subprocess.STDOUT)
        self.procs.append((name, proc))
        return proc

    def close(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + 3.0
        for _, proc in self.procs:
            try:
                proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@dataclass(frozen=True)
class Site:
    broker: str
    url: str
    gateway: psutil.Process


def start_site(children: Children, args: argparse.Namespace) -> Site:
    broker = f"tcp://127.0.0.1:{free_port()}"
    port = free_port()
    quiet = ["--log-level", "warning"]
    children.spawn("broker", "-m", "storymesh", "broker", "--bind", broker, *quiet)
    cost = str(args.cost)
    for role, count in (("author", args.authors), ("illustrator", args.illustrators),
                        ("publisher", 1)):
        for n in range(count):
            children.spawn(f"{role}-{n}", "-m", "testkit.sleepy", role, "--broker", broker,
                           "--cost", cost, *quiet)
    # Each followed story holds a watch slot of the story service for its whole run: one for
    # the gateway's watch and one for the direct watch here; a watch beyond the slots queues
    # at the broker until a story ends (and then replays), which is not the gateway's delay.
    slots = str(max(16, 2 * args.stories + 8))
    children.spawn("story", "-m", "storymesh", "agent", "story", "--broker", broker, *quiet,
                   env={"STORYMESH_JOURNAL": str(children.folder / "journal.db"),
                        "STORYMESH_WATCH_SLOTS": slots})
    gateway = children.spawn(
        "gateway", "-m", "storymesh", "gateway", "--broker", broker,
        "--http", f"127.0.0.1:{port}", *quiet,
        env={"STORYMESH_GATEWAY_SUBMIT_RATE": "100000", "STORYMESH_GATEWAY_SUBMIT_BURST": "100000",
             "STORYMESH_GATEWAY_MAX_STREAMS": "10000", "STORYMESH_GATEWAY_MAX_CONNECTIONS": "10000"})
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + START_TIMEOUT
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        for name, proc in children.procs:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited at start; see {children.folder}/{name}.log")
        if time.monotonic() > end:
            raise SystemExit(f"the mesh did not become healthy; logs in {children.folder}")
        time.sleep(0.2)
    return Site(broker, url, psutil.Process(gateway.pid))


# --- phase 1: many streams on few stories -----------------------------------------------------


def direct_key(event: dict[str, Any]) -> Key | None:
    """A `story.watch` reply as the gateway names it (chapters and pictures from 1, cover 0)."""
    if event.get("final"):
        return ("complete" if event.get("status") == "complete" else "failed", 0)
    kind, index = str(event.get("event")), int(event.get("index") or 0)
    if kind == "chapter":
        return ("chapter", index + 1)
    if kind == "picture":
        return ("picture", 0 if index < 0 else index + 1)
    if kind in ("outline", "publishing"):
        return (kind, 0)
    return None


@dataclass
class Stream:
    """What one event stream received: (key, id, arrival) in order, and when it opened."""

    story: str
    opened: float = 0.0
    events: list[tuple[Key, str, float]] = field(default_factory=list)
    error: str = ""


async def follow(client: httpx.AsyncClient, url: str, stream: Stream) -> None:
    name, event_id, data = "", "", ""
    try:
        async with client.stream("GET", f"{url}/stories/{stream.story}/events") as answer:
            stream.opened = time.monotonic()
            if answer.status_code != 200:
                stream.error = f"HTTP {answer.status_code}"
                return
            async for line in answer.aiter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif not line and name:
                    now = time.monotonic()
                    index = json.loads(data).get("index", 0) if name in ("chapter",
                                                                        "picture") else 0
                    stream.events.append(((name, int(index)), event_id, now))
                    if name in ("complete", "failed"):
                        return
                    name, event_id, data = "", "", ""
    except httpx.HTTPError as exc:
        stream.error = repr(exc)


@dataclass
class Direct:
    """What the direct `story.watch` of one story saw: arrivals on both clocks."""

    opened_wall: float = 0.0
    arrived: dict[Key, float] = field(default_factory=dict)  # monotonic
    arrived_wall: dict[Key, float] = field(default_factory=dict)  # against the journal's times


def watch_directly(broker: str, story: str, into: Direct, started: threading.Event) -> None:
    settings = settings_mod.load("/dev/null", env={}).peer_section()
    with StoryClient(broker, settings=settings, timeout=PHASE_TIMEOUT) as client:
        into.opened_wall = time.time()
        started.set()
        for event in client.events(story):
            key = direct_key(event)
            if key is not None:
                into.arrived[key] = time.monotonic()
                into.arrived_wall[key] = time.time()


def journal_key(entry: dict[str, Any]) -> Key | None:
    """The step an agent's answer in a story's history finished (`<corr>.<kind>.<index>`)."""
    tail = str(entry.get("id")).rsplit(".", 1)[-1]
    if entry.get("receiver") != "story" or not tail.isdigit():
        return None
    kind, index = str(entry.get("message_type")), int(tail)
    return {"outline": ("outline", 0), "cover": ("picture", 0), "chapter": ("chapter", index + 1),
            "picture": ("picture", index + 1)}.get(kind)


async def watch_latency(client: httpx.AsyncClient, url: str, direct: dict[str, Direct]
                        ) -> list[float]:
    """The direct watch's own latency: its arrival after the journal recorded the step
    (wall clocks of this machine), for steps that finished after it was opened."""
    late: list[float] = []
    for story, seen in direct.items():
        history = (await client.get(f"{url}/stories/{story}/history")).json()["history"]
        for entry in history:
            key = journal_key(entry)
            if key in seen.arrived_wall and entry["time"] > seen.opened_wall:
                late.append(seen.arrived_wall[key] - entry["time"])
    return late


class Sampler:
    """The gateway's peak RSS, sampled in a thread."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def submit(client: httpx.AsyncClient, url: str, body: dict[str, Any]
                 ) -> tuple[int, str, float]:
    sent = time.monotonic()
    try:
        answer = await client.post(f"{url}/stories", json=body)
    except httpx.HTTPError as exc:
        return 0, repr(exc), time.monotonic() - sent
    took = time.monotonic() - sent
    story = answer.json().get("id", "") if answer.status_code == 202 else answer.text[:200]
    return answer.status_code, story, took


async def streams_phase(site: Site, args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.stories * args.streams_per + 50)
    timeout = httpx.Timeout(PHASE_TIMEOUT, connect=10)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        answers = await asyncio.gather(*(submit(client, site.url, {
            "plot": f"A brave mouse number {n} goes looking for the moon", "length": "short",
            "seed": n}) for n in range(args.stories)))
        stories = [story for status, story, _ in answers if status == 202]
        if len(stories) != args.stories:
            raise SystemExit(f"submissions refused: {[a for a in answers if a[0] != 202][:3]}")
        # the direct watches first, then the streams, so both see the events as they happen
        direct = {s: Direct() for s in stories}
        threads = []
        for story in stories:
            started = threading.Event()
            thread = threading.Thread(target=watch_directly, daemon=True,
                                      args=(site.broker, story, direct[story], started))
            thread.start()
            started.wait(10)
            threads.append(thread)
        cpu_before, began = cpu_seconds(site.gateway), time.monotonic()
        streams = [Stream(story) for story in stories for _ in range(args.streams_per)]
        with Sampler(site.gateway) as sampler:
            await asyncio.wait_for(asyncio.gather(*(follow(client, site.url, s)
                                                    for s in streams)), PHASE_TIMEOUT)
        cpu = cpu_seconds(site.gateway) - cpu_before
        wall = time.monotonic() - began
        for thread in threads:
            thread.join(PHASE_TIMEOUT)
        own = await watch_latency(client, site.url, direct)
    return judge_streams(streams, {s: d.arrived for s, d in direct.items()}, own, cpu, wall,
                         sampler.peak)


def judge_streams(streams: list[Stream], direct: dict[str, dict[Key, float]], own: list[float],
                  cpu: float, wall: float, rss_peak: int) -> dict[str, Any]:
    lost = duplicated = not_last = errors = 0
    added: list[float] = []
    for stream in streams:
        if stream.error:
            errors += 1
        keys = Counter(key for key, _, _ in stream.events)
        ids = Counter(event_id for _, event_id, _ in stream.events)
        expected = set(direct[stream.story])
        lost += len(expected - set(keys))
        duplicated += sum(n - 1 for n in keys.values() if n > 1)
        duplicated += sum(n - 1 for n in ids.values() if n > 1)
        if not stream.events or stream.events[-1][0][0] != "complete":
            not_last += 1
        for key, _, arrived in stream.events:
            seen_at = direct[stream.story].get(key)
            if seen_at is not None and seen_at > stream.opened:  # live, not a replay
                added.append(arrived - seen_at)
    delivered = sum(len(s.events) for s in streams)
    return {
        "stories": len(direct), "streams": len(streams), "events_delivered": delivered,
        "events_per_story": statistics.mean(len(d) for d in direct.values()),
        "lost": lost, "duplicated": duplicated, "streams_without_complete": not_last,
        "stream_errors": errors, "live_events_timed": len(added),
        "added_p50_ms": 1000 * percentile(added, 0.5),
        "added_p99_ms": 1000 * percentile(added, 0.99),
        "added_max_ms": 1000 * max(added, default=float("nan")),
        "direct_timed": len(own), "direct_p50_ms": 1000 * percentile(own, 0.5),
        "direct_p99_ms": 1000 * percentile(own, 0.99),
        "gateway_cpu_s": cpu, "cpu_us_per_event": 1e6 * cpu / max(1, delivered),
        "wall_s": wall, "gateway_rss_peak_mb": rss_peak / 2**20,
    }


# --- phase 2: a burst of submissions ----------------------------------------------------------


async def burst_phase(site: Site, args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.rate * 4)
    cpu_before = cpu_seconds(site.gateway)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30, connect=10)) as client:
        began = time.monotonic()
        tasks = []
        for n in range(args.rate * args.seconds):
            delay = began + n / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(submit(client, site.url, {
                "plot": f"A small fox number {n} finds a friend", "chapters": 1, "seed": n})))
        answers = await asyncio.wait_for(asyncio.gather(*tasks), PHASE_TIMEOUT)
        sending = time.monotonic() - began
        cpu = cpu_seconds(site.gateway) - cpu_before
        listed = (await client.get(f"{site.url}/stories", params={"limit": 1000})).json()
    accepted = [story for status, story, _ in answers if status == 202]
    known = {s["corr"] for s in listed.get("stories", [])}
    took = [t for _, _, t in answers]
    return {
        "submissions": len(answers), "seconds_to_send": sending,
        "by_status": dict(Counter(str(status) for status, _, _ in answers)),
        "unique_ids": len(set(accepted)), "accepted_but_missing": len(set(accepted) - known),
        "post_p50_ms": 1000 * percentile(took, 0.5), "post_p99_ms": 1000 * percentile(took, 0.99),
        "gateway_cpu_ms_per_submission": 1000 * cpu / max(1, len(answers)),
        "gateway_rss_mb": site.gateway.memory_info().rss / 2**20,
    }


# --- main ---------------------------------------------------------------------------------


@dataclass
class Report:
    settings: dict[str, Any]
    idle_rss_mb: float = 0.0
    streams: dict[str, Any] = field(default_factory=dict)
    burst: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> Iterator[str]:
        s, b = self.streams, self.burst
        yield (f"gateway idle RSS {self.idle_rss_mb:.1f} MB; settings {self.settings}")
        yield (f"streams: {s['streams']} on {s['stories']} stories, {s['events_delivered']} "
               f"events delivered ({s['events_per_story']:.1f} a story) in {s['wall_s']:.1f} s")
        ok = s["lost"] == s["duplicated"] == s["streams_without_complete"] == s["stream_errors"] == 0
        yield (f"  lost {s['lost']}, duplicated {s['duplicated']}, without complete "
               f"{s['streams_without_complete']}, errors {s['stream_errors']}: "
               f"{'PASS' if ok else 'MISS'}")
        within = s["added_p99_ms"] <= s["direct_p99_ms"]
        yield (f"  direct story.watch, step journalled -> event ({s['direct_timed']} steps): "
               f"p50 {s['direct_p50_ms']:.1f} ms, p99 {s['direct_p99_ms']:.1f} ms")
        yield (f"  added by the gateway, stream minus direct ({s['live_events_timed']} live "
               f"events): p50 {s['added_p50_ms']:.1f} ms, p99 {s['added_p99_ms']:.1f} ms, max "
               f"{s['added_max_ms']:.1f} ms: p99 added within the direct p99: "
               f"{'PASS' if within else 'MISS'}")
        yield (f"  gateway CPU {s['gateway_cpu_s']:.2f} s = {s['cpu_us_per_event']:.0f} µs an "
               f"event; peak RSS {s['gateway_rss_peak_mb']:.1f} MB")
        yield (f"burst: {b['submissions']} submissions in {b['seconds_to_send']:.1f} s, answers "
               f"{b['by_status']}, {b['unique_ids']} unique ids, {b['accepted_but_missing']} "
               f"accepted but missing")
        yield (f"  POST p50 {b['post_p50_ms']:.1f} ms, p99 {b['post_p99_ms']:.1f} ms; gateway "
               f"CPU {b['gateway_cpu_ms_per_submission']:.2f} ms a submission; RSS "
               f"{b['gateway_rss_mb']:.1f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=20)
    parser.add_argument("--streams-per", type=int, default=10)
    parser.add_argument("--rate", type=int, default=50, help="submissions a second")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--cost", type=float, default=0.1, help="seconds per agent step")
    parser.add_argument("--authors", type=int, default=2)
    parser.add_argument("--illustrators", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="5 stories x 4 streams, 2 s burst")
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args(argv)
    if args.quick:
        args.stories, args.streams_per, args.seconds = 5, 4, 2
    report = Report({k: v for k, v in vars(args).items() if k != "json"})
    with tempfile.TemporaryDirectory(prefix="storymesh-gw-bench-") as tmp:
        children = Children(Path(tmp))
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            site = start_site(children, args)
            report.idle_rss_mb = site.gateway.memory_info().rss / 2**20
            log(f"mesh and gateway up ({site.url}); phase 1: streams")
            report.streams = asyncio.run(streams_phase(site, args))
            log("phase 2: burst")
            report.burst = asyncio.run(burst_phase(site, args))
        finally:
            children.close()
            signal.signal(signal.SIGTERM, previous)
    for line in report.lines():
        log(line)
    if args.json:
        print(json.dumps({"settings": report.settings, "idle_rss_mb": report.idle_rss_mb,
                          "streams": report.streams, "burst": report.burst}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
