"""uvicorn around the gateway app: `run_gateway(settings)` for `storymesh gateway`, and
`GatewayServer` to run one in a thread (tests, benchmarks, embedding).

Without API keys the gateway serves loopback only, unless `allow_anonymous` says otherwise:
a web face that anyone on the network could use to fill the mesh must be a choice.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
import zmq

from storymesh.errors import ConfigError
from storymesh.gateway.app import build_app
from storymesh.gateway.keys import KeyRing
from storymesh.settings import Settings

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0  # seconds a threaded server may take to listen


def parse_http(value: str) -> tuple[str, int]:
    """HOST:PORT (or [V6]:PORT, or PORT alone on 127.0.0.1) as (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    if not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--http {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_keys(settings: Settings) -> KeyRing | None:
    """The keys of `[gateway] api_keys`, or None; refuses an open non-loopback bind."""
    config = settings.gateway
    host, _ = parse_http(config.http)
    if config.api_keys:
        keys = KeyRing(Path(config.api_keys).expanduser())
        if not len(keys):
            raise ConfigError(f"API keys file {config.api_keys} holds no key; add one with "
                              f"storymesh keys api NAME --file {config.api_keys}")
        return keys
    if not is_loopback(host) and not config.allow_anonymous:
        raise ConfigError(f"refusing to serve {config.http} without API keys: anyone who can "
                          "reach it could use the mesh. Give --api-keys FILE (storymesh keys api "
                          "NAME --file FILE), or --allow-anonymous if that is what you want")
    return None


def _config(settings: Settings, app: Any, host: str, port: int) -> uvicorn.Config:
    config = settings.gateway
    return uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False,
        timeout_keep_alive=int(max(1, config.keep_alive_timeout)),
        limit_concurrency=config.max_connections,
        timeout_graceful_shutdown=5,
        h11_max_incomplete_event_size=16 * 1024,  # header bytes: slow, huge headers are cut
    )


def run_gateway(settings: Settings, *, context: zmq.Context[Any] | None = None) -> int:
    """Serve until SIGTERM/SIGINT (uvicorn's handlers only set its exit flag); exit code."""
    keys = load_keys(settings)
    host, port = parse_http(settings.gateway.http)
    app = build_app(settings, keys=keys, context=context)
    server = uvicorn.Server(_config(settings, app, host, port))
    log.info("gateway on http://%s:%d for broker %s (%s)", host, port, settings.broker,
             f"{len(keys)} API key(s)" if keys else "no API keys")
    server.run()
    return 0


class GatewayServer:
    """A gateway in a thread of this process: `with GatewayServer(settings) as gw: gw.url`."""

    def __init__(self, settings: Settings, *, context: zmq.Context[Any] | None = None,
                 keys: KeyRing | None = None) -> None:
        host, port = parse_http(settings.gateway.http)
        self.app = build_app(settings, keys=keys, context=context)
        self.server = uvicorn.Server(_config(settings, self.app, host, port))
        self.thread = threading.Thread(target=self.server.run, name="gateway", daemon=True)
        self.url = ""

    def start(self) -> GatewayServer:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
