"""Broker throughput, latency, CPU per request and memory: ours against two baselines.

In one run this starts, each in its own process:
- ours: `python -m storymesh broker` (MDP/0.2, the storymesh daemon as deployed);
- proxy: pyzmq's `zmq.proxy` between a ROUTER and a DEALER, which forwards without any
  protocol (libzmq's C loop): the floor;
- majortomo: an existing Python MDP broker from PyPI ("theirs"), logging at WARNING.

Each broker gets 4 echo worker processes speaking its framing (`_mdp_peers.py`) and the
same client: a DEALER in this process keeping 1 or 100 requests in flight, with storymesh
bodies `[header | payload | data frame]` (`envelope.pack`, so the 1 MiB payload is its own
frame) wrapped in each broker's framing. For each broker, payload (100 B, 1 MiB) and
in-flight count (1, 100) it prints requests/s, p50/p99 latency, the broker's CPU time per
request (its process CPU clock, all threads, read before and after) and its RSS, the
ratios ours / baseline, and PASS/MISS against the targets. Scenarios are interleaved
across brokers and repeated, and medians reported, because the machine is shared.

A last phase connects 1,000 idle workers to a fresh broker of ours and to a bare pyzmq
ROUTER, and compares their RSS.

    .venv/bin/python benchmarks/broker_throughput.py [--quick] [--json] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import zmq
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

import _mdp_peers as peers

from storymesh.core import envelope

SERVICE = b"bench.echo"
SMALL = 100
LARGE = 1 << 20
WORKERS = 4
BROKERS = ("ours", "proxy", "majortomo")

# Targets (the issue): CPU per pipelined 100-byte request; throughput against majortomo;
# 1 MiB CPU per request against zmq.proxy; RSS with 1,000 workers above a bare ROUTER.
TARGET_CPU_US = 100.0
TARGET_RPS_RATIO = 1.25
TARGET_LARGE_CPU_RATIO = 1.5
TARGET_RSS_MB = 15.0

START_TIMEOUT = 20.0     # seconds for a process to say "ready"
DRIVE_TIMEOUT = 60.0     # seconds for one measured batch of requests
SETTLE_TIMEOUT = 30.0    # seconds for a broker to register the crowd
NAN = float("nan")
PROCESS_CPU_CLOCK = 2    # CPUCLOCK_SCHED: the process-wide CPU clock id is ((~pid) << 3) | 2


@dataclass(frozen=True)
class Plan:
    """How much to run: request counts per payload size, repeats, crowd size."""

    small: int
    large: int
    repeats: int
    crowd: int
    warmup_small: int = 200
    warmup_large: int = 20

    def count(self, size: int) -> int:
        return self.small if size == SMALL else self.large

    def warmup(self, size: int) -> int:
        return self.warmup_small if size == SMALL else self.warmup_large


FULL = Plan(small=3000, large=300, repeats=5, crowd=1000)
QUICK = Plan(small=300, large=30, repeats=1, crowd=1000, warmup_small=50, warmup_large=5)


# --- process measurements ---------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """The process's CPU time, all threads (libzmq's I/O thread included), in seconds."""
    try:
        return time.clock_gettime_ns(((~pid) << 3) | PROCESS_CPU_CLOCK) / 1e9
    except OSError:  # no per-process CPU clock here: fall back to /proc ticks (10 ms steps)
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def io_thread_seconds(pid: int) -> float:
    """CPU time of the process's libzmq I/O threads (TCP reads and writes, wake-ups)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().startswith("ZMQbg/IO"):
                total += int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):  # a thread that just ended, or no schedstat
            continue
    return total


def rss_mb(pid: int) -> float:
    """Resident set size in MB (VmRSS, 10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    return NAN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- child processes ---------------------------------------------------------------------

class Children:
    """Every process this benchmark starts; `close()` ends them (SIGTERM, then SIGKILL)."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[tuple[str, subprocess.Popen[str]]] = []

    def start(self, name: str, argv: Sequence[str], ready: str | None = "ready") -> subprocess.Popen[str]:
        """Start a child; wait for its `ready` line on stdout (None: do not wait)."""
        # no settings from the environment, except the choice of the broker's socket path
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("STORYMESH_") or k == "STORYMESH_NATIVE_WIRE"}
        log = open(self.logdir / f"{name}.log", "w")  # noqa: SIM115 (closed with the child)
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=log, text=True,
                                cwd=ROOT, env=env)
        log.close()
        self.procs.append((name, proc))
        if ready is not None:
            line = read_line(proc, START_TIMEOUT)
            if not line.startswith(ready):
                raise RuntimeError(f"{name} did not start: {self.tail(name)}")
        return proc

    def tail(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        text = path.read_text(errors="replace").strip() if path.exists() else ""
        return text.splitlines()[-1] if text else "(no output)"

    def stop(self, proc: subprocess.Popen[str], grace: float = 3.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(grace)
        if proc.stdout is not None:
            proc.stdout.close()
        self.procs = [(n, p) for n, p in self.procs if p is not proc]

    def close(self) -> None:
        for _, proc in list(self.procs):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 3.0
        for _, proc in list(self.procs):
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(3.0)
            if proc.stdout is not None:
                proc.stdout.close()
        self.procs.clear()


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of a child's stdout, or "" when it exits or says nothing within `timeout`."""
    assert proc.stdout is not None  # we always start children with stdout=PIPE
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if readable else ""


def wait_port(port: int, proc: subprocess.Popen[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def peer_argv(*args: str) -> list[str]:
    return [sys.executable, str(HERE / "_mdp_peers.py"), *args]


def ours_argv(bind: str) -> list[str]:
    return [sys.executable, "-m", "storymesh", "broker", "--bind", bind, "--log-level", "warning"]


# --- the brokers under test ----------------------------------------------------------------

@dataclass
class Broker:
    """One broker under test, its client socket and whether it could be started."""

    name: str
    pid: int = 0
    client_ep: str = ""
    sock: zmq.Socket[bytes] | None = None
    error: str = ""

    @property
    def framing(self) -> peers.ClientFraming:
        return peers.CLIENT_FRAMINGS[self.name]


def start_broker(name: str, kids: Children, ctx: zmq.Context[zmq.Socket[bytes]]) -> Broker:
    """Start one broker and its 4 echo workers; a failure is recorded, never raised."""
    broker = Broker(name)
    try:
        port = free_port()
        broker.client_ep = f"tcp://127.0.0.1:{port}"
        worker_ep = broker.client_ep
        if name == "ours":
            proc = kids.start("ours", ours_argv(broker.client_ep), ready=None)
            if not wait_port(port, proc, START_TIMEOUT):
                raise RuntimeError(f"our broker did not bind: {kids.tail('ours')}")
        elif name == "proxy":
            worker_ep = f"tcp://127.0.0.1:{free_port()}"
            proc = kids.start("proxy", peer_argv("proxy", "--front", broker.client_ep,
                                                 "--back", worker_ep))
        else:
            proc = kids.start("majortomo", peer_argv("majortomo", "--bind", broker.client_ep))
        broker.pid = proc.pid
        for i in range(WORKERS):
            kids.start(f"{name}-worker{i}", peer_argv("echo", "--framing", name, "--connect",
                                                      worker_ep, "--service", SERVICE.decode()))
        broker.sock = client_socket(ctx, broker.client_ep)
        if name == "ours":
            wait_registered(broker, WORKERS, SETTLE_TIMEOUT)
        time.sleep(0.3)  # the proxy and majortomo cannot say when workers are connected
    except Exception as exc:  # noqa: BLE001 - one broker failing must not end the run
        broker.error = str(exc) or type(exc).__name__
    return broker


def client_socket(ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(endpoint)
    return sock


def snapshot(sock: zmq.Socket[bytes], timeout: float = 5.0) -> dict[str, Any]:
    """Our broker's `mmi.storymesh.snapshot` payload."""
    body = envelope.pack(envelope.make_header(), {})
    sock.send_multipart([peers.C02, b"\x01", b"mmi.storymesh.snapshot", *body])
    if not sock.poll(int(timeout * 1000)):
        raise RuntimeError("no answer to mmi.storymesh.snapshot")
    frames = sock.recv_multipart()
    return envelope.unpack(frames[3:]).payload


def wait_registered(broker: Broker, count: int, timeout: float) -> None:
    assert broker.sock is not None  # set by start_broker before this is called
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = snapshot(broker.sock).get("services", {}).get(SERVICE.decode(), {}).get("workers", 0)
        if workers >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"only {workers} of {count} workers registered")


# --- the client ---------------------------------------------------------------------------

@dataclass
class Batch:
    """What one measured batch of requests gave."""

    done: int
    seconds: float
    cpu_s: float
    io_s: float
    rss: float
    latencies: list[float]
    timed_out: bool


def make_requests(framing: peers.ClientFraming, size: int, count: int,
                  tag: str) -> list[tuple[bytes, list[Any]]]:
    """(header bytes, frames) per request; the header carries a unique id to match replies."""
    data = os.urandom(size)
    requests = []
    for i in range(count):
        body = envelope.pack(envelope.make_header(f"{tag}-{i:07d}"), {"data": data})
        requests.append((body[0], framing.request(SERVICE, body)))
    return requests


def drive(broker: Broker, requests: list[tuple[bytes, list[Any]]], inflight: int,
          timeout: float) -> tuple[int, float, list[float], bool]:
    """Send `requests` keeping `inflight` outstanding; (done, seconds, latencies, timed out)."""
    sock, framing = broker.sock, broker.framing
    assert sock is not None  # only started brokers are driven
    started: dict[bytes, float] = {}
    latencies: list[float] = []
    idx = framing.reply_body_index
    sent = done = 0
    t0 = time.perf_counter()
    deadline = t0 + timeout
    while done < len(requests):
        while sent < len(requests) and len(started) < inflight:
            key, frames = requests[sent]
            started[key] = time.perf_counter()
            sock.send_multipart(frames, copy=False)
            sent += 1
        wait_ms = int((deadline - time.perf_counter()) * 1000)
        if wait_ms <= 0 or not sock.poll(wait_ms):
            return done, time.perf_counter() - t0, latencies, True
        while True:
            try:
                reply = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            now = time.perf_counter()
            if len(reply) <= idx or not framing.is_final(reply):
                continue
            t = started.pop(reply[idx].bytes, None)
            if t is not None:
                latencies.append(now - t)
                done += 1
    return done, time.perf_counter() - t0, latencies, False


def drain(sock: zmq.Socket[bytes], quiet_ms: int = 300) -> None:
    """Throw away late replies of a batch that timed out (bounded)."""
    for _ in range(100_000):
        if not sock.poll(quiet_ms):
            return
        sock.recv_multipart(zmq.NOBLOCK)


def measure(broker: Broker, size: int, inflight: int, count: int, warmup: int, tag: str) -> Batch:
    """Warm up, then time `count` requests and read the broker's CPU clock around them."""
    requests = make_requests(broker.framing, size, count + warmup, tag)
    _, _, _, late = drive(broker, requests[:warmup], inflight, DRIVE_TIMEOUT)
    if late and broker.sock is not None:
        drain(broker.sock)
    io0, cpu0 = io_thread_seconds(broker.pid), cpu_seconds(broker.pid)
    done, seconds, latencies, timed_out = drive(broker, requests[warmup:], inflight, DRIVE_TIMEOUT)
    cpu1, io1 = cpu_seconds(broker.pid), io_thread_seconds(broker.pid)
    if timed_out and broker.sock is not None:
        drain(broker.sock)
    return Batch(done, seconds, cpu1 - cpu0, io1 - io0, rss_mb(broker.pid), latencies, timed_out)


# --- results -------------------------------------------------------------------------------

@dataclass
class Result:
    """One broker in one scenario, medians over the repeats."""

    broker: str
    payload: int
    inflight: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    io_us: float
    rss_mb: float
    timed_out: bool = False
    error: str = ""


def summarise(name: str, size: int, inflight: int, batches: list[Batch]) -> Result:
    good = [b for b in batches if b.done]
    if not good:
        return Result(name, size, inflight, 0, 0.0, NAN, NAN, NAN, NAN, NAN, True, "no replies")
    lat = sorted(x for b in good for x in b.latencies)
    return Result(
        broker=name, payload=size, inflight=inflight, requests=sum(b.done for b in good),
        rps=statistics.median(b.done / b.seconds for b in good),
        p50_ms=lat[len(lat) // 2] * 1e3,
        p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
        cpu_us=statistics.median(b.cpu_s / b.done * 1e6 for b in good),
        io_us=statistics.median(b.io_s / b.done * 1e6 for b in good),
        rss_mb=good[-1].rss,
        timed_out=any(b.timed_out for b in batches),
    )


def run_scenarios(brokers: list[Broker], plan: Plan, console: Console) -> list[Result]:
    """Every (payload, in-flight) scenario, interleaving brokers inside each repeat."""
    results = []
    live = [b for b in brokers if not b.error]
    for size in (SMALL, LARGE):
        for inflight in (1, 100):
            batches: dict[str, list[Batch]] = {b.name: [] for b in live}
            for rep in range(plan.repeats):
                for broker in live:
                    console.log(f"{broker.name}: {fmt_size(size)} x {inflight} in flight, "
                                f"repeat {rep + 1}/{plan.repeats}")
                    tag = f"{broker.name}-{size}-{inflight}-{rep}"
                    batches[broker.name].append(measure(broker, size, inflight, plan.count(size),
                                                        plan.warmup(size), tag))
            for broker in brokers:
                if broker.error:
                    results.append(Result(broker.name, size, inflight, 0, NAN, NAN, NAN, NAN,
                                          NAN, NAN, error=broker.error))
                else:
                    results.append(summarise(broker.name, size, inflight, batches[broker.name]))
    return results


# --- 1,000 connected workers -----------------------------------------------------------------

@dataclass
class CrowdResult:
    """RSS of ours and of a bare ROUTER with the same number of connected idle peers."""

    peers: int
    bare_idle_mb: float = NAN
    bare_mb: float = NAN
    ours_idle_mb: float = NAN
    ours_mb: float = NAN
    registered: int = 0
    bare_ours_idle_mb: float = NAN   # our BrokerServer without the CLI process around it
    bare_ours_mb: float = NAN
    error: str = ""

    @property
    def diff_mb(self) -> float:
        return self.ours_mb - self.bare_mb


def settle(pid: int, timeout: float, quiet_s: float = 0.5, quiet_cpu: float = 0.005) -> None:
    """Wait until a process has used under `quiet_cpu` seconds of CPU over `quiet_s`."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = cpu_seconds(pid)
        if now - last < quiet_cpu:
            return
        last = now


@contextmanager
def crowd(kids: Children, framing: str, endpoint: str, count: int) -> Iterator[None]:
    proc = kids.start(f"crowd-{framing}", peer_argv("crowd", "--framing", framing, "--connect",
                                                    endpoint, "--count", str(count)), ready=None)
    try:
        line = read_line(proc, START_TIMEOUT * 3)
        if not line.startswith(f"ready {count}"):
            raise RuntimeError(f"crowd did not connect: {line or kids.tail(f'crowd-{framing}')}")
        yield
    finally:
        kids.stop(proc)


def run_crowd(kids: Children, ctx: zmq.Context[zmq.Socket[bytes]], count: int,
              console: Console) -> CrowdResult:
    """RSS with `count` idle workers: a fresh broker of ours vs a bare ROUTER, same run."""
    res = CrowdResult(count)
    try:
        console.log(f"bare ROUTER with {count} peers")
        ep = f"tcp://127.0.0.1:{free_port()}"
        router = kids.start("router", peer_argv("router", "--bind", ep))
        settle(router.pid, START_TIMEOUT)
        res.bare_idle_mb = rss_mb(router.pid)
        with crowd(kids, "hello", ep, count):
            settle(router.pid, SETTLE_TIMEOUT)
            res.bare_mb = rss_mb(router.pid)
        kids.stop(router)

        console.log(f"our broker with {count} workers")
        res.ours_idle_mb, res.ours_mb, res.registered = _crowd_ours(kids, ctx, count, cli=True)
        console.log(f"our BrokerServer without the CLI, with {count} workers")
        res.bare_ours_idle_mb, res.bare_ours_mb, _ = _crowd_ours(kids, ctx, count, cli=False)
    except Exception as exc:  # noqa: BLE001 - a failed crowd is reported in the table
        res.error = str(exc) or type(exc).__name__
    return res


def _crowd_ours(kids: Children, ctx: zmq.Context[zmq.Socket[bytes]], count: int,
                cli: bool) -> tuple[float, float, int]:
    """(idle RSS, RSS with `count` registered workers, registered) for a fresh broker of ours."""
    port = free_port()
    ep = f"tcp://127.0.0.1:{port}"
    name = "ours-crowd" if cli else "ours-bare-crowd"
    argv = ours_argv(ep) if cli else peer_argv("ours-bare", "--bind", ep)
    ours = kids.start(name, argv, ready=None)
    try:
        if not wait_port(port, ours, START_TIMEOUT):
            raise RuntimeError(f"our broker did not bind: {kids.tail(name)}")
        settle(ours.pid, START_TIMEOUT)  # imports done, loop idle
        idle = rss_mb(ours.pid)
        sock = client_socket(ctx, ep)
        try:
            with crowd(kids, "ours", ep, count):
                rss, registered = _settled_registration(ours.pid, sock, count)
        finally:
            sock.close()
    finally:
        kids.stop(ours)
    return idle, rss, registered


def _settled_registration(pid: int, sock: zmq.Socket[bytes], count: int) -> tuple[float, int]:
    """RSS read once the broker is quiet, just before a snapshot confirms the registrations."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    registered = 0
    rss = NAN
    while time.monotonic() < deadline:
        settle(pid, SETTLE_TIMEOUT)
        rss = rss_mb(pid)  # before the snapshot, whose 1,000-entry answer costs memory too
        services = snapshot(sock).get("services", {})
        registered = sum(s.get("workers", 0) for s in services.values())
        if registered >= count:
            break
    return rss, registered


# --- output ----------------------------------------------------------------------------------

def fmt_size(size: int) -> str:
    return "1 MiB" if size == LARGE else f"{size} B"


def fmt_ratio(r: float) -> str:
    return "-" if math.isnan(r) else f"{r:.2f}x"


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else NAN


def find(results: list[Result], broker: str, size: int, inflight: int) -> Result | None:
    for r in results:
        if (r.broker, r.payload, r.inflight) == (broker, size, inflight) and not r.error:
            return r
    return None


def scenario_table(results: list[Result], size: int, inflight: int) -> Table:
    table = Table(title=f"{fmt_size(size)} payload, {inflight} in flight")
    table.caption = "CPU: the broker process, all threads; I/O: of which libzmq's I/O thread"
    for col in ("broker", "requests", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "I/O µs/req",
                "RSS MB"):
        table.add_column(col, justify="left" if col == "broker" else "right")
    for r in results:
        if (r.payload, r.inflight) != (size, inflight):
            continue
        if r.error:
            table.add_row(r.broker, "-", f"[red]not run: {r.error}[/red]", "", "", "", "", "")
            continue
        note = " [yellow](timed out)[/yellow]" if r.timed_out else ""
        table.add_row(r.broker + note, str(r.requests), f"{r.rps:,.0f}", f"{r.p50_ms:.3f}",
                      f"{r.p99_ms:.3f}", f"{r.cpu_us:.1f}", f"{r.io_us:.1f}", f"{r.rss_mb:.1f}")
    ours = find(results, "ours", size, inflight)
    for base in ("proxy", "majortomo"):
        other = find(results, base, size, inflight)
        if ours is None or other is None:
            continue
        table.add_row(f"[bold]ours / {base}[/bold]", "", f"{ratio(ours.rps, other.rps):.2f}x",
                      f"{ratio(ours.p50_ms, other.p50_ms):.2f}x",
                      f"{ratio(ours.p99_ms, other.p99_ms):.2f}x",
                      f"{ratio(ours.cpu_us, other.cpu_us):.2f}x",
                      f"{ratio(ours.io_us, other.io_us):.2f}x",
                      f"{ratio(ours.rss_mb, other.rss_mb):.2f}x")
    return table


@dataclass
class Verdict:
    target: str
    measured: str
    limit: str
    ok: bool | None  # None: could not be measured

    @property
    def word(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.ok]


def verdicts(results: list[Result], crowd_res: CrowdResult) -> list[Verdict]:
    out: list[Verdict] = []
    ours = find(results, "ours", SMALL, 100)
    out.append(Verdict("CPU per pipelined 100 B request (100 in flight)",
                       f"{ours.cpu_us:.1f} µs" if ours else "-", f"<= {TARGET_CPU_US:g} µs",
                       None if ours is None else ours.cpu_us <= TARGET_CPU_US))
    for size, inflight in ((SMALL, 100), (SMALL, 1), (LARGE, 100), (LARGE, 1)):
        theirs = find(results, "majortomo", size, inflight)
        mine = find(results, "ours", size, inflight)
        r = ratio(mine.rps, theirs.rps) if mine and theirs else NAN
        out.append(Verdict(f"req/s ours / majortomo, {fmt_size(size)}, {inflight} in flight",
                           fmt_ratio(r), f">= {TARGET_RPS_RATIO:g}x",
                           None if math.isnan(r) else r >= TARGET_RPS_RATIO))
    for inflight in (1, 100):
        proxy = find(results, "proxy", LARGE, inflight)
        mine = find(results, "ours", LARGE, inflight)
        r = ratio(mine.cpu_us, proxy.cpu_us) if mine and proxy else NAN
        measured = (f"{r:.2f}x ({mine.cpu_us:.0f} vs {proxy.cpu_us:.0f} µs)"
                    if mine and proxy else "-")
        out.append(Verdict(f"1 MiB CPU/request ours / zmq.proxy, {inflight} in flight",
                           measured, f"<= {TARGET_LARGE_CPU_RATIO:g}x",
                           None if math.isnan(r) else r <= TARGET_LARGE_CPU_RATIO))
    ok = None if crowd_res.error or crowd_res.registered < crowd_res.peers else (
        crowd_res.diff_mb <= TARGET_RSS_MB)
    out.append(Verdict(f"RSS with {crowd_res.peers} workers, ours - bare ROUTER",
                       f"{crowd_res.diff_mb:.1f} MB" if ok is not None else crowd_res.error or "-",
                       f"<= {TARGET_RSS_MB:g} MB", ok))
    return out


def crowd_table(res: CrowdResult) -> Table:
    table = Table(title=f"RSS with {res.peers} connected idle workers (MB)")
    for col in ("process", "idle", f"with {res.peers} peers", "growth"):
        table.add_column(col, justify="left" if col == "process" else "right")
    table.add_row("bare pyzmq ROUTER", f"{res.bare_idle_mb:.1f}", f"{res.bare_mb:.1f}",
                  f"{res.bare_mb - res.bare_idle_mb:.1f}")
    table.add_row(f"ours ({res.registered} registered)", f"{res.ours_idle_mb:.1f}",
                  f"{res.ours_mb:.1f}", f"{res.ours_mb - res.ours_idle_mb:.1f}")
    table.add_row("[bold]ours - bare[/bold]", f"{res.ours_idle_mb - res.bare_idle_mb:.1f}",
                  f"{res.diff_mb:.1f}", "")
    table.add_row("ours without the CLI (BrokerServer only)", f"{res.bare_ours_idle_mb:.1f}",
                  f"{res.bare_ours_mb:.1f}", f"{res.bare_ours_mb - res.bare_ours_idle_mb:.1f}")
    table.add_row("[bold]ours without the CLI - bare[/bold]",
                  f"{res.bare_ours_idle_mb - res.bare_idle_mb:.1f}",
                  f"{res.bare_ours_mb - res.bare_mb:.1f}", "")
    if res.error:
        table.caption = f"[red]{res.error}[/red]"
    return table


def verdict_table(items: list[Verdict]) -> Table:
    table = Table(title="Targets")
    for col in ("target", "measured", "limit", "result"):
        table.add_column(col)
    colour = {"PASS": "green", "MISS": "red", "n/a": "yellow"}
    for v in items:
        table.add_row(v.target, v.measured, v.limit, f"[{colour[v.word]}]{v.word}[/]")
    return table


# --- main ------------------------------------------------------------------------------------

def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that ends the children


def run(plan: Plan, console: Console, brokers_wanted: Sequence[str]) -> dict[str, Any]:
    fd_limit = peers.raise_fd_limit()  # inherited by every child, the crowd's brokers included
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    with tempfile.TemporaryDirectory(prefix="storymesh-bench-") as logdir:
        kids = Children(Path(logdir))
        brokers: list[Broker] = []
        try:
            for name in brokers_wanted:
                console.log(f"starting {name} and {WORKERS} workers")
                brokers.append(start_broker(name, kids, ctx))
                if brokers[-1].error:
                    console.log(f"[red]{name} not run:[/red] {brokers[-1].error}")
            t0 = time.monotonic()
            results = run_scenarios(brokers, plan, console)
            for broker in brokers:
                if broker.sock is not None:
                    broker.sock.close()
            kids.close()
            crowd_res = (run_crowd(kids, ctx, plan.crowd, console) if plan.crowd
                         else CrowdResult(0, error="skipped"))
            elapsed = time.monotonic() - t0
        finally:
            kids.close()
            ctx.destroy(linger=0)
    return {"results": results, "crowd": crowd_res, "fd_limit": fd_limit, "seconds": elapsed}


def report(out: dict[str, Any], plan: Plan, console: Console) -> list[Verdict]:
    results: list[Result] = out["results"]
    for size in (SMALL, LARGE):
        for inflight in (1, 100):
            console.print(scenario_table(results, size, inflight))
    if out["crowd"].peers:
        console.print(crowd_table(out["crowd"]))
    items = verdicts(results, out["crowd"])
    console.print(verdict_table(items))
    console.print(f"{plan.repeats} repeat(s) per scenario, medians; measured in "
                  f"{out['seconds']:.0f} s; {os.cpu_count()} CPUs; open-file limit {out['fd_limit']}")
    return items


def _no_nan(value: Any) -> Any:
    """NaN (a figure that could not be measured) as JSON null, so the output is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--json", action="store_true",
                        help="print the figures as JSON on stdout (tables go to stderr)")
    parser.add_argument("--repeats", type=int, help="repeats per scenario (default 5, quick 1)")
    parser.add_argument("--crowd", type=int, help="idle workers for the RSS phase (0: skip)")
    parser.add_argument("--brokers", default=",".join(BROKERS),
                        help=f"comma-separated subset of {','.join(BROKERS)}")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.repeats:
        plan = Plan(plan.small, plan.large, max(1, args.repeats), plan.crowd,
                    plan.warmup_small, plan.warmup_large)
    if args.crowd is not None:
        plan = Plan(plan.small, plan.large, plan.repeats, max(0, args.crowd),
                    plan.warmup_small, plan.warmup_large)
    wanted = [b for b in args.brokers.split(",") if b]
    unknown = sorted(set(wanted) - set(BROKERS))
    if unknown or not wanted:
        parser.error(f"--brokers takes names from {','.join(BROKERS)}; got {args.brokers!r}")
    console = Console(stderr=args.json, log_path=False)
    if not console.is_terminal:
        console.width = 120  # a log file or a pipe: do not squeeze the tables into 80 columns
    signal.signal(signal.SIGTERM, _terminate)
    out = run(plan, console, wanted)
    items = report(out, plan, console)
    if args.json:
        doc = {"results": [asdict(r) for r in out["results"]],
               "crowd": {**asdict(out["crowd"]), "diff_mb": out["crowd"].diff_mb},
               "targets": [{**asdict(v), "result": v.word} for v in items],
               "plan": asdict(plan), "cpus": os.cpu_count(), "seconds": out["seconds"]}
        sys.stdout.write(json.dumps(_no_nan(doc), indent=2, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
