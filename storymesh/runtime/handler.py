"""The handler thread of a worker slot: runs `agent.handle` off the socket thread.

Each slot has one; it takes `Job`s from its queue one at a time, turns what the handler
yields (or raises) into PARTIAL / FINAL bodies, and hands them to the socket thread as
`Result`s on a queue, waking it with a one-byte message on an inproc PUSH socket that this
thread creates and owns (a socket belongs to one thread). A request already answered is
replayed from the reply cache instead of running the handler again.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import zmq

from storymesh.core import envelope
from storymesh.core.mdp import Frame
from storymesh.errors import AgentError
from storymesh.runtime.agent import Agent, Final, Partial, Request
from storymesh.runtime.batching import Batcher
from storymesh.runtime.cache import ReplyCache, cache_key
from storymesh.runtime.metrics import NULL_METRICS, RequestMeter

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """One request handed to a slot's handler thread."""

    token: int
    client: bytes
    request: Request


@dataclass(frozen=True, slots=True)
class Result:
    """One reply body produced by a handler thread for job `token` of slot `slot`."""

    slot: int
    token: int
    rid: str
    body: list[Frame]
    final: bool
    cacheable: bool = False


class Handler(threading.Thread):
    """Runs `agent.handle` for one slot, one job at a time, off the socket thread."""

    def __init__(self, index: int, agent: Agent, cache: ReplyCache, context: zmq.Context[Any],
                 wake: str, results: queue.SimpleQueue[Result],
                 batcher: Batcher | None = None, meter: RequestMeter | None = None) -> None:
        super().__init__(name=f"{agent.service}-handler-{index}", daemon=True)
        self.index = index
        self.agent = agent
        self.cache = cache
        self.context = context
        self.wake_endpoint = wake
        self.results = results
        self.batcher = batcher
        self.meter = meter or RequestMeter(NULL_METRICS, agent.service)
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._wake: zmq.Socket[Any] | None = None

    def run(self) -> None:
        self._wake = self.context.socket(zmq.PUSH)
        self._wake.setsockopt(zmq.LINGER, 0)
        self._wake.connect(self.wake_endpoint)
        try:
            while (job := self.jobs.get()) is not None:
                if job.request.cancel.is_set():
                    continue  # its connection went while it waited: the broker re-dispatches
                self._serve(job)
        finally:
            self._wake.close()

    def _post(self, job: Job, body: list[Frame], final: bool, cacheable: bool = False) -> None:
        self.results.put(Result(self.index, job.token, cache_key(job.request), body, final,
                                cacheable))
        assert self._wake is not None  # set at the start of run(), our own invariant
        # Again: wake-ups already queued, and the socket thread drains the whole queue
        with contextlib.suppress(zmq.Again):
            self._wake.send(b"", zmq.NOBLOCK)

    def _serve(self, job: Job) -> None:
        req = job.request
        op = self.meter.label(req.payload)
        cached = self.cache.get(cache_key(req))
        if cached is not None:
            self._post(job, cached, True)
            self.meter.answered(op, "cached")
            return
        started = self.meter.started()
        outcome = self._run(job)
        self.meter.finished(op, outcome, started)

    def _run(self, job: Job) -> str:
        """Run the agent for `job`, posting its replies; the outcome: "ok" or an error code."""
        req = job.request
        header = envelope.make_header(req.id, corr=req.corr, ok=True)
        replies: Iterator[Partial | Final] | None = None
        try:
            if self.batcher is not None and self.batcher.accepts(req):
                outcome = self.batcher.serve(req)
                if isinstance(outcome, AgentError):
                    raise outcome
                replies = iter((outcome,))
            else:
                replies = self.agent.handle(req)
            for reply in replies:
                if isinstance(reply, Final):
                    self._post(job, envelope.pack(header, reply.payload), True, cacheable=True)
                    return "ok"  # anything the generator would yield after its Final is ignored
                if not isinstance(reply, Partial):
                    raise TypeError(f"handle() yielded {type(reply).__name__}, "
                                    "not Partial or Final")
                self._post(job, envelope.pack(header, reply.payload), False)
            self._post(job, envelope.error_body(req.id, "internal", "the agent ended "
                                                "without a final reply", corr=req.corr), True)
            return "internal"
        except AgentError as exc:
            body = envelope.error_body(req.id, exc.code, exc.message, corr=req.corr,
                                       retryable=exc.retryable, retry_after=exc.retry_after)
            # a fatal error repeats identically, a retryable one deserves a fresh try; an
            # error after a cancel (link lost, deadline, drain) says nothing about the request
            cacheable = not exc.retryable and not req.cancel.is_set()
            self._post(job, body, True, cacheable=cacheable)
            return exc.code
        except Exception:
            log.exception("%s: request %s failed inside the agent", self.agent.service, req.id)
            self._post(job, envelope.error_body(req.id, "internal", "unexpected error in the "
                                                "agent", corr=req.corr), True)
            return "internal"
        finally:
            self._close_replies(replies)

    def _close_replies(self, replies: object) -> None:
        """Run the handler's own cleanup now, not at garbage collection."""
        close = getattr(replies, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception:
            log.exception("%s: closing a handler's reply iterator failed", self.agent.service)
