"""The state link of a broker pair: a PUB this broker binds and a SUB on the peer's PUB.

Only the broker loop (storymesh.broker.server) calls it, so the sockets stay in the loop's
thread. Each turn it reads what the peer said (the peer's state, one word) into the pure
`Pair` inside the core, and once per heartbeat interval publishes this broker's own state.
The rules themselves (who serves, when to fail over) are in storymesh.core.pair.

The SUB keeps only the newest message (CONFLATE): a state is a level, not an event, so a
backlog of old states after a stall would only mislead.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import zmq

from storymesh.core.broker import BrokerCore, Send
from storymesh.core.pair import Pair, Role
from storymesh.errors import ConfigError
from storymesh.settings import BrokerSettings

log = logging.getLogger(__name__)

STATE_HWM = 16   # state messages a slow peer may have queued; older ones are worthless
MAX_READ = 64    # peer messages read per turn


def make_pair(settings: BrokerSettings, now: float) -> Pair | None:
    """The pure pair state for `settings`, or None for a broker alone; ConfigError when
    the role is set without both state endpoints."""
    if not settings.ha:
        return None
    if not settings.ha_bind or not settings.ha_peer:
        raise ConfigError("a broker of a pair (ha = primary or backup) needs ha_bind (its own "
                          "state endpoint) and ha_peer (the other broker's)")
    return Pair(Role(settings.ha), settings.heartbeat_interval, settings.liveness, now)


class PairLink:
    """The two state sockets of one broker of a pair."""

    def __init__(self, settings: BrokerSettings, context: zmq.Context[Any]) -> None:
        self.pub: zmq.Socket[bytes] = context.socket(zmq.PUB)
        self.sub: zmq.Socket[bytes] = context.socket(zmq.SUB)
        try:
            self.pub.setsockopt(zmq.LINGER, 0)
            self.pub.setsockopt(zmq.SNDHWM, STATE_HWM)
            self.pub.bind(settings.ha_bind)
            self.sub.setsockopt(zmq.LINGER, 0)
            self.sub.setsockopt(zmq.CONFLATE, 1)
            self.sub.setsockopt(zmq.SUBSCRIBE, b"")
            self.sub.connect(settings.ha_peer)
        except BaseException:
            self.close()
            raise
        log.info("pair: %s broker, state on %s, peer state from %s", settings.ha,
                 settings.ha_bind, settings.ha_peer)

    @property
    def socket(self) -> zmq.Socket[bytes]:
        """The socket to poll for the peer's state."""
        return self.sub

    def turn(self, core: BrokerCore, readable: bool, now: float) -> list[Send]:
        """Feed what the peer said into the core and publish this broker's state when due;
        what the core decided to send (a stand-down's replies and DISCONNECTs)."""
        sends: list[Send] = []
        if readable:
            for _ in range(MAX_READ):
                try:
                    message = self.sub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                sends += core.on_peer_state(message, now)
        assert core.pair is not None  # a link only exists for a broker of a pair
        state = core.pair.beat(now)
        if state is not None:
            # PUB never blocks; a full pipe drops, and the next beat says it again
            with contextlib.suppress(zmq.Again):
                self.pub.send(state, zmq.NOBLOCK)
        return sends

    def close(self) -> None:
        for sock in (self.pub, self.sub):
            if not sock.closed:
                sock.close(linger=0)
