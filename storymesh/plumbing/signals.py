"""Process lifecycle helpers shared by every daemon: signal handlers that only set a flag."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def install_signal_handlers(stop: threading.Event,
                            signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Make SIGTERM/SIGINT set `stop`; the daemon's loop notices, drains and exits 0."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in signals:
        signal.signal(sig, handler)
