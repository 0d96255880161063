"""The gateway's limits: a token bucket on submissions per caller, and a cap on open streams.

Pure: time is an argument (`now`, monotonic seconds), so the tests need no sleeping.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_CALLERS = 10_000  # buckets kept; the least recently used one is forgotten past this


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; each submission takes one."""

    rate: float
    burst: int
    tokens: float
    at: float

    def take(self, now: float) -> float:
        """Take a token: 0.0 when allowed, else the seconds until one is there."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One token bucket per caller (an API key's name, or an address without keys)."""

    def __init__(self, rate: float, burst: int, *, max_callers: int = MAX_CALLERS) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.max_callers = max_callers
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, caller: str, now: float) -> float:
        """0.0 when `caller` may submit now, else the seconds to wait (for Retry-After)."""
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, float(self.burst), now)
            self._buckets[caller] = bucket
            if len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)  # a full bucket again if it comes back
        else:
            self._buckets.move_to_end(caller)
        return bucket.take(now)


class StreamGate:
    """Counts open event streams; refuses one past `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def enter(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open = max(0, self.open - 1)
