"""One story-service instance: accepts stories, runs each in the background, answers queries
and watchers, and shares the journal (and the work) with other instances through leases.

A story is owned by one instance at a time: the journal's lease. The owner renews its leases
every `lease_ttl / 3`; an instance that dies stops renewing, and after `lease_ttl` another
instance (or the same one restarted) claims the story and resumes it from its last finished
step. Watchers read progress from the journal, so they can follow a story whichever
instance runs it, and across restarts.

With keys on (`broker_key` set) the broker names the caller in the header `principal`: a
story belongs to the principal that submitted it, and only that principal or an admin key
may watch, query or cancel it (`forbidden` otherwise); `list` shows a caller its own
stories. The story's own requests to the agents carry its owner as their principal (the
story service's key is a delegate), so the broker shares the agents fairly between users.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import zmq

from storymesh.core.schema import Status
from storymesh.errors import FatalAgentError
from storymesh.runtime.agent import Final, Partial, Reply
from storymesh.runtime.client import Client
from storymesh.runtime.metrics import NULL_METRICS, Metrics
from storymesh.settings import StorySettings
from storymesh.story.authors import ASK_TIMEOUT, AuthorLanguages, Languages, ask_languages
from storymesh.story.journal import Journal, JournalUnavailable, StepKind, StepRow, StoryRow
from storymesh.story.metrics import STORY_SECONDS
from storymesh.story.pipeline import StoryCancelled, StoryFailed, StoryPipeline
from storymesh.story.spec import StorySpec

log = logging.getLogger(__name__)

PRUNE_EVERY = 600.0  # seconds between retention sweeps
WATCH_POLL = 0.25  # seconds between journal reads of a watcher when nothing wakes it
LIST_SCAN = 5000  # stories scanned for a caller's own when keys are on


def corr_for(rid: str) -> str:
    """The story id for a submission id: a retried submission finds its story again."""
    return "st-" + hashlib.sha256(rid.encode()).hexdigest()[:16]


def progress(row: StoryRow, steps: list[StepRow]) -> dict[str, Any]:
    """Counts for a progress bar: finished steps of each kind and the total to do."""
    chapters = int(row.request.get("chapters") or 0)
    done = [s for s in steps if s.done]
    count = {kind: sum(1 for s in done if s.kind == kind) for kind in StepKind}
    total = 1 + chapters + (chapters + 1) + 1  # outline, chapters, pictures + cover, publishing
    finished = sum(count.values()) + (1 if row.status == Status.COMPLETE else 0)
    return {
        "done": finished,
        "total": total,
        "outline": count[StepKind.OUTLINE] > 0,
        "chapters": chapters,
        "chapters_written": count[StepKind.CHAPTER],
        "pictures_painted": count[StepKind.PICTURE] + count[StepKind.COVER],
    }


class StoryEngine:
    """Runs stories for the story services (`story.submit`, `story.watch`, `story.query`)."""

    def __init__(
        self,
        settings: StorySettings,
        journal: Journal,
        *,
        context: zmq.Context[Any] | None = None,
        instance: str | None = None,
        metrics: Metrics = NULL_METRICS,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.journal = journal
        self.context = context
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._runs: dict[str, threading.Thread] = {}
        self._halts: dict[str, threading.Event] = {}  # per run: stop here (closing, lease lost)
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._upkeep: threading.Thread | None = None
        self.owned = bool(settings.peer.broker_key)  # keys on: stories are private to their owner
        self.authors = AuthorLanguages(self._ask_languages)  # refuses what no author writes

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the lease upkeep (renew, claim orphaned stories, prune)."""
        self._upkeep = threading.Thread(target=self._keep_leases, name="story-leases", daemon=True)
        self._upkeep.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop running stories (they stay resumable) and release their leases."""
        self._stop.set()
        for halt in list(self._halts.values()):
            halt.set()
        self._wake()
        for thread in list(self._runs.values()) + ([self._upkeep] if self._upkeep else []):
            thread.join(timeout)

    def _keep_leases(self) -> None:
        ttl = self.settings.lease_ttl
        next_prune = time.monotonic()
        while not self._stop.wait(min(ttl / 3, 1.0)):
            try:
                self._renew(ttl)
                for corr in self.journal.claimable(self.instance, 16):
                    if corr not in self._runs and self.journal.acquire(corr, self.instance, ttl):
                        log.info("resuming story %s", corr)
                        self._start_run(corr)
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_EVERY
                    removed = self.journal.prune(
                        self.settings.retention_days * 86400, self.settings.retention_bytes
                    )
                    if removed:
                        log.info("pruned %d old stories from the journal", removed)
            except Exception:  # the upkeep must outlive a bad turn (a locked db, say)
                log.exception("lease upkeep failed; trying again")

    def _renew(self, ttl: float) -> None:
        """Extend the lease of every story running here, and stop a run whose lease another
        instance took (this one stalled past its TTL, cut off from the journal, say): one
        owner computes a story's steps at a time. Only live runs are renewed, so a run that
        died leaves its lease to run out and the story to be claimed again."""
        for corr, halt in list(self._halts.items()):
            if not halt.is_set() and not self.journal.acquire(corr, self.instance, ttl):
                log.warning("story %s was taken over by %s; stopping it here", corr,
                            self.journal.lease_owner(corr))
                halt.set()

    # --- submit -----------------------------------------------------------------------

    def submit(
        self, payload: dict[str, Any], rid: str, principal: str | None = None
    ) -> dict[str, Any]:
        """Check and accept a story; it runs in the background. Idempotent per `rid`."""
        spec = StorySpec.parse(payload)
        corr = corr_for(rid)
        existing = self.journal.get_story(corr)
        if existing is not None:
            self._check_owner(existing, principal, False)
        if existing is None:
            self.authors.check(spec.language)
            self.journal.create_story(
                corr, spec.as_dict(), self.instance, principal, ttl=self.settings.lease_ttl
            )
            self.journal.record(corr, principal or "client", "story", "submit", rid)
            self._start_run(corr)
            status = Status.ACCEPTED
        else:
            status = existing.status
        return {"corr": corr, "status": str(status)}

    def _ask_languages(self) -> Languages | None:
        with Client(self.settings.peer.broker, settings=self.settings.peer,
                    context=self.context, timeout=ASK_TIMEOUT, retries=1) as client:
            return ask_languages(client)

    def _start_run(self, corr: str) -> None:
        with self._lock:
            if corr in self._runs and self._runs[corr].is_alive():
                return
            halt = threading.Event()
            if self._stop.is_set():
                halt.set()
            thread = threading.Thread(
                target=self._run, args=(corr, halt), name=f"story-{corr}", daemon=True
            )
            self._runs[corr] = thread
            self._halts[corr] = halt
        thread.start()

    def _run(self, corr: str, halt: threading.Event) -> None:
        row = self.journal.get_story(corr)
        if row is None or row.done:
            return
        try:
            spec = StorySpec.parse(row.request)
            self.journal.set_status(corr, Status.RUNNING)
            with Client(
                self.settings.peer.broker,
                settings=self.settings.peer,
                context=self.context,
                timeout=self.settings.step_timeout,
                retries=1,
                principal=row.principal,
            ) as client:
                StoryPipeline(
                    corr,
                    spec,
                    self.settings,
                    self.journal,
                    client,
                    notify=lambda c: self._wake(),
                    stop=halt,
                    metrics=self.metrics,
                ).run()
            if self.journal.set_status(corr, Status.COMPLETE):
                # wall clock: `created` is the journal's, shared with other processes
                self.metrics.observe(STORY_SECONDS, max(0.0, time.time() - row.created))
            log.info("story %s complete", corr)
        except JournalUnavailable as exc:  # not the story's fault: its lease brings it back
            log.warning("story %s paused, the journal is unreachable: %s", corr, exc)
        except StoryCancelled:
            if not halt.is_set():
                self.journal.set_status(corr, Status.CANCELLED)
        except (StoryFailed, FatalAgentError) as exc:
            log.warning("story %s failed: %s", corr, exc)
            self.journal.set_status(corr, Status.FAILED, error=str(exc))
        except Exception as exc:  # a bug must fail this story, not the service
            log.exception("story %s failed unexpectedly", corr)
            self.journal.set_status(corr, Status.FAILED, error=f"internal error: {exc}")
        finally:
            try:
                self.journal.release(corr, self.instance)
            except Exception:  # an unreachable journal: the lease runs out by itself
                log.exception("story %s: could not release its lease", corr)
            with self._lock:
                self._runs.pop(corr, None)
                self._halts.pop(corr, None)
            self._wake()

    # --- queries ----------------------------------------------------------------------

    def _story(self, corr: Any, principal: str | None = None, admin: bool = False) -> StoryRow:
        if not isinstance(corr, str) or not corr:
            raise FatalAgentError("bad_request", "'corr' (the story id) is required")
        row = self.journal.get_story(corr)
        if row is None:
            raise FatalAgentError("not_found", f"no story {corr}")
        self._check_owner(row, principal, admin)
        return row

    def _check_owner(self, row: StoryRow, principal: str | None, admin: bool) -> None:
        """With keys on, only the story's owner and admin keys may touch it."""
        if self.owned and not admin and (principal is None or row.principal != principal):
            raise FatalAgentError("forbidden", f"story {row.corr} belongs to another key")

    def status(
        self, corr: Any, principal: str | None = None, admin: bool = False
    ) -> dict[str, Any]:
        row = self._story(corr, principal, admin)
        return {
            "corr": corr,
            "status": str(row.status),
            "title": row.title,
            "error": row.error,
            "steps": progress(row, self.journal.steps(corr, with_blobs=False)),
            "created": row.created,
            "updated": row.updated,
            "owner": self.journal.lease_owner(corr),
            "principal": row.principal,
        }

    def history(
        self, corr: Any, principal: str | None = None, admin: bool = False
    ) -> list[dict[str, Any]]:
        self._story(corr, principal, admin)
        return [
            {
                "sender": h.sender,
                "receiver": h.receiver,
                "message_type": h.message_type,
                "time": h.time,
                "id": h.id,
            }
            for h in self.journal.history(corr)
        ]

    def fetch(self, corr: Any, principal: str | None = None, admin: bool = False,
              fmt: Any = None) -> dict[str, Any]:
        """The publications; only format `fmt` when given (an HTTP download needs one)."""
        row = self._story(corr, principal, admin)
        pubs = self.journal.publications(corr)
        if fmt is not None:
            pubs = {fmt: pubs[fmt]} if isinstance(fmt, str) and fmt in pubs else {}
        return {"corr": corr, "status": str(row.status), "title": row.title,
                "publications": pubs}

    def chapter(self, corr: Any, index: Any, principal: str | None = None,
                admin: bool = False) -> dict[str, Any]:
        """A written chapter (0-based `index`), while the story still runs."""
        data = self._finished_step(corr, StepKind.CHAPTER, index, principal, admin).data or {}
        return {"corr": corr, "index": index, "title": data.get("title"),
                "text": data.get("text", "")}

    def picture(self, corr: Any, index: Any, principal: str | None = None,
                admin: bool = False) -> dict[str, Any]:
        """A painted picture's PNG: chapter `index`'s (0-based), or the cover for -1."""
        kind = StepKind.COVER if index == -1 else StepKind.PICTURE
        step = self._finished_step(corr, kind, 0 if index == -1 else index, principal, admin)
        meta = step.data or {}
        return {"corr": corr, "index": index, "png": step.blob or b"",
                "width": meta.get("width"), "height": meta.get("height")}

    def _finished_step(self, corr: Any, kind: StepKind, index: Any, principal: str | None,
                       admin: bool) -> StepRow:
        self._story(corr, principal, admin)
        if isinstance(index, bool) or not isinstance(index, int):
            raise FatalAgentError("bad_request", "'index' must be an integer")
        step = self.journal.get_step(corr, kind, index)
        if step is None or not step.done:
            what = "the cover" if kind == StepKind.COVER else f"{kind} {index}"
            raise FatalAgentError("not_found", f"{what} of {corr} is not finished yet")
        return step

    def list(
        self, limit: int = 50, principal: str | None = None, admin: bool = False,
        owner: str | None = None,
    ) -> list[dict[str, Any]]:
        """The latest stories; with keys on a caller's own; `owner` narrows to one
        principal's (the gateway's filter in front of a plain broker)."""
        if self.owned and not admin:  # a caller sees only its own stories
            owner = principal if owner is None or owner == principal else None
            if owner is None:
                return []
        if owner is not None:
            rows = [r for r in self.journal.list_stories(LIST_SCAN)
                    if r.principal == owner][:limit]
        else:
            rows = self.journal.list_stories(limit)
        return [
            {
                "corr": r.corr,
                "status": str(r.status),
                "title": r.title,
                "created": r.created,
                "updated": r.updated,
                "plot": str(r.request.get("plot", ""))[:80],
            }
            for r in rows
        ]

    def cancel(
        self, corr: Any, principal: str | None = None, admin: bool = False
    ) -> dict[str, Any]:
        row = self._story(corr, principal, admin)
        if not row.done:
            self.journal.set_status(corr, Status.CANCELLED)
            self.journal.record(corr, principal or "client", "story", "cancel", corr)
            self._wake()
        return {"corr": corr, "status": str(self._story(corr, principal, admin).status)}

    # --- watching ---------------------------------------------------------------------

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def watch(
        self, corr: Any, cancel: threading.Event, principal: str | None = None, admin: bool = False
    ) -> Iterator[Reply]:
        """PARTIAL progress events from the journal, then a FINAL with the outcome."""
        row = self._story(corr, principal, admin)
        seen: set[tuple[str, int]] = set()
        published = False
        while True:
            steps = self.journal.steps(corr, with_blobs=False)
            bar = progress(row, steps)
            title = row.title
            for step in sorted((s for s in steps if s.done), key=lambda s: s.finished or 0):
                if (step.kind, step.index) in seen:
                    continue
                seen.add((step.kind, step.index))
                yield Partial(self._event(step, bar, title, seen))
            if row.done:
                yield Final(self._outcome(row))
                return
            all_painted = (
                bar["chapters"]
                and bar["pictures_painted"] == bar["chapters"] + 1
                and bar["chapters_written"] == bar["chapters"]
            )
            if all_painted and not published:
                published = True
                yield Partial(
                    {
                        "event": "publishing",
                        "index": 0,
                        "total": bar["total"],
                        "done": bar["done"],
                        "title": title,
                    }
                )
            if cancel.is_set() or self._stop.is_set():
                raise FatalAgentError("shutting_down", "the story service is stopping")
            with self._changed:
                self._changed.wait(WATCH_POLL)
            row = self._story(corr, principal, admin)

    @staticmethod
    def _event(step: StepRow, bar: dict[str, Any], title: str | None,
               seen: set[tuple[str, int]]) -> dict[str, Any]:
        """One progress event; its counts are totals so far (steps up to this one), so a
        watcher that hears an event twice (a re-sent watch) never counts it twice."""
        data = step.data or {}
        kinds = [kind for kind, _ in seen]
        event: dict[str, Any] = {
            "event": "picture" if step.kind == StepKind.COVER else str(step.kind),
            "index": -1 if step.kind == StepKind.COVER else step.index,
            "total": bar["total"],
            "done": len(seen),
            "chapters": bar["chapters"],
            "chapters_written": kinds.count(StepKind.CHAPTER),
            "pictures_painted": kinds.count(StepKind.PICTURE) + kinds.count(StepKind.COVER),
            "title": title,
        }
        if step.kind == StepKind.CHAPTER:
            event["chapter_title"] = data.get("title")
            event["text"] = data.get("text", "")
        if step.kind == StepKind.OUTLINE:
            event["title"] = title or data.get("title")
        if step.kind == StepKind.COVER:
            event["cover"] = True
        return event

    def _outcome(self, row: StoryRow) -> dict[str, Any]:
        final: dict[str, Any] = {"corr": row.corr, "status": str(row.status), "title": row.title}
        if row.status == Status.COMPLETE:
            final["publications"] = self.journal.publications(row.corr)
        if row.error:
            final["error"] = row.error
        return final
