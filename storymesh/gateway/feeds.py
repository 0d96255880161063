"""One `story.watch` per story, fanned out to every event stream that follows the story.

A `Feed` holds a story's events in the order the watch delivered them; each listener walks
that list at its own pace and waits (asyncio, no thread) for more.

Event ids survive a gateway restart: each step of a story has a fixed bit (the outline, the
cover, publishing, the outcome, chapter n, picture n), and an event's id names the set of
steps its listener has had so far, as `COUNT-HEX`. A client that reconnects with
`Last-Event-ID` gets exactly the steps missing from that set, in whatever order a new watch
replays them: nothing lost and nothing twice, even when two steps that finished at once come
back in the other order.

The HTTP numbering is the page's: chapters 1..N, pictures 1..N, and picture 0 is the cover
(the mesh counts chapters from 0 and calls the cover -1).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from storymesh.gateway.mesh import WatchReply

log = logging.getLogger(__name__)

OUTLINE, COVER, PUBLISHING, OUTCOME = 1 << 0, 1 << 1, 1 << 2, 1 << 3
TOTALS = ("done", "total", "chapters", "chapters_written", "pictures_painted")
FINISHED_FEEDS = 256  # finished stories whose events stay at hand for late listeners
REWATCH_AFTER = 1.0  # seconds before a watch that broke off is opened again
MAX_EVENT_ID = 1024  # characters: far more steps than a story has (2 bits a chapter)
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def chapter_bit(index: int) -> int:
    return 1 << (4 + 2 * index)


def picture_bit(index: int) -> int:
    return 1 << (5 + 2 * index)


def event_id(mask: int) -> str:
    return f"{mask.bit_count()}-{mask:x}"


def parse_event_id(text: str | None) -> int:
    """The set of steps a `Last-Event-ID` names; 0 (from the start) when it is not one of ours."""
    if not text or len(text) > MAX_EVENT_ID or not text.isascii():
        return 0  # a client's header: anything may be in it, and none of it may raise
    count, _, hexa = text.strip().partition("-")
    if not count.isdigit() or not hexa or not all(c in HEX_DIGITS for c in hexa):
        return 0
    mask = int(hexa, 16)
    return mask if int(count) == mask.bit_count() else 0


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One SSE event of a story: its name, its step's bit, its data (URLs without tokens)."""

    name: str
    bit: int
    data: dict[str, Any]

    @property
    def last(self) -> bool:
        return self.bit == OUTCOME


def translate(corr: str, payload: dict[str, Any]) -> FeedEvent | None:
    """The SSE event for one watch PARTIAL (None for a kind without a step of its own)."""
    kind = payload.get("event")
    totals = {k: payload[k] for k in TOTALS if k in payload}
    index = payload.get("index")
    index = index if isinstance(index, int) and not isinstance(index, bool) else 0
    title = payload.get("title")
    if kind == "outline":
        return FeedEvent("outline", OUTLINE, {"title": title, **totals})
    if kind == "chapter":
        return FeedEvent("chapter", chapter_bit(index), {
            "index": index + 1, "title": payload.get("chapter_title"),
            "text": payload.get("text", ""), **totals})
    if kind == "picture":
        number = 0 if index < 0 else index + 1
        bit = COVER if index < 0 else picture_bit(index)
        return FeedEvent("picture", bit, {
            "index": number, "url": f"/stories/{corr}/pictures/{number}.png", **totals})
    if kind == "publishing":
        return FeedEvent("publishing", PUBLISHING, {"title": title, **totals})
    return None


def outcome(corr: str, payload: dict[str, Any]) -> FeedEvent:
    """The last event: `complete` with the book's links, or `failed` with the error."""
    status = str(payload.get("status", "failed"))
    title = payload.get("title")
    if status == "complete":
        formats = sorted(payload.get("publications") or {})
        links = {fmt: f"/stories/{corr}/book.{fmt}" for fmt in formats}
        return FeedEvent("complete", OUTCOME, {"status": status, "title": title, "links": links})
    error = payload.get("error") or ("the story was cancelled" if status == "cancelled"
                                     else "the story failed")
    return FeedEvent("failed", OUTCOME, {"status": status, "title": title, "error": error})


@dataclass
class Feed:
    """A story's events so far, and the listeners' wake-up."""

    corr: str
    owner: str | None
    events: list[FeedEvent] = field(default_factory=list)
    mask: int = 0
    done: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, event: FeedEvent) -> None:
        """Append an event unless its step is already here (a watch opened again replays)."""
        if self.done or event.bit & self.mask:
            return
        self.mask |= event.bit
        self.events.append(event)
        self.done = event.last
        self._wake()

    def _wake(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    async def follow(self, have: int) -> AsyncIterator[tuple[FeedEvent, str]]:
        """(event, id) for every step not in `have`, as they come; ends after the outcome."""
        position = 0
        while True:
            while position < len(self.events):
                event = self.events[position]
                position += 1
                if event.bit & have:
                    continue
                have |= event.bit
                yield event, event_id(have)
                if event.last:
                    return
            if self.done:
                return
            changed = self.changed
            await changed.wait()


class FeedHub:
    """The feeds of every story being followed; opens one watch per story through `open_watch`."""

    def __init__(self, open_watch: Callable[[str, str | None], None]) -> None:
        self.open_watch = open_watch
        self.feeds: dict[str, Feed] = {}
        self.finished: OrderedDict[str, Feed] = OrderedDict()

    def feed(self, corr: str, owner: str | None) -> Feed:
        """The story's feed, opening its watch the first time."""
        found = self.feeds.get(corr) or self.finished.get(corr)
        if found is not None:
            return found
        feed = Feed(corr, owner)
        self.feeds[corr] = feed
        self.open_watch(corr, owner)
        return feed

    def deliver(self, reply: WatchReply) -> None:
        """A watch reply from the pump (runs on the loop)."""
        feed = self.feeds.get(reply.corr)
        if feed is None:
            return
        if reply.error is not None:
            self._broken(feed, reply)
            return
        assert reply.payload is not None  # a reply without an error has its payload
        event = outcome(feed.corr, reply.payload) if reply.final else translate(
            feed.corr, reply.payload)
        if event is not None and event.name == "complete" and not feed.mask & PUBLISHING:
            # A finished story's replay has no `publishing`; a complete book was published,
            # so every listener, live or resuming after a restart, gets the same steps.
            last = feed.events[-1].data if feed.events else {}
            feed.add(FeedEvent("publishing", PUBLISHING, {
                "title": event.data.get("title"), **{k: last[k] for k in TOTALS if k in last}}))
        if event is not None:
            feed.add(event)
        if feed.done:
            self._retire(feed)

    def _broken(self, feed: Feed, reply: WatchReply) -> None:
        error = reply.error
        code = getattr(error, "code", "expired")
        if code in ("not_found", "forbidden", "bad_request"):  # it will not come back
            feed.add(FeedEvent("failed", OUTCOME, {"status": "failed", "title": None,
                                                   "error": f"cannot follow the story: {code}"}))
            self._retire(feed)
            return
        log.info("watch of %s broke off (%s); opening it again", feed.corr, error)
        asyncio.get_running_loop().call_later(REWATCH_AFTER, self._rewatch, feed)

    def _rewatch(self, feed: Feed) -> None:
        if self.feeds.get(feed.corr) is feed and not feed.done:
            self.open_watch(feed.corr, feed.owner)

    def _retire(self, feed: Feed) -> None:
        self.feeds.pop(feed.corr, None)
        self.finished[feed.corr] = feed
        while len(self.finished) > FINISHED_FEEDS:
            self.finished.popitem(last=False)


def sse_data(event: FeedEvent, token: str | None) -> str:
    """The event's JSON; its URLs carry `token` when the gateway has keys."""
    data = event.data
    if token:
        data = dict(data)
        if "url" in data:
            data["url"] = with_token(data["url"], token)
        if "links" in data:
            data["links"] = {k: with_token(v, token) for k, v in data["links"].items()}
    return json.dumps(data, separators=(",", ":"))


def with_token(url: str, token: str | None) -> str:
    return f"{url}?token={token}" if token else url
