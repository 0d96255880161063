"""Batching across slots: requests that arrive on several worker connections of one process
within a short window are served by one `agent.handle_batch` call (one `generate` for
chapters of several stories), instead of one after another under the model's lock.

Handler threads hand a batchable request to the batcher and wait for its outcome; one
batcher thread collects up to `max_batch` requests, waiting at most `window` seconds after
the first, and calls the agent once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future

from storymesh.errors import AgentError, RetryableAgentError
from storymesh.runtime.agent import Agent, Final, Request

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 0.05  # seconds the first request of a batch waits for company


class Batcher:
    """Collects batchable requests from handler threads into `agent.handle_batch` calls."""

    def __init__(self, agent: Agent, max_batch: int, window: float = DEFAULT_WINDOW) -> None:
        self.agent = agent
        self.max_batch = max_batch
        self.window = window
        self._inbox: queue.SimpleQueue[tuple[Request, Future[Final | AgentError]] | None] = \
            queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"{agent.service}-batcher",
                                        daemon=True)
        self.batches: list[int] = []  # sizes of the batches served (for tests and logs)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._inbox.put(None)
        self._thread.join(5.0)

    def accepts(self, request: Request) -> bool:
        return self.agent.batchable(request)

    def serve(self, request: Request) -> Final | AgentError:
        """Block until the batch holding `request` has been served; its outcome."""
        future: Future[Final | AgentError] = Future()
        self._inbox.put((request, future))
        return future.result()

    def _run(self) -> None:
        while (first := self._inbox.get()) is not None:
            batch = [first]
            deadline = time.monotonic() + self.window
            stopping = False
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._inbox.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._serve(batch)
            if stopping:
                return

    def _serve(self, batch: list[tuple[Request, Future[Final | AgentError]]]) -> None:
        self.batches.append(len(batch))
        try:
            outcomes = self.agent.handle_batch([request for request, _ in batch])
        except Exception as exc:  # one failing call must answer every request in it
            log.exception("%s: batch of %d failed", self.agent.service, len(batch))
            error: AgentError = exc if isinstance(exc, AgentError) else \
                RetryableAgentError("model_error", f"batched generation failed: {exc}")
            outcomes = [error] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            future.set_result(outcome)
