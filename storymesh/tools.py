"""Client-side commands: one request printed as JSON, the health check, the echo demo."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from storymesh import schema
from storymesh.client import Client
from storymesh.errors import RequestFailed, RequestTimeout
from storymesh.settings import Settings


def _printable(value: Any, save_dir: Path | None, key: str = "value") -> Any:
    """JSON-safe copy of a payload: bytes summarised, or written to `save_dir`."""
    if isinstance(value, (bytes, bytearray)):
        digest = hashlib.sha256(value).hexdigest()[:12]
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            path = save_dir / f"{key}-{digest}.bin"
            path.write_bytes(value)
            return {"file": str(path), "bytes": len(value)}
        return {"bytes": len(value), "sha256": digest}
    if isinstance(value, dict):
        return {k: _printable(v, save_dir, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v, save_dir, f"{key}-{i}") for i, v in enumerate(value)]
    return value


def run_request(
    settings: Settings,
    service: str,
    payload: dict[str, Any],
    *,
    save_dir: Path | None = None,
    show_partials: bool = True,
) -> int:
    """Send one request; print PARTIALs and the FINAL as JSON lines; return the exit code."""
    out = Console(soft_wrap=True)
    with Client(settings.broker, settings=settings) as client:
        try:
            for reply in client.stream(service, payload):
                if reply.final or show_partials:
                    out.print_json(
                        json.dumps(
                            {"final": reply.final, "payload": _printable(reply.payload, save_dir)}
                        )
                    )
        except RequestFailed as exc:
            Console(stderr=True).print(f"[red]error[/red] {exc.code}: {exc.message}")
            return schema.exit_code_for(exc.code)
        except RequestTimeout as exc:
            Console(stderr=True).print(f"[red]timeout[/red] {exc}")
            return schema.EXIT_TIMEOUT
    return schema.EXIT_OK


def check_health(settings: Settings, services: list[str], timeout: float) -> tuple[int, str]:
    """(exit code, reason): 0 healthy, 1 degraded (a service has no worker), 2 broker down."""
    with Client(settings.broker, settings=settings, timeout=timeout, retries=1) as client:
        missing = []
        for name in services or ["mmi.service"]:
            found = client.service_available(name)
            if found is None:
                return (
                    schema.EXIT_DOWN,
                    f"down: broker {settings.broker} did not answer within {timeout:g} s",
                )
            if not found and services:
                missing.append(name)
    if missing:
        return schema.EXIT_DEGRADED, f"degraded: no workers for {', '.join(missing)}"
    listed = f" ({', '.join(services)} served)" if services else ""
    return schema.EXIT_OK, f"healthy: broker {settings.broker} answers{listed}"


def run_demo(settings: Settings, count: int) -> int:
    """Broker + two echo agents in this process on inproc://, `count` requests through them."""
    import zmq

    from storymesh import settings as settings_mod
    from storymesh.agents.echo import EchoAgent
    from storymesh.agents.runtime import run_agent
    from storymesh.broker.server import BrokerServer

    ctx = zmq.Context()
    local = settings_mod.load(
        "/dev/null", env={}, flags={"bind": "inproc://demo", "broker": "inproc://demo"}
    )
    server = BrokerServer(local, context=ctx)
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
        Client(local.broker, settings=local, context=ctx) as client,
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
