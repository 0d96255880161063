"""Checks of story request fields, shared by the story service (`story.submit`) and the
author, so a plot, a theme list, an age band, a style or a chapter count is judged the same
way, with the same message, wherever it arrives. Each raises FatalAgentError naming the field:
`bad_request` for a wrong value, `too_large` past a limit (storymesh.catalog has them)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from storymesh import catalog
from storymesh.errors import FatalAgentError


def bad(message: str) -> FatalAgentError:
    return FatalAgentError("bad_request", message)


def too_large(message: str) -> FatalAgentError:
    return FatalAgentError("too_large", message)


def text_field(payload: Mapping[str, Any], key: str, limit: int, *,
               required: bool = False) -> str:
    value = payload.get(key)
    if value is None:
        if required:
            raise bad(f"'{key}' is required")
        return ""
    if not isinstance(value, str):
        raise bad(f"'{key}' must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise too_large(f"'{key}' is {len(value)} characters; the limit is {limit}")
    if required and not value.strip():
        raise bad(f"'{key}' must not be empty")
    return value.strip()


_THEME_JUNK = re.compile(r"[^\w\s'-]|_")


def themes_field(payload: Mapping[str, Any]) -> tuple[str, ...] | None:
    value = payload.get("themes")
    if value is None:
        return None
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise bad(f"'themes' must be a list of strings, got {type(value).__name__}")
    if len(value) > catalog.MAX_THEMES:
        raise too_large(f"'themes' has {len(value)} entries; the limit is {catalog.MAX_THEMES}")
    themes: list[str] = []
    for theme in value:
        if not isinstance(theme, str):
            raise bad(f"each theme must be a string, got {type(theme).__name__}")
        if len(theme) > catalog.MAX_THEME_CHARS:
            raise too_large(f"a theme is {len(theme)} characters; the limit is "
                            f"{catalog.MAX_THEME_CHARS}")
        # Themes are woven into prose: keep words, drop symbols that read as markup.
        words = " ".join(_THEME_JUNK.sub(" ", theme).split())
        if words:
            themes.append(words)
    return tuple(themes)


def age_field(payload: Mapping[str, Any]) -> str | None:
    value = payload.get("target_age")
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(f"'target_age' must be a string like '4-7', got {type(value).__name__}")
    try:
        low, high = catalog.parse_age(value.strip())
    except ValueError as exc:
        raise bad(str(exc)) from None
    return f"{low}-{high}"


def style_field(payload: Mapping[str, Any]) -> str | None:
    value = payload.get("art_style")
    if value is None:
        return None
    if value not in catalog.ART_STYLES:
        raise bad(f"unknown art_style {value!r}: expected one of "
                  f"{', '.join(catalog.ART_STYLES)}")
    return str(value)


def chapters_field(payload: Mapping[str, Any]) -> int:
    value = payload.get("chapters")
    if value is None:
        length = payload.get("length", catalog.DEFAULT_LENGTH)
        if length not in catalog.LENGTHS:
            raise bad(f"unknown length {length!r}: expected one of "
                      f"{', '.join(catalog.LENGTHS)}")
        return catalog.LENGTHS[length]
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"'chapters' must be an integer, got {type(value).__name__}")
    if not 1 <= value <= catalog.MAX_CHAPTERS:
        raise bad(f"'chapters' must be between 1 and {catalog.MAX_CHAPTERS}, got {value}")
    return int(value)
