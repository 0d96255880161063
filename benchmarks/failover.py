"""Broker pair fail-over: how long from a SIGKILL of the active broker to the first reply the
other one serves, over 10 kills, and how many story steps the kills made computed twice.

Real processes on loopback (testkit.pair.ProcessPair): `storymesh broker --ha primary` and
`--ha backup`, a story service, a sleepy author (0.3 s per step), two sleepy illustrators
(0.5 s), a sleepy publisher (0.1 s) and an echo agent, all given both endpoints. Each round:

1. a story of 4 chapters is submitted and runs for `--settle` seconds (steps in flight);
2. the active broker is SIGKILLed; a fresh client given both endpoints calls `echo` at once,
   and the time from the kill to its reply is the round's fail-over time;
3. the story is waited for (it must complete), then the killed broker is started again: it
   comes back passive, and the next round kills the other one.

Steps computed twice: the sleepy agents log `start <op> <request id>`; a request id started
more than once was computed again (its worker lost the broker while computing it, and the
story service sent it again to the new one).

    .venv/bin/python benchmarks/failover.py [--kills 10] [--heartbeat 0.25] [--liveness 4]
        [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from storymesh.story.api import StoryClient
from testkit.mesh import Proc, Spawner, worker_pids
from testkit.pair import ProcessPair

START = re.compile(r"start (\S+) (\S+)")


@dataclass(frozen=True, slots=True)
class Round:
    killed: str
    failover_s: float
    story: str
    status: str


@dataclass(frozen=True, slots=True)
class Result:
    heartbeat: float
    liveness: int
    bound_s: float
    rounds: list[Round]
    steps: int
    computed_twice: int

    @property
    def times(self) -> list[float]:
        return [r.failover_s for r in self.rounds]


def spawn_agents(pair: ProcessPair, env: dict[str, str]) -> tuple[list[Proc], list[Proc]]:
    """The story service, the sleepy agents (returned second) and an echo agent."""
    spawner = pair.spawner
    story = spawner.spawn("story", "agent", "story", "--broker", pair.broker, *pair.flags(),
                          env=env)
    echo = spawner.spawn("echo", "agent", "echo", "--broker", pair.broker, *pair.flags())
    sleepy = [spawner.sleepy(role, pair.broker, cost, env)
              for role, cost in (("author", 0.3), ("illustrator", 0.5),
                                 ("illustrator", 0.5), ("publisher", 0.1))]
    return [story, echo], sleepy


def wait_served(pair: ProcessPair, services: dict[str, int]) -> None:
    """Until the active broker has at least this many worker processes per service."""
    def ready() -> bool:
        role = pair.active()
        snap = pair.snapshot(role) if role else None
        if snap is None:
            return False
        pids = worker_pids(snap)
        return all(len(pids.get(s, ())) >= n for s, n in services.items())
    pair.spawner.wait_until(ready, 60.0, f"workers {services} on the active broker")


def run(kills: int, heartbeat: float, liveness: int, settle: float) -> Result:
    with tempfile.TemporaryDirectory(prefix="storymesh-failover-") as tmp:
        spawner = Spawner(Path(tmp))
        pair = ProcessPair(spawner, heartbeat=heartbeat, liveness=liveness)
        env = {"STORYMESH_JOURNAL": str(Path(tmp) / "journal.db"),
               "STORYMESH_HEARTBEAT_INTERVAL": str(heartbeat),
               "STORYMESH_LIVENESS": str(liveness)}
        try:
            pair.start_both()
            _, sleepy = spawn_agents(pair, env)
            services = {"story.submit": 1, "story.author": 1, "story.illustrator": 2,
                        "story.publisher": 1, "echo": 1}
            wait_served(pair, services)
            rounds = []
            with StoryClient(pair.broker, settings=pair.settings.peer_section(),
                             timeout=30.0) as stories:
                for n in range(kills):
                    corr = stories.submit(f"A fox and a kite, round {n}", chapters=4, seed=n)
                    time.sleep(settle)
                    victim = pair.active()
                    assert victim is not None, "no active broker"
                    killed_at = time.monotonic()
                    pair.kill(victim)
                    with pair.client(timeout=30.0) as client:
                        client.call("echo", {"text": "first"})
                        took = time.monotonic() - killed_at
                    outcome = stories.wait(corr)
                    rounds.append(Round(victim, took, corr, str(outcome.get("status"))))
                    pair.start(victim)
                    pair.wait_states(*(("passive", "active") if victim == "primary"
                                       else ("active", "passive")))
                    wait_served(pair, services)
            starts = Counter(m.group(2) for proc in sleepy
                             for m in START.finditer(proc.log.read_text(errors="replace")))
        finally:
            pair.cut_link()
            spawner.close()
    return Result(heartbeat, liveness, 2 * heartbeat * liveness, rounds, len(starts),
                  sum(1 for count in starts.values() if count > 1))


def report(result: Result, console: Console) -> None:
    table = Table("kill", "broker killed", "fail-over s", "story", title=(
        f"fail-over after SIGKILL (heartbeat {result.heartbeat:g} s x liveness "
        f"{result.liveness}; bound 2 x liveness x heartbeat = {result.bound_s:g} s)"))
    for i, r in enumerate(result.rounds, 1):
        table.add_row(str(i), r.killed, f"{r.failover_s:.3f}", r.status)
    console.print(table)
    times = result.times
    worst = max(times)
    console.print(f"median {statistics.median(times):.3f} s, max {worst:.3f} s: "
                  f"{'PASS' if worst < result.bound_s else 'MISS'} (bound {result.bound_s:g} s)")
    complete = sum(1 for r in result.rounds if r.status == "complete")
    console.print(f"stories complete: {complete}/{len(result.rounds)}; steps computed: "
                  f"{result.steps}, of which computed twice: {result.computed_twice}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--heartbeat", type=float, default=0.25)
    parser.add_argument("--liveness", type=int, default=4)
    parser.add_argument("--settle", type=float, default=1.5,
                        help="seconds a story runs before the kill")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.kills, args.heartbeat, args.liveness, args.settle)
    if args.json:
        print(json.dumps({**asdict(result), "median_s": statistics.median(result.times),
                          "max_s": max(result.times)}, indent=2))
    else:
        report(result, Console())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
