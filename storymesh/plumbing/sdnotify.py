"""The systemd notification protocol (sd_notify), written out: a few lines, no dependency.

A service with `Type=notify` gets `NOTIFY_SOCKET` (a filesystem path, or `@name` for the
abstract namespace) and tells systemd about itself with one datagram per notice:
`READY=1` once it serves, `WATCHDOG=1` while its loop is alive (systemd kills it after
`WatchdogSec` of silence), `STOPPING=1` when it drains, `STATUS=...` as free text.
Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op, so daemons call it freely.

`Notifier` is thread-safe and rate-limits `WATCHDOG=1` to half of `WATCHDOG_USEC` (or one
second when unset), so loops that turn many times a second may call `watchdog()` each turn.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

DEFAULT_WATCHDOG_EVERY = 1.0  # seconds between WATCHDOG=1 when systemd gave no interval


class Notifier:
    """Sends sd_notify datagrams to `NOTIFY_SOCKET`; does nothing when it is unset."""

    def __init__(self, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        # An abstract-namespace address starts with '@', sent as a leading NUL byte.
        self.address = "\0" + path[1:] if path.startswith("@") else path
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_every = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 \
            else DEFAULT_WATCHDOG_EVERY
        self._clock = clock
        self._last_watchdog: float | None = None
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *lines: str) -> bool:
        """Send `lines` as one datagram; False when disabled or the send failed."""
        if not self.address:
            return False
        data = "\n".join(lines).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX,
                                               socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    # a reader that stopped reading must never stall the daemon's loop
                    self._sock.setblocking(False)
                self._sock.sendto(data, self.address)
            except OSError as exc:
                # systemd went away, its queue is full or the path is wrong: worth a debug
                # line, never a crash or a stall
                log.debug("sd_notify %r failed: %s", lines, exc)
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        """WATCHDOG=1, at most once per `watchdog_every` seconds; True when one went out."""
        if not self.address:
            return False
        now = self._clock()
        with self._lock:
            if self._last_watchdog is not None and now - self._last_watchdog < self.watchdog_every:
                return False
            self._last_watchdog = now
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


_default: Notifier | None = None
_default_lock = threading.Lock()


def notifier() -> Notifier:
    """The process's notifier, made from the environment on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Notifier()
        return _default
