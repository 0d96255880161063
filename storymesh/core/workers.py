"""The worker lifecycle as data: states, events and the transition table.

Invariants the broker core keeps:
- a worker is known only after READY; before that it is UNKNOWN and holds nothing;
- an IDLE worker holds no request and sits in its service's LRU idle list exactly once;
- a BUSY worker holds exactly one request and is in no idle list;
- GONE is terminal: the worker is forgotten, and a request it held is re-queued at the
  front of its service queue (or failed with `worker_lost` past `max_attempts`);
- a VIOLATION (an unexpected but valid command) means: send DISCONNECT, then GONE.
"""

from __future__ import annotations

from enum import Enum


class WState(Enum):
    __hash__ = object.__hash__  # identity hash: the transition lookup is on the hot path
    UNKNOWN = "unknown"
    IDLE = "idle"
    BUSY = "busy"
    GONE = "gone"
    VIOLATION = "violation"  # not a state a worker sits in: the verdict "disconnect it"
    IGNORE = "ignore"        # not a state either: drop the message silently


class WEvent(Enum):
    __hash__ = object.__hash__
    READY = "ready"
    HEARTBEAT = "heartbeat"
    PARTIAL = "partial"
    FINAL = "final"
    DISCONNECT = "disconnect"
    DISPATCH = "dispatch"
    EXPIRE = "expire"
    UNREACHABLE = "unreachable"


_U, _I, _B, _G = WState.UNKNOWN, WState.IDLE, WState.BUSY, WState.GONE
_V, _X = WState.VIOLATION, WState.IGNORE
E = WEvent

TRANSITIONS: dict[tuple[WState, WEvent], WState] = {
    (_U, E.READY): _I,
    (_U, E.HEARTBEAT): _V,
    (_U, E.PARTIAL): _V,
    (_U, E.FINAL): _V,
    (_U, E.DISCONNECT): _X,   # allowed at any time, even before READY: accepted silently
    (_I, E.READY): _V,        # READY twice
    (_I, E.HEARTBEAT): _I,
    (_I, E.PARTIAL): _V,      # a reply while holding no request
    (_I, E.FINAL): _V,
    (_I, E.DISCONNECT): _G,
    (_I, E.DISPATCH): _B,
    (_I, E.EXPIRE): _G,
    (_I, E.UNREACHABLE): _G,
    (_B, E.READY): _V,
    (_B, E.HEARTBEAT): _B,    # busy storymesh workers heartbeat; that is life, not a fault
    (_B, E.PARTIAL): _B,      # a PARTIAL keeps the worker busy until FINAL
    (_B, E.FINAL): _I,
    (_B, E.DISCONNECT): _G,
    (_B, E.EXPIRE): _G,
    (_B, E.UNREACHABLE): _G,
}


def transition(state: WState, event: WEvent) -> WState:
    """The next state; anything not in the table is a protocol violation."""
    return TRANSITIONS.get((state, event), WState.VIOLATION)
