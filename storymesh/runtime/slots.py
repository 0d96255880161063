"""The lifecycle of one worker slot as data: states, events and the transition table.

A slot is one worker connection of the runtime (one DEALER at a time) and its handler
thread. Invariants the worker runtime keeps:
- a slot holds a socket exactly while CONNECTED or DRAINING; WAITING and DONE hold none;
- a slot holds at most one job, and only on the connection that received it: a job whose
  connection closed is cancelled and forgotten (the broker re-dispatches it), though its
  FINAL still fills the reply cache;
- once the runtime stops, no slot is CONNECTED or WAITING: an idle one is DONE at once, a
  busy one DRAINS until its FINAL went out, its link dropped or the drain grace passed;
- DONE is terminal; the runtime returns when every slot is DONE.
"""

from __future__ import annotations

from enum import Enum

from storymesh.errors import LocalProtocolError


class SlotState(Enum):
    WAITING = "waiting"        # no connection: a (re)connect is due at `reconnect_at`
    CONNECTED = "connected"    # READY went out on the current DEALER; serving
    DRAINING = "draining"      # stopping: finishing the one job it holds, then DISCONNECT
    DONE = "done"              # closed for good


class SlotEvent(Enum):
    CONNECT = "connect"            # the backoff elapsed: a new DEALER, a new routing id, READY
    LINK_LOST = "link_lost"        # silence for liveness x interval, or the broker's DISCONNECT
    STOP_IDLE = "stop_idle"        # the stop flag, while holding no job
    STOP_BUSY = "stop_busy"        # the stop flag, while a job runs
    FINISHED = "finished"          # draining: the job's FINAL went out
    GRACE_PASSED = "grace_passed"  # draining for longer than drain_grace
    CLOSE = "close"                # the runtime ends (also on an error): close whatever is open


_W, _C, _D, _X = SlotState.WAITING, SlotState.CONNECTED, SlotState.DRAINING, SlotState.DONE
E = SlotEvent

TRANSITIONS: dict[tuple[SlotState, SlotEvent], SlotState] = {
    (_W, E.CONNECT): _C,
    (_W, E.STOP_IDLE): _X,
    (_W, E.CLOSE): _X,
    (_C, E.LINK_LOST): _W,       # reconnect after a backoff
    (_C, E.STOP_IDLE): _X,       # DISCONNECT at once
    (_C, E.STOP_BUSY): _D,
    (_C, E.CLOSE): _X,
    (_D, E.FINISHED): _X,        # DISCONNECT after the FINAL
    (_D, E.GRACE_PASSED): _X,    # DISCONNECT while still busy; the job's result is dropped
    (_D, E.LINK_LOST): _X,       # stopping: no reconnect
    (_D, E.CLOSE): _X,
    (_X, E.CLOSE): _X,
}

LINKED = frozenset({SlotState.CONNECTED, SlotState.DRAINING})  # the states holding a socket


def transition(state: SlotState, event: SlotEvent) -> SlotState:
    """The next state; an event the table does not allow is a bug in the runtime."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise LocalProtocolError(f"slot event {event.value} in state {state.value}") from None
