"""The timing rules of the runtimes, pure: every method takes `now`, nothing sleeps.

- `LinkTimer`: when a worker connection owes the broker a HEARTBEAT, and when silence from
  the broker means it is gone (liveness x interval);
- `Backoff`: the delays between a worker's reconnect attempts (exponential, capped, jittered);
- `RequestTimer`: one client request's attempts: the attempt timeout, a `busy` retry after
  its hint, and the wall-clock deadline that ends retrying.

`now` is monotonic seconds; `wall` (epoch seconds) is used only to compare with a request's
deadline, which travels in the header as wall time. Tests drive both with fake clocks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import Enum


class LinkTimer:
    """Heartbeat and liveness clocks of one worker connection (monotonic `now`)."""

    def __init__(self, interval: float, liveness: int) -> None:
        self.interval = interval
        self.timeout = interval * liveness
        self.last_sent = 0.0
        self.last_heard = 0.0

    def opened(self, now: float) -> None:
        """A fresh connection: READY just went out, the broker gets a full liveness window."""
        self.last_sent = self.last_heard = now

    def sent(self, now: float) -> None:
        self.last_sent = now

    def heard(self, now: float) -> None:
        self.last_heard = now

    def heartbeat_due(self, now: float) -> bool:
        """Nothing sent for one interval: any traffic counts, so only then a HEARTBEAT."""
        return now - self.last_sent >= self.interval

    def expired(self, now: float) -> bool:
        """Nothing heard from the broker for liveness x interval: it is gone."""
        return now - self.last_heard >= self.timeout

    def next_due(self) -> float:
        return min(self.last_sent + self.interval, self.last_heard + self.timeout)


class Backoff:
    """Exponential reconnect delays: initial, 2x initial, ... capped, with +-`jitter` spread."""

    def __init__(self, initial: float, cap: float, *, jitter: float = 0.2,
                 rng: Callable[[], float] = random.random) -> None:
        self.initial = min(initial, cap)
        self.cap = cap
        self.jitter = jitter
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        """The delay before the next attempt; each call doubles the base, up to the cap."""
        base = min(self.cap, self.initial * 2.0 ** min(self._attempt, 32))
        self._attempt += 1
        spread = 1.0 + self.jitter * (2.0 * self._rng() - 1.0)
        return min(self.cap, base * spread)

    def reset(self) -> None:
        """The broker answered: the next drop starts from the initial delay again."""
        self._attempt = 0


class Due(Enum):
    """What a client request's timer says at `now`."""

    WAIT = "wait"            # nothing to do yet
    RESEND = "resend"        # a scheduled `busy` retry is due: send this request again
    RETRY = "retry"          # the attempt timed out, another is allowed: reconnect, resend
    EXHAUSTED = "exhausted"  # the attempt timed out and none is left (or the deadline passed)


class RequestTimer:
    """The attempts of one client request: `timeout` seconds of silence per attempt.

    Any reply (a PARTIAL too) restarts the attempt's clock. A `busy` answer with a hint
    schedules the next attempt `retry_after` seconds later instead of waiting for a timeout.
    No attempt starts once the request's wall-clock `deadline` has passed.
    """

    def __init__(self, timeout: float, max_attempts: int,
                 deadline: float | None = None) -> None:
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.deadline = deadline
        self.attempts = 1
        self.last_activity = 0.0
        self.resend_at: float | None = None

    def sent(self, now: float) -> None:
        self.last_activity = now

    def heard(self, now: float) -> None:
        self.last_activity = now

    def next_due(self) -> float:
        return self.resend_at if self.resend_at is not None else self.last_activity + self.timeout

    def check(self, now: float, wall: float) -> Due:
        """What is due at `now`; RESEND and RETRY count the attempt they start."""
        if self.resend_at is not None:
            if now < self.resend_at:
                return Due.WAIT
            self.resend_at = None
            return Due.RESEND
        if now - self.last_activity < self.timeout:
            return Due.WAIT
        if self.attempts >= self.max_attempts or self.past_deadline(wall):
            return Due.EXHAUSTED
        self.attempts += 1
        return Due.RETRY

    def retry_busy(self, retry_after: float | None, now: float, wall: float) -> bool:
        """A `busy` answer: schedule another attempt after the hint, if the budget allows."""
        if (retry_after is None or self.attempts >= self.max_attempts
                or self.past_deadline(wall + retry_after)):
            return False
        self.attempts += 1
        self.resend_at = now + retry_after
        return True

    def past_deadline(self, wall: float) -> bool:
        return self.deadline is not None and wall > self.deadline
