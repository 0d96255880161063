"""The timing rules of the runtimes, pure: every method takes `now`, nothing sleeps.

- `LinkTimer`: when a worker connection owes the broker a HEARTBEAT, and when silence from
  the broker means it is gone (liveness x interval);
- `Backoff`: the delays between a worker's reconnect attempts (exponential, capped, jittered);
- `RequestTimer`: one client request's attempts: the attempt timeout, a `busy` retry after
  its hint, and the wall-clock deadline that ends retrying;
- `EndpointRing`: a client's list of broker endpoints (a broker pair): which one it talks
  to, when to ping it, when to give it up for the next, when to come back to one that said
  `not_active`.

`now` is monotonic seconds; `wall` (epoch seconds) is used only to compare with a request's
deadline, which travels in the header as wall time. Tests drive both with fake clocks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import Enum


class LinkTimer:
    """Heartbeat and liveness clocks of one worker connection (monotonic `now`)."""

    def __init__(self, interval: float, liveness: int, probe: float | None = None) -> None:
        self.interval = interval
        self.timeout = interval * liveness
        # With a list of brokers: a connection that has heard nothing yet is given up after
        # `probe` seconds, not the whole liveness window, so a dead broker costs little.
        self.probe = probe
        self.last_sent = 0.0
        self.last_heard = 0.0
        self.verified = True

    def opened(self, now: float) -> None:
        """A fresh connection: READY just went out, the broker gets a full liveness window
        (or, with `probe`, that long to say anything at all)."""
        self.last_sent = self.last_heard = now
        self.verified = self.probe is None

    def sent(self, now: float) -> None:
        self.last_sent = now

    def heard(self, now: float) -> None:
        self.last_heard = now
        self.verified = True

    @property
    def _silence(self) -> float:
        return self.timeout if self.verified or self.probe is None else self.probe

    def heartbeat_due(self, now: float) -> bool:
        """Nothing sent for one interval: any traffic counts, so only then a HEARTBEAT."""
        return now - self.last_sent >= self.interval

    def expired(self, now: float) -> bool:
        """Nothing heard from the broker for liveness x interval: it is gone."""
        return now - self.last_heard >= self._silence

    def next_due(self) -> float:
        return min(self.last_sent + self.interval, self.last_heard + self._silence)


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


class Link(Enum):
    """What a client's endpoint ring says at `now`."""

    WAIT = "wait"      # nothing to do
    PING = "ping"      # ask the broker for a sign of life (an MMI request)
    SWITCH = "switch"  # this broker is silent: go to the next endpoint, resend what is in flight


class EndpointRing:
    """A client's broker endpoints, one in use at a time (monotonic `now` throughout).

    While requests are in flight the client expects to hear the broker: a connection that
    has heard nothing is given up after `probe` seconds (its first ping is answered at once
    by a live broker, active or passive); one that has answered is pinged after `interval`
    of silence and given up after `timeout`. `not_active` moves on at once, and an endpoint
    that said `not_active` is come back to only `interval` after it said so."""

    def __init__(self, endpoints: list[str], interval: float, liveness: int,
                 probe: float | None = None) -> None:
        if not endpoints:
            raise ValueError("at least one broker endpoint is needed")
        self.endpoints = endpoints
        self.interval = interval
        self.timeout = interval * liveness
        self.probe = interval if probe is None else min(probe, interval)
        self.index = 0
        self.switches = 0
        self._told: list[float | None] = [None] * len(endpoints)  # when it said not_active
        self.opened_at = 0.0
        self.heard_at: float | None = None
        self.ping_at: float | None = None
        self.busy_since: float | None = None

    @property
    def endpoint(self) -> str:
        return self.endpoints[self.index]

    def opened(self, now: float) -> None:
        """A fresh connection to `endpoint`: it has said nothing yet."""
        self.opened_at = now
        self.heard_at = self.ping_at = None
        if self.busy_since is not None:
            self.busy_since = now

    def heard(self, now: float) -> None:
        self.heard_at = now

    def pinged(self, now: float) -> None:
        self.ping_at = now

    def check(self, now: float, busy: bool) -> Link:
        """What is due; `busy` says whether any request is in flight (else nothing is)."""
        if not busy:
            self.busy_since = None
            return Link.WAIT
        if self.busy_since is None:
            self.busy_since = now  # waiting starts now, however long ago it last spoke
        if self.heard_at is None:
            if self.ping_at is None:
                return Link.PING
            return Link.SWITCH if now >= self._probe_end() else Link.WAIT
        if now >= self._silent_end():
            return Link.SWITCH
        if now >= self._ping_due():
            return Link.PING
        return Link.WAIT

    def next_due(self, now: float) -> float:
        if self.busy_since is None:
            return now + self.interval
        if self.heard_at is None:
            return now if self.ping_at is None else self._probe_end()
        return min(self._silent_end(), self._ping_due())

    def not_active(self, now: float) -> None:
        """The broker in use said `not_active`."""
        self._told[self.index] = now

    def switch(self, now: float) -> float:
        """Move to the next endpoint; returns when requests may be sent to it (`now`, or
        `interval` after it last said `not_active`). Call `opened` once connected."""
        self.index = (self.index + 1) % len(self.endpoints)
        self.switches += 1
        told = self._told[self.index]
        return now if told is None else max(now, told + self.interval)

    def _probe_end(self) -> float:
        return max(self.opened_at, self.busy_since or 0.0) + self.probe

    def _silent_end(self) -> float:
        assert self.heard_at is not None
        return max(self.heard_at, self.busy_since or 0.0) + self.timeout

    def _ping_due(self) -> float:
        assert self.heard_at is not None
        return max(self.heard_at, self.ping_at or 0.0) + self.interval
