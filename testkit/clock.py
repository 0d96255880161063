"""A fake clock for tests: seconds that move only when the test says so (STYLE.md rule 3).

It stands in for `time.monotonic` or `time.time` wherever a component takes its clock as an
argument; reading it from another thread (a worker's socket thread) is fine."""

from __future__ import annotations


class FakeClock:
    """`clock()` is `now`; `advance(seconds)` moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
