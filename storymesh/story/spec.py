"""A story request, checked: `StorySpec.parse(payload)` or a clear `bad_request`/`too_large`.

The story service checks a submission once, up front, so a nonsense request is refused at
once with a message naming the field, and a running story never meets a bad value later.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from storymesh import catalog
from storymesh.errors import FatalAgentError

_KEYS = {"plot", "themes", "target_age", "length", "chapters", "art_style", "formats", "seed",
         "title", "language"}


def _bad(message: str, code: str = "bad_request") -> FatalAgentError:
    return FatalAgentError(code, message)


def _text(payload: dict[str, Any], key: str, limit: int, *, required: bool = False) -> str | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise _bad(f"'{key}' is required")
        return None
    if not isinstance(value, str):
        raise _bad(f"'{key}' must be a string")
    value = value.strip()
    if required and not value:
        raise _bad(f"'{key}' must not be empty")
    if len(value) > limit:
        raise _bad(f"'{key}' is {len(value)} characters; the limit is {limit}", "too_large")
    return value or None


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
    language: str = "en"

    @classmethod
    def parse(cls, payload: dict[str, Any], *, rng: random.Random | None = None) -> StorySpec:
        """Check a `story.submit` payload; raise FatalAgentError naming the bad field."""
        unknown = set(payload) - _KEYS
        if unknown:
            raise _bad(f"unknown field(s): {', '.join(sorted(unknown))}")
        plot = _text(payload, "plot", catalog.MAX_PLOT_CHARS, required=True)
        assert plot is not None  # required=True never returns None
        themes = payload.get("themes") or []
        if isinstance(themes, str):
            themes = [themes]
        if not isinstance(themes, list) or not all(isinstance(t, str) for t in themes):
            raise _bad("'themes' must be a list of strings")
        if len(themes) > catalog.MAX_THEMES:
            raise _bad(f"at most {catalog.MAX_THEMES} themes")
        if any(len(t) > catalog.MAX_THEME_CHARS for t in themes):
            raise _bad(f"a theme is longer than {catalog.MAX_THEME_CHARS} characters")
        age = payload.get("target_age") or catalog.DEFAULT_AGE
        try:
            catalog.parse_age(age)
        except ValueError as exc:
            raise _bad(str(exc)) from None
        length = payload.get("length") or catalog.DEFAULT_LENGTH
        if length not in catalog.LENGTHS:
            raise _bad(f"unknown length {length!r}; choose one of {', '.join(catalog.LENGTHS)}")
        chapters = payload.get("chapters")
        if chapters is None:
            chapters = catalog.LENGTHS[length]
        if isinstance(chapters, bool) or not isinstance(chapters, int):
            raise _bad("'chapters' must be an integer")
        if not 1 <= chapters <= catalog.MAX_CHAPTERS:
            raise _bad(f"'chapters' must be between 1 and {catalog.MAX_CHAPTERS}, got {chapters}")
        style = payload.get("art_style") or catalog.DEFAULT_ART_STYLE
        if style not in catalog.ART_STYLES:
            raise _bad(f"unknown art_style {style!r}; choose one of "
                       f"{', '.join(catalog.ART_STYLES)}")
        formats = payload.get("formats") or list(catalog.FORMATS)
        if isinstance(formats, str):
            formats = [formats]
        if not isinstance(formats, list) or not formats:
            raise _bad("'formats' must be a non-empty list")
        bad = [f for f in formats if f not in catalog.FORMATS]
        if bad:
            raise _bad(f"unknown format(s) {', '.join(map(str, bad))}; choose from "
                       f"{', '.join(catalog.FORMATS)}")
        seed = payload.get("seed")
        if seed is None:
            seed = (rng or random.SystemRandom()).randrange(2**31)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise _bad("'seed' must be a non-negative integer")
        title = _text(payload, "title", catalog.MAX_TITLE_CHARS)
        language = _text(payload, "language", 16) or "en"
        return cls(plot, tuple(t.strip() for t in themes if t.strip()), age, length, chapters,
                   style, tuple(dict.fromkeys(formats)), seed, title, language)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["themes"] = list(self.themes)
        data["formats"] = list(self.formats)
        return data
