"""The broker pair (Binary Star) as data: states, events and the transition table.

Two brokers, a primary and a backup, tell each other their state over a state link every
heartbeat. At most one of them serves (ACTIVE); the other (PASSIVE) refuses clients with
`not_active` and workers with DISCONNECT, so they move to the other endpoint at once.

Invariants:
- a broker starts as PRIMARY or BACKUP (its role) and serves nobody until it is ACTIVE;
- a broker becomes ACTIVE from PASSIVE (a fail-over) only when the peer is silent past
  `liveness` heartbeats AND a client or worker then comes to it (a VISITOR): a cut state
  link alone never makes two active brokers, since nobody visits the passive one while the
  active one serves;
- a started primary with a silent peer becomes ACTIVE on a visitor too; a started BACKUP
  never does: it has to hear the primary first (the primary may be up behind a cut link);
- a restarted broker hears the peer ACTIVE and comes back PASSIVE: no flapping;
- two ACTIVE brokers (a healed split) or two PASSIVE ones resolve by role (ARBITRATE): the
  primary serves, the backup is passive;
- MMI requests (`mmi.*`: health checks, monitors) are answered in every state and are no
  visitors, so polling the passive broker never activates it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import Any

log = logging.getLogger(__name__)


class Role(Enum):
    """What a broker of a pair was configured as (`ha = "primary"` or `"backup"`)."""

    PRIMARY = "primary"
    BACKUP = "backup"


class PState(Enum):
    PRIMARY = "primary"  # started as the primary, has not yet heard the peer
    BACKUP = "backup"    # started as the backup, has not yet heard the peer
    ACTIVE = "active"    # serves clients and workers
    PASSIVE = "passive"  # refuses them: they go to the peer
    # not states a broker sits in: the verdicts of the table
    STAY = "stay"            # no change
    REFUSE = "refuse"        # a visitor is sent away, no change
    IF_SILENT = "if_silent"  # a visitor: ACTIVE when the peer is silent, else REFUSE
    ARBITRATE = "arbitrate"  # both in one state: the primary becomes ACTIVE, the backup PASSIVE
    CONFLICT = "conflict"    # both configured with one role: a configuration error, no change


class PEvent(Enum):
    PEER_PRIMARY = "primary"  # the peer says its state (these four values are the wire format)
    PEER_BACKUP = "backup"
    PEER_ACTIVE = "active"
    PEER_PASSIVE = "passive"
    VISITOR = "visitor"  # a client request (not MMI) or a worker message came to this broker


_P, _B, _A, _S = PState.PRIMARY, PState.BACKUP, PState.ACTIVE, PState.PASSIVE
E = PEvent

TRANSITIONS: dict[tuple[PState, PEvent], PState] = {
    (_P, E.PEER_PRIMARY): PState.CONFLICT,
    (_P, E.PEER_BACKUP): _A,         # both started: the primary serves
    (_P, E.PEER_ACTIVE): _S,         # a restarted primary finds the backup serving
    (_P, E.PEER_PASSIVE): PState.STAY,  # the peer turns ACTIVE on hearing us: wait for that
    (_P, E.VISITOR): PState.IF_SILENT,  # a primary alone serves once the peer is silent
    (_B, E.PEER_PRIMARY): PState.STAY,  # the primary turns ACTIVE on hearing us
    (_B, E.PEER_BACKUP): PState.CONFLICT,
    (_B, E.PEER_ACTIVE): _S,
    (_B, E.PEER_PASSIVE): PState.STAY,  # the peer turns ACTIVE on hearing us
    (_B, E.VISITOR): PState.REFUSE,  # never serve before hearing the primary once
    (_A, E.PEER_PRIMARY): PState.STAY,  # it comes back and turns PASSIVE on hearing us
    (_A, E.PEER_BACKUP): PState.STAY,
    (_A, E.PEER_ACTIVE): PState.ARBITRATE,  # a healed split: the backup stands down
    (_A, E.PEER_PASSIVE): PState.STAY,
    (_A, E.VISITOR): PState.STAY,
    (_S, E.PEER_PRIMARY): _A,        # the active primary restarted: serve in its place
    (_S, E.PEER_BACKUP): _A,         # the active backup restarted: serve in its place
    (_S, E.PEER_ACTIVE): PState.STAY,
    (_S, E.PEER_PASSIVE): PState.ARBITRATE,
    (_S, E.VISITOR): PState.IF_SILENT,  # the fail-over
}


def transition(state: PState, event: PEvent) -> PState:
    """The table's verdict; every (state, event) of the four real states is in it."""
    return TRANSITIONS[(state, event)]


def peer_event(message: bytes) -> PEvent | None:
    """The event for a state message from the peer; None for anything else (dropped)."""
    try:
        event = PEvent(message.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return None if event is PEvent.VISITOR else event


@dataclass(frozen=True, slots=True)
class Change:
    """A change of state, for the log and for the broker to act on (standing down)."""

    old: PState
    new: PState
    why: str


class Pair:
    """One broker's side of the pair: its state, what it last heard from the peer, and when.

    Time is an argument (monotonic seconds); nothing here touches a socket."""

    def __init__(self, role: Role, heartbeat_interval: float, liveness: int,
                 now: float) -> None:
        self.role = role
        self.interval = heartbeat_interval
        self.timeout = heartbeat_interval * liveness
        self.state = PState.PRIMARY if role is Role.PRIMARY else PState.BACKUP
        self.peer_state: PEvent | None = None
        self.peer_heard: float | None = None
        # at start the peer gets a full liveness window before it counts as silent
        self.peer_expiry = now + self.timeout
        self.failovers = 0
        self.since = now
        self._next_beat = now

    @property
    def active(self) -> bool:
        return self.state is PState.ACTIVE

    def peer_silent(self, now: float) -> bool:
        return now >= self.peer_expiry

    def on_peer(self, event: PEvent, now: float) -> Change | None:
        """The peer said its state (`event` is one of the four PEER_* events)."""
        self.peer_state = event
        self.peer_heard = now
        self.peer_expiry = now + self.timeout
        verdict = transition(self.state, event)
        if verdict is PState.CONFLICT:
            log.error("the pair's peer is configured as %s too: one broker must be the "
                      "primary, the other the backup", self.role.value)
            return None
        if verdict is PState.ARBITRATE:
            verdict = _A if self.role is Role.PRIMARY else _S
            return self._move(verdict, now, f"peer also {event.value}; the primary serves")
        if verdict is PState.STAY:
            return None
        return self._move(verdict, now, f"peer is {event.value}")

    def on_visitor(self, now: float) -> tuple[bool, Change | None]:
        """A client or worker came: (serve it?, the change it caused)."""
        verdict = transition(self.state, PEvent.VISITOR)
        if verdict is PState.STAY:
            return self.active, None
        if verdict is PState.IF_SILENT and self.peer_silent(now):
            heard = ("never heard" if self.peer_heard is None
                     else f"silent for {now - self.peer_heard:.2f}s")
            return True, self._move(_A, now, f"a peer came and the other broker is {heard}")
        return False, None

    def beat(self, now: float) -> bytes | None:
        """The state message to send the peer now, once per heartbeat interval; else None."""
        if now < self._next_beat:
            return None
        self._next_beat = now + self.interval
        return self.state.value.encode("ascii")

    def next_beat(self) -> float:
        return self._next_beat

    def view(self, now: float) -> dict[str, Any]:
        """The pair as the snapshot shows it."""
        return {"role": self.role.value, "state": self.state.value,
                "since": round(now - self.since, 3), "failovers": self.failovers,
                "peer": {"state": None if self.peer_state is None else self.peer_state.value,
                         "heard_age": None if self.peer_heard is None
                         else round(now - self.peer_heard, 3),
                         "silent": self.peer_silent(now)}}

    def _move(self, new: PState, now: float, why: str) -> Change | None:
        old = self.state
        if new is old:
            return None
        if new is _A and old is _S:
            self.failovers += 1
        self.state = new
        self.since = now
        return Change(old, new, why)
