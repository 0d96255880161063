"""The gateway's side of the mesh: requests on a few threads, and one thread for every watch.

A `Client` belongs to one thread (it is not thread-safe), so:
- `Mesh.call` runs a request on a small pool of threads, each with its own `Client`; the
  asyncio loop awaits it without blocking;
- `WatchPump` is one thread with one pipelining `Client` that holds every `story.watch` the
  gateway has open at once, and hands each reply to the asyncio loop. No thread per watch,
  none per HTTP connection.

Each request names the story's owner in the header `principal`: behind a keyed (CURVE) broker
the gateway's key has the `delegate` role, so the broker passes the owner on and the story
service checks it too; in front of a plain broker the story service records it as the
story's owner, which the gateway checks itself.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import zmq

from storymesh.errors import RequestFailed, RequestTimeout, StorymeshError
from storymesh.runtime.client import Client, Reply
from storymesh.settings import Settings

log = logging.getLogger(__name__)

PUMP_TURN = 0.02  # seconds the pump waits for replies before looking for new watches


@dataclass(frozen=True, slots=True)
class WatchReply:
    """What the pump hands to the loop: a watch's PARTIAL or FINAL payload, or its error."""

    corr: str
    payload: dict[str, Any] | None
    final: bool
    error: RequestFailed | RequestTimeout | None = None


class Mesh:
    """Requests to the mesh from asyncio code; one `Client` per pool thread."""

    def __init__(self, settings: Settings, *, context: zmq.Context[Any] | None = None) -> None:
        self.settings = settings
        self.gateway = settings.gateway
        self._own_context = context is None
        self.context: zmq.Context[Any] = context or zmq.Context()
        self._pool = ThreadPoolExecutor(self.gateway.mesh_threads, thread_name_prefix="mesh")
        self._local = threading.local()
        self._clients: list[Client] = []
        self._lock = threading.Lock()

    def _client(self) -> Client:
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            client = Client(self.settings.broker, settings=self.settings.peer_section(),
                            context=self.context,
                            timeout=self.gateway.mesh_timeout, retries=1)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _drop(self) -> None:
        """After a timeout: a fresh socket next time, so nothing stale is left queued."""
        client: Client | None = getattr(self._local, "client", None)
        if client is not None:
            self._local.client = None
            with self._lock:
                self._clients.remove(client)
            client.close()

    def _call(self, service: str, payload: dict[str, Any], owner: str | None,
              rid: str | None, timeout: float | None) -> dict[str, Any]:
        client = self._client()
        client.principal = owner
        client.timeout = timeout or self.gateway.mesh_timeout
        try:
            return client.call(service, payload, rid=rid).payload
        except RequestTimeout:
            self._drop()
            raise

    def _available(self, services: tuple[str, ...], timeout: float) -> dict[str, bool | None]:
        client = self._client()
        found: dict[str, bool | None] = {}
        for name in services:
            found[name] = client.service_available(name, timeout=timeout)
            if found[name] is None:
                self._drop()
                break
        return found

    async def call(self, service: str, payload: dict[str, Any], *, owner: str | None = None,
                   rid: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """The FINAL payload of one request; raises RequestFailed / RequestTimeout."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, service, payload, owner, rid,
                                          timeout)

    async def query(self, op: str, principal: str | None, /, **fields: Any) -> dict[str, Any]:
        """A `story.query` op on behalf of `principal`."""
        return await self.call("story.query", {"op": op, **fields}, owner=principal)

    async def available(self, services: tuple[str, ...], timeout: float
                        ) -> dict[str, bool | None]:
        """MMI `mmi.service` for each name: True, False, or None when the broker is silent."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._available, services, timeout)

    async def run(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run blocking mesh code (the monitor's poller) on a pool thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()
        if self._own_context:
            self.context.term()


class WatchPump:
    """One thread, one `Client`, every open `story.watch`; replies go to `deliver` on the loop."""

    def __init__(self, settings: Settings, context: zmq.Context[Any],
                 loop: asyncio.AbstractEventLoop, deliver: Callable[[WatchReply], None]) -> None:
        self.settings = settings
        self.context = context
        self.loop = loop
        self.deliver = deliver
        self._commands: queue.SimpleQueue[tuple[str, str | None]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch-pump", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def watch(self, corr: str, owner: str | None) -> None:
        """Open a `story.watch` for `corr` (thread-safe)."""
        self._commands.put((corr, owner))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        # A watch is quiet while a step runs; it is only stuck when no event came for longer
        # than a step may take.
        client = Client(self.settings.broker, settings=self.settings.peer_section(),
                        context=self.context,
                        timeout=self.settings.step_timeout + 60.0, retries=1)
        watches: dict[str, str] = {}  # request id -> story id
        try:
            while not self._stop.is_set():
                while True:
                    try:
                        corr, owner = self._commands.get_nowait()
                    except queue.Empty:
                        break
                    client.principal = owner
                    watches[client.send("story.watch", {"corr": corr})] = corr
                try:
                    got = client.recv_any(PUMP_TURN)
                except StorymeshError:  # never let one bad turn end every stream
                    log.exception("watch pump: receiving failed")
                    continue
                if got is not None:
                    self._hand_over(watches, *got)
        finally:
            client.close()

    def _hand_over(self, watches: dict[str, str], rid: str,
                   reply: Reply | RequestFailed | RequestTimeout) -> None:
        corr = watches.get(rid)
        if corr is None:
            return
        if isinstance(reply, Reply):
            if reply.final:
                del watches[rid]
            item = WatchReply(corr, reply.payload, reply.final)
        else:
            del watches[rid]
            item = WatchReply(corr, None, True, reply)
        try:
            self.loop.call_soon_threadsafe(self.deliver, item)
        except RuntimeError:  # the loop closed under us: the gateway is stopping
            self._stop.set()
