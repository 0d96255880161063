"""Rate-limited logging for what peers can trigger at will (protocol violations, refusals):
a hostile peer must not be able to flood the log. Up to `burst` lines per `window` seconds
go out; the rest are counted and summed up in one line when the window rolls over."""

from __future__ import annotations

import logging
from typing import Any


class RateLog:
    """`log(now, msg, *args)` at most `burst` times per `window` seconds."""

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING, *,
                 burst: int = 20, window: float = 60.0) -> None:
        self.logger = logger
        self.level = level
        self.burst = burst
        self.window = window
        self._start = float("-inf")
        self._count = 0
        self.suppressed = 0

    def log(self, now: float, msg: str, *args: Any) -> None:
        if now - self._start >= self.window:
            if self.suppressed:
                self.logger.log(self.level, "%d more like this in the last %.0f s were not "
                                "logged", self.suppressed, self.window)
            self._start, self._count, self.suppressed = now, 0, 0
        if self._count < self.burst:
            self._count += 1
            self.logger.log(self.level, msg, *args)
        else:
            self.suppressed += 1
