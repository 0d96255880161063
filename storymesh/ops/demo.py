"""`storymesh demo`: a broker and two echo agents in this process, requests through them."""

from __future__ import annotations

import threading
import time

import zmq
from rich.console import Console
from rich.progress import Progress

from storymesh import settings as settings_mod
from storymesh.agents.echo import EchoAgent
from storymesh.broker.server import BrokerServer
from storymesh.core import schema
from storymesh.runtime.client import Client
from storymesh.runtime.worker import run_agent
from storymesh.settings import Settings


def run_demo(settings: Settings, count: int) -> int:
    """Broker + two echo agents in this process on inproc://, `count` requests through them."""
    ctx = zmq.Context()
    local = settings_mod.load(
        "/dev/null", env={}, flags={"bind": "inproc://demo", "broker": "inproc://demo"}
    )
    server = BrokerServer(local.broker_section(), context=ctx)
    server.start()
    stop = threading.Event()
    workers = [
        threading.Thread(
            target=run_agent,
            args=(EchoAgent(), local),
            kwargs={"stop": stop, "context": ctx},
            daemon=True,
        )
        for _ in range(2)
    ]
    for w in workers:
        w.start()
    console = Console()
    started = time.monotonic()
    served: dict[str, int] = {}
    with (
        Client(local.broker, settings=local.peer_section(), context=ctx) as client,
        Progress(console=console) as bar,
    ):
        task = bar.add_task("echo requests through the broker", total=count)
        ids = [client.send("echo", {"n": i, "text": f"hello {i}"}) for i in range(count)]
        for rid in ids:
            final = client.result(rid)
            served[final.payload["text"]] = final.payload["n"]
            bar.advance(task)
    elapsed = time.monotonic() - started
    snap_workers = len(server.core.workers)
    stop.set()
    for w in workers:
        w.join(5)
    server.stop()
    ctx.term()
    ok = len(served) == count
    console.print(
        f"{'OK' if ok else 'FAILED'}: {len(served)}/{count} echo replies from "
        f"{snap_workers} workers in {elapsed:.2f} s"
    )
    return schema.EXIT_OK if ok else 1
