"""A story request, checked: `StorySpec.parse(payload)` or a clear `bad_request`/`too_large`.

The story service checks a submission once, up front, so a nonsense request is refused at
once with a message naming the field, and a running story never meets a bad value later.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from storymesh import vocabulary
from storymesh.vocabulary import (
    age_field,
    bad,
    chapters_field,
    formats_field,
    language_field,
    seed_field,
    style_field,
    text_field,
    themes_field,
)

_KEYS = {"plot", "themes", "target_age", "length", "chapters", "art_style", "formats", "seed",
         "title", "language"}


@dataclass(frozen=True, slots=True)
class StorySpec:
    """A valid story request, with every default filled in."""

    plot: str
    themes: tuple[str, ...]
    target_age: str
    length: str
    chapters: int
    art_style: str
    formats: tuple[str, ...]
    seed: int
    title: str | None = None
    language: str = vocabulary.DEFAULT_LANGUAGE

    @classmethod
    def parse(cls, payload: dict[str, Any], *, rng: random.Random | None = None) -> StorySpec:
        """Check a `story.submit` payload; raise FatalAgentError naming the bad field."""
        unknown = set(payload) - _KEYS
        if unknown:
            raise bad(f"unknown field(s): {', '.join(sorted(unknown))}")
        plot = text_field(payload, "plot", vocabulary.MAX_PLOT_CHARS, required=True)
        themes = payload.get("themes") or []
        if isinstance(themes, str):  # a lone theme string is one theme
            themes = [themes]
        checked_themes = themes_field({"themes": themes}) or ()
        filled = dict(payload)
        for key, default in (("target_age", vocabulary.DEFAULT_AGE),
                             ("art_style", vocabulary.DEFAULT_ART_STYLE),
                             ("length", vocabulary.DEFAULT_LENGTH)):
            if not filled.get(key):  # an empty value means the default
                filled[key] = default
        length = filled["length"]
        if length not in vocabulary.LENGTHS:  # checked even when `chapters` overrides it
            raise bad(f"unknown length {length!r}: expected one of {', '.join(vocabulary.LENGTHS)}")
        age = age_field(filled) or vocabulary.DEFAULT_AGE
        chapters = chapters_field(filled)
        style = style_field(filled) or vocabulary.DEFAULT_ART_STYLE
        formats = payload.get("formats") or None  # an empty list means the default
        if isinstance(formats, str):  # a lone format string is one format
            formats = [formats]
        seed = payload.get("seed")
        if seed is None:
            seed = (rng or random.SystemRandom()).randrange(2**31)
        title = text_field(payload, "title", vocabulary.MAX_TITLE_CHARS) or None
        return cls(plot, checked_themes, age, length, chapters, style,
                   formats_field({"formats": formats}), seed_field({"seed": seed}, low=0),
                   title, language_field(payload))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["themes"] = list(self.themes)
        data["formats"] = list(self.formats)
        return data
