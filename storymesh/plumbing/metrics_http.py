"""The Prometheus `/metrics` HTTP endpoint every daemon serves: bind, report, shut down.

One place for the broker's and the agents' endpoints. prometheus_client is imported only
when an endpoint starts, so a daemon without `metrics_bind` never loads it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from storymesh.errors import ConfigError

log = logging.getLogger(__name__)


class MetricsEndpoint:
    """`/metrics` for one registry, on prometheus_client's own HTTP thread."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.host = ""
        self.port = 0

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Listen on `host`:`port` (port 0: any free one); the (host, port) bound."""
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(port, addr=host,
                                                           registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc}") from None
        self.host, self.port = host, self._server.server_port
        log.info("metrics on http://%s/metrics", self.address)
        return self.host, self.port

    @property
    def address(self) -> str:
        """"host:port" as bound, with brackets around an IPv6 host."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
