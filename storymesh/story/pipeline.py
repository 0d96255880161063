"""One story's run: outline, then chapters in order, each picture requested the moment its
chapter is written, then the publisher once the last picture lands.

Everything goes through one pipelining `Client`, so the author, several illustrators and
the publisher work side by side; every request id is derived from (story, step), so a retry
or a resumed run asks the agents the same question under the same id (they are idempotent
per id). Each finished step is journalled before the next is asked for; a resumed run
reads the journal and never asks for a finished step again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storymesh.errors import RequestFailed, RequestTimeout, StorymeshError
from storymesh.runtime.client import Client, Reply
from storymesh.runtime.metrics import NULL_METRICS, Metrics
from storymesh.settings import StorySettings
from storymesh.story.journal import Journal, StepKind
from storymesh.story.metrics import STEP_SECONDS
from storymesh.story.spec import StorySpec

log = logging.getLogger(__name__)

AUTHOR, ILLUSTRATOR, PUBLISHER = "story.author", "story.illustrator", "story.publisher"
_SHORT = {AUTHOR: "author", ILLUSTRATOR: "illustrator", PUBLISHER: "publisher"}
PREVIOUS_TEXT_CHARS = 2000  # how much of the previous chapter the author sees


class StoryFailed(StorymeshError):
    """A step kept failing; the story ends `failed` with this message."""


class StoryCancelled(StorymeshError):
    """The story was cancelled while it ran."""


@dataclass(slots=True)
class Task:
    """A step in flight."""

    kind: StepKind
    index: int
    service: str
    payload: dict[str, Any]
    attempt: int = 1
    asked: float | None = None  # monotonic time of the first ask (retries keep it)


class StoryPipeline:
    """Runs one story to its end (or to failure / cancellation), journalling every step."""

    def __init__(
        self,
        corr: str,
        spec: StorySpec,
        settings: StorySettings,
        journal: Journal,
        client: Client,
        *,
        notify: Callable[[str], None] = lambda corr: None,
        stop: threading.Event | None = None,
        metrics: Metrics = NULL_METRICS,
    ) -> None:
        self.corr = corr
        self.metrics = metrics
        self.spec = spec
        self.settings = settings
        self.journal = journal
        self.client = client
        self.notify = notify
        self.stop = stop or threading.Event()
        self.inflight: dict[str, Task] = {}
        self.outline: dict[str, Any] = {}
        self.texts: dict[int, dict[str, Any]] = {}
        self.pictures: dict[int, bytes] = {}
        self.cover: bytes | None = None

    # --- driving ----------------------------------------------------------------------

    def run(self) -> dict[str, bytes]:
        """Run to the end; returns the publications. Raises StoryFailed / StoryCancelled."""
        self.outline = self._outline()
        total = len(self.outline["chapters"])
        self._load_finished(total)
        if self.cover is None:
            self._ask(StepKind.COVER, 0)
        for i in range(total):
            if i in self.texts and i not in self.pictures:
                self._ask(StepKind.PICTURE, i)
        self._next_chapter(total)
        while self.inflight:
            self._check_cancel()
            got = self.client.recv_any(0.25)
            if got is not None:
                self._on_reply(*got, total=total)
        return self._publish(total)

    def _outline(self) -> dict[str, Any]:
        row = self.journal.get_step(self.corr, StepKind.OUTLINE, 0)
        if row is not None and row.data is not None:
            return row.data
        self._ask(StepKind.OUTLINE, 0)
        while self.inflight:
            self._check_cancel()
            got = self.client.recv_any(0.25)
            if got is not None:
                self._on_reply(*got, total=0)
        return self.outline

    def _load_finished(self, total: int) -> None:
        """What an earlier run of this story already finished (the journal's word)."""
        for row in self.journal.steps(self.corr):
            if not row.done:
                continue
            if row.kind == StepKind.CHAPTER and row.data is not None:
                self.texts[row.index] = row.data
            elif row.kind == StepKind.PICTURE and row.blob is not None:
                self.pictures[row.index] = row.blob
            elif row.kind == StepKind.COVER and row.blob is not None:
                self.cover = row.blob

    def _next_chapter(self, total: int) -> None:
        """Ask for the first unwritten chapter (chapters are written in order)."""
        for i in range(total):
            if i not in self.texts:
                if not any(t.kind == StepKind.CHAPTER for t in self.inflight.values()):
                    self._ask(StepKind.CHAPTER, i)
                return

    def _check_cancel(self) -> None:
        if self.stop.is_set():
            raise StoryCancelled("the story service is stopping")
        row = self.journal.get_story(self.corr)
        if row is not None and row.status == "cancelled":
            raise StoryCancelled("cancelled")

    # --- requests ---------------------------------------------------------------------

    def _payload(self, kind: StepKind, index: int) -> tuple[str, dict[str, Any]]:
        spec, outline = self.spec, self.outline
        common = {
            "target_age": spec.target_age,
            "themes": list(spec.themes),
            "art_style": spec.art_style,
            "language": spec.language,
        }
        if kind == StepKind.OUTLINE:
            extra = {"title": spec.title} if spec.title else {}
            return AUTHOR, {
                "op": "outline",
                "plot": spec.plot,
                "chapters": spec.chapters,
                "seed": spec.seed,
                **extra,
                **common,
            }
        if kind == StepKind.CHAPTER:
            previous = self.texts.get(index - 1, {}).get("text", "")
            return AUTHOR, {
                "op": "chapter",
                "outline": outline,
                "index": index,
                "previous_text": previous[-PREVIOUS_TEXT_CHARS:],
                "plot": spec.plot,
                "seed": spec.seed + index,
                **common,
            }
        size = self.settings.picture_size
        if kind == StepKind.COVER:
            prompt = outline.get("cover_prompt") or spec.plot
            seed = spec.seed
        else:
            prompt = self.texts[index].get("picture_prompt") or self.texts[index]["title"]
            seed = spec.seed + 1 + index
        return ILLUSTRATOR, {
            "prompt": prompt,
            "characters": outline.get("characters", []),
            "art_style": spec.art_style,
            "width": size,
            "height": size,
            "seed": seed,
        }

    def _rid(self, kind: StepKind | str, index: int) -> str:
        return f"{self.corr}.{kind}.{index}"

    def _ask(self, kind: StepKind, index: int) -> None:
        service, payload = self._payload(kind, index)
        self._send(Task(kind, index, service, payload))

    def _send(self, task: Task) -> None:
        rid = self._rid(task.kind, task.index)
        if task.asked is None:
            task.asked = time.monotonic()
        self.journal.mark_step_started(self.corr, task.kind, task.index)
        self.journal.record(self.corr, "story", _SHORT[task.service], f"{task.kind}_request", rid)
        self.client.send(
            task.service,
            task.payload,
            rid=rid,
            corr=self.corr,
            deadline=time.time() + self.settings.step_timeout,
        )
        self.inflight[rid] = task

    def _on_reply(
        self, rid: str, reply: Reply | RequestFailed | RequestTimeout, total: int
    ) -> None:
        task = self.inflight.get(rid)
        if task is None:
            return
        if isinstance(reply, Reply) and not reply.final:
            return  # streamed text: progress only
        del self.inflight[rid]
        if not isinstance(reply, Reply):
            self._retry(task, reply)
            return
        self.journal.record(self.corr, _SHORT[task.service], "story", str(task.kind), rid)
        self._save(task, reply.payload)
        if task.asked is not None:
            self.metrics.observe(STEP_SECONDS, time.monotonic() - task.asked, step=str(task.kind))
        if task.kind == StepKind.CHAPTER:
            self._ask(StepKind.PICTURE, task.index)  # painted while the next one is written
            self._next_chapter(total)
        self.notify(self.corr)

    def _save(self, task: Task, payload: dict[str, Any]) -> None:
        if task.kind == StepKind.OUTLINE:
            self.outline = payload
            self.journal.save_step(self.corr, task.kind, 0, payload)
            if payload.get("title"):
                self.journal.set_status(
                    self.corr, "running", title=self.spec.title or payload["title"]
                )
        elif task.kind == StepKind.CHAPTER:
            self.texts[task.index] = payload
            self.journal.save_step(self.corr, task.kind, task.index, payload)
        else:
            png = payload.get("png")
            if not isinstance(png, bytes):
                raise StoryFailed(f"the illustrator sent no picture for {task.kind} {task.index}")
            meta = {k: v for k, v in payload.items() if k != "png"}
            if task.kind == StepKind.COVER:
                self.cover = png
            else:
                self.pictures[task.index] = png
            self.journal.save_step(self.corr, task.kind, task.index, meta, blob=png)

    def _retry(self, task: Task, error: RequestFailed | RequestTimeout) -> None:
        retryable = isinstance(error, RequestTimeout) or error.retryable
        self.journal.record(
            self.corr, _SHORT[task.service], "story", "error", self._rid(task.kind, task.index)
        )
        if not retryable or task.attempt >= self.settings.step_attempts:
            raise StoryFailed(
                f"{task.kind} {task.index} failed after {task.attempt} attempt(s): {error}"
            )
        log.warning(
            "story %s: %s %d failed (%s); trying again", self.corr, task.kind, task.index, error
        )
        task.attempt += 1
        if isinstance(error, RequestFailed) and error.retry_after:
            time.sleep(min(error.retry_after, 5.0))
        self._send(task)

    # --- publishing -------------------------------------------------------------------

    def _publish(self, total: int) -> dict[str, bytes]:
        existing = self.journal.publications(self.corr)
        if all(fmt in existing for fmt in self.spec.formats):
            return existing
        self._check_cancel()
        chapters = [
            {
                "title": self.texts[i].get("title") or f"Chapter {i + 1}",
                "text": self.texts[i].get("text", ""),
                "png": self.pictures.get(i),
            }
            for i in range(total)
        ]
        title = self.spec.title or self.outline.get("title") or "A storymesh story"
        payload = {
            "title": title,
            "byline": "written and illustrated by storymesh",
            "cover_png": self.cover,
            "chapters": chapters,
            "formats": list(self.spec.formats),
            "language": self.spec.language,
        }
        rid = self._rid("publish", 0)
        asked = time.monotonic()
        for attempt in range(1, self.settings.step_attempts + 1):
            self._check_cancel()
            self.journal.record(self.corr, "story", "publisher", "publish_request", rid)
            try:
                final = self.client.call(
                    PUBLISHER,
                    payload,
                    rid=rid,
                    corr=self.corr,
                    deadline=time.time() + self.settings.step_timeout,
                )
            except (RequestFailed, RequestTimeout) as exc:
                self.journal.record(self.corr, "publisher", "story", "error", rid)
                retryable = isinstance(exc, RequestTimeout) or exc.retryable
                if not retryable or attempt == self.settings.step_attempts:
                    raise StoryFailed(
                        f"publishing failed after {attempt} attempt(s): {exc}"
                    ) from None
                continue
            self.journal.record(self.corr, "publisher", "story", "publications", rid)
            pubs = final.payload.get("publications") or {}
            for fmt, data in pubs.items():
                if isinstance(data, bytes):
                    self.journal.save_publication(self.corr, fmt, data)
            self.metrics.observe(STEP_SECONDS, time.monotonic() - asked, step="publish")
            return self.journal.publications(self.corr)
        raise StoryFailed("publishing failed")  # pragma: no cover - the loop returns or raises
