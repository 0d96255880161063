"""Checking `story.author` requests: every field, with a clear error for each bad one.

`parse_request()` turns a payload into an `OutlineRequest` or a `ChapterRequest`, or raises
`FatalAgentError`: `too_large` for text or lists over a catalog limit, `bad_request` for
anything missing, of the wrong type or out of range. Never `assert`: this is peer input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storymesh import vocabulary
from storymesh.agents.author.embedded.storyteller import BEAT_NAMES, chapter_beats
from storymesh.vocabulary import (
    age_field,
    bad,
    chapters_field,
    int_field,
    language_field,
    list_field,
    seed_field,
    style_field,
    text_field,
    themes_field,
)

OPS = ("outline", "chapter", "languages")
MAX_CHARACTERS = 20
MAX_NAME_CHARS = 100


@dataclass(frozen=True, slots=True)
class LanguagesRequest:
    """`op: "languages"`: which languages this author writes (asked by the story service)."""


@dataclass(frozen=True, slots=True)
class OutlineRequest:
    """A checked `op: "outline"` request."""

    plot: str
    themes: tuple[str, ...]
    target_age: str
    art_style: str
    chapters: int
    seed: int
    title: str | None = None
    language: str = vocabulary.DEFAULT_LANGUAGE


@dataclass(frozen=True, slots=True)
class ChapterRequest:
    """A checked `op: "chapter"` request; `outline` is the outline FINAL, checked."""

    outline: Mapping[str, Any]
    index: int
    previous_text: str
    seed: int
    target_age: str | None
    themes: tuple[str, ...] | None
    art_style: str | None
    language: str = vocabulary.DEFAULT_LANGUAGE
    plot: str = ""  # the story's plot, when the story service sends it

    @property
    def chapter(self) -> Mapping[str, Any]:
        chapter: Mapping[str, Any] = self.outline["chapters"][self.index]
        return chapter

    @property
    def total(self) -> int:
        return len(self.outline["chapters"])

    def arc(self) -> list[tuple[str, ...]]:
        """The beats of every chapter: the outline's own when it has them, else the default."""
        given = [c.get("beats") for c in self.outline["chapters"]]
        if all(_good_beats(b) for b in given):
            return [tuple(b) for b in given if isinstance(b, list)]
        return chapter_beats(self.total)


def _good_beats(beats: object) -> bool:
    return (isinstance(beats, list) and 0 < len(beats) <= len(BEAT_NAMES)
            and all(b in BEAT_NAMES for b in beats))


def parse_request(payload: object) -> OutlineRequest | ChapterRequest | LanguagesRequest:
    """Check a payload and return the typed request; raise FatalAgentError when it is bad."""
    if not isinstance(payload, Mapping):
        raise bad("the request payload must be a map")
    op = payload.get("op")
    if op == "outline":
        return parse_outline(payload)
    if op == "chapter":
        return parse_chapter(payload)
    if op == "languages":
        return LanguagesRequest()
    if op is None:
        raise bad("missing 'op': expected 'outline', 'chapter' or 'languages'")
    raise bad(f"unknown op {op!r}: expected 'outline', 'chapter' or 'languages'")


def parse_outline(payload: Mapping[str, Any]) -> OutlineRequest:
    plot = text_field(payload, "plot", vocabulary.MAX_PLOT_CHARS, required=True)
    title = text_field(payload, "title", vocabulary.MAX_TITLE_CHARS)
    return OutlineRequest(
        plot=plot, themes=themes_field(payload) or (), target_age=age_field(payload) or
        vocabulary.DEFAULT_AGE, art_style=style_field(payload) or vocabulary.DEFAULT_ART_STYLE,
        chapters=chapters_field(payload), seed=seed_field(payload), title=title or None,
        language=language_field(payload))


def parse_chapter(payload: Mapping[str, Any]) -> ChapterRequest:
    outline = outline_field(payload.get("outline"))
    index = int_field(payload, "index", 0, len(outline["chapters"]) - 1)
    return ChapterRequest(
        outline=outline, index=index,
        previous_text=text_field(payload, "previous_text", vocabulary.MAX_CHAPTER_TEXT_CHARS),
        seed=seed_field(payload), target_age=age_field(payload),
        themes=themes_field(payload), art_style=style_field(payload),
        language=language_field(payload),
        plot=text_field(payload, "plot", vocabulary.MAX_PLOT_CHARS))


# --- fields (the shared ones live in storymesh.vocabulary) -----------------------------


def outline_field(value: object) -> dict[str, Any]:
    """The outline of a chapter request, checked: title, chapters, characters, cover."""
    if not isinstance(value, Mapping):
        raise bad("'outline' must be the map returned by op 'outline'")
    title = text_field(value, "title", vocabulary.MAX_TITLE_CHARS, required=True)
    chapters = _list_of_maps(value, "chapters", vocabulary.MAX_CHAPTERS, required=True)
    checked = [{**c, "title": text_field(c, "title", vocabulary.MAX_TITLE_CHARS, required=True),
                "plan": text_field(c, "plan", vocabulary.MAX_PROMPT_CHARS)} for c in chapters]
    characters = [{"name": text_field(c, "name", MAX_NAME_CHARS, required=True),
                   "look": text_field(c, "look", vocabulary.MAX_PROMPT_CHARS)}
                  for c in _list_of_maps(value, "characters", MAX_CHARACTERS)]
    return {**value, "title": title, "chapters": checked, "characters": characters,
            "cover_prompt": text_field(value, "cover_prompt", vocabulary.MAX_PROMPT_CHARS)}


def _list_of_maps(value: Mapping[str, Any], key: str, limit: int, *,
                  required: bool = False) -> list[Mapping[str, Any]]:
    where = f"outline.{key}"
    items = list_field(value, key, limit, required=required, where=where)
    if required and not items:
        raise bad(f"'{where}' must not be empty")
    if not all(isinstance(item, Mapping) for item in items):
        raise bad(f"each entry of '{where}' must be a map")
    return items
