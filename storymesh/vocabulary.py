"""The story vocabulary and its one set of checks, shared by the story service and every agent.

The vocabulary (art styles, lengths, age bands, formats, field limits) is one place, so the
orchestrator's request checks, the author's prompts and the illustrator's presets agree on
what `art_style: "watercolor"` or `length: "short"` means. The checks judge a plot, a theme
list, an age band, a style, a chapter count, a prompt or a picture size the same way, with
the same message, wherever it arrives. Each raises FatalAgentError naming the field:
`bad_request` for a wrong value, `too_large` past a limit.

The general checks (`text_field`, `int_field`, `number_field`, `bytes_field`, `list_field`,
`strings_field`) take the payload and the key; `where` names a nested field in the message
(`'chapters[0].text' is required`). The story checks (`themes_field`, `age_field`,
`style_field`, `chapters_field`, `formats_field`, `seed_field`, `language_field`) are built
on them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from storymesh.errors import FatalAgentError

# Art styles understood everywhere; the illustrator maps each to prompt text and a palette.
ART_STYLES: Final = (
    "children_book", "watercolor", "pencil_sketch", "comic", "pixel_art", "oil_painting",
    "papercut", "storybook_vintage",
)
DEFAULT_ART_STYLE: Final = "children_book"

# Story length -> number of chapters (an explicit `chapters` overrides it).
LENGTHS: Final = {"short": 3, "medium": 6, "long": 10}
DEFAULT_LENGTH: Final = "short"

# Target age bands; any "A-B" with 2 <= A <= B <= 18 is accepted, these are the named ones.
AGE_BANDS: Final = ("2-4", "4-7", "8-12", "13-18")
DEFAULT_AGE: Final = "4-7"

FORMATS: Final = ("pdf", "html", "epub")

# The language a book is written in: a BCP 47 tag ("en", "fr", "pt-BR", "zh-Hant").
DEFAULT_LANGUAGE: Final = "en"
_LANGUAGE: Final = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}")

# Seeds travel as msgpack integers: signed 64-bit.
MIN_SEED: Final = -(2**63)
MAX_SEED: Final = 2**63 - 1

# Field limits for requests (bad_request / too_large beyond these).
MAX_PLOT_CHARS: Final = 4000
MAX_TITLE_CHARS: Final = 200
MAX_THEMES: Final = 12
MAX_THEME_CHARS: Final = 60
MAX_CHAPTERS: Final = 30
MAX_PROMPT_CHARS: Final = 2000
MAX_IMAGE_SIDE: Final = 2048
MIN_IMAGE_SIDE: Final = 64
MAX_STEPS: Final = 200
MAX_CHAPTER_TEXT_CHARS: Final = 50_000


def parse_age(band: str) -> tuple[int, int]:
    """Parse an age band like "4-7"; raise ValueError with a clear message otherwise."""
    try:
        low_s, high_s = band.split("-", 1)
        low, high = int(low_s), int(high_s)
    except (ValueError, AttributeError):
        raise ValueError(f"target_age must look like '4-7', got {band!r}") from None
    if not 2 <= low <= high <= 18:
        raise ValueError(f"target_age {band!r} must be within 2-18 with low <= high")
    return low, high


# --- checks --------------------------------------------------------------------------


def bad(message: str) -> FatalAgentError:
    return FatalAgentError("bad_request", message)


def too_large(message: str) -> FatalAgentError:
    return FatalAgentError("too_large", message)


def text_field(payload: Mapping[str, Any], key: str, limit: int, *,
               required: bool = False, where: str | None = None) -> str:
    """A string of at most `limit` characters, stripped; "" when absent and not required."""
    name = where or key
    value = payload.get(key)
    if value is None:
        if required:
            raise bad(f"'{name}' is required")
        return ""
    if not isinstance(value, str):
        raise bad(f"'{name}' must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise too_large(f"'{name}' is {len(value)} characters; the limit is {limit}")
    if required and not value.strip():
        raise bad(f"'{name}' must not be empty")
    return value.strip()


def int_field(payload: Mapping[str, Any], key: str, low: int, high: int, *,
              default: int | None = None, where: str | None = None) -> int:
    """An integer in low..high; `default` when absent (required when there is none)."""
    name = where or key
    value = payload.get(key)
    if value is None:
        if default is None:
            raise bad(f"'{name}' is required")
        return default
    # bool is an int subclass; `"width": true` is a client bug, not a width of 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"'{name}' must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise bad(f"'{name}' must be between {low} and {high}, got {value}")
    return int(value)


def number_field(payload: Mapping[str, Any], key: str, low: float, high: float, *,
                 default: float, where: str | None = None) -> float:
    """A finite number (int or float) in low..high; `default` when absent."""
    name = where or key
    value = payload.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(f"'{name}' must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or not low <= value <= high:
        raise bad(f"'{name}' must be between {low:g} and {high:g}, got {value}")
    return float(value)


def bytes_field(payload: Mapping[str, Any], key: str, *, limit: int | None = None,
                where: str | None = None) -> bytes | None:
    """Bytes (at most `limit` of them); None when absent."""
    name = where or key
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, bytes | bytearray | memoryview):
        raise bad(f"'{name}' must be bytes, got {type(value).__name__}")
    data = bytes(value)
    if limit is not None and len(data) > limit:
        raise too_large(f"'{name}' is {len(data)} bytes; the limit is {limit}")
    return data


def list_field(payload: Mapping[str, Any], key: str, limit: int, *, required: bool = False,
               where: str | None = None) -> list[Any]:
    """A list of at most `limit` entries (not checked one by one); [] when absent and not
    required."""
    name = where or key
    value = payload.get(key)
    if value is None:
        if required:
            raise bad(f"'{name}' is required")
        return []
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise bad(f"'{name}' must be a list, got {type(value).__name__}")
    if len(value) > limit:
        raise too_large(f"'{name}' has {len(value)} entries; the limit is {limit}")
    return list(value)


def strings_field(payload: Mapping[str, Any], key: str, limit: int, *,
                  choices: Sequence[str] | None = None,
                  where: str | None = None) -> tuple[str, ...] | None:
    """A list of strings (each one of `choices` when given); None when absent."""
    name = where or key
    if payload.get(key) is None:
        return None
    values = list_field(payload, key, limit, where=where)
    for value in values:
        if not isinstance(value, str):
            raise bad(f"each entry of '{name}' must be a string, got {type(value).__name__}")
        if choices is not None and value not in choices:
            raise bad(f"unknown value {value!r} in '{name}': expected one of "
                      f"{', '.join(choices)}")
    return tuple(values)


_THEME_JUNK = re.compile(r"[^\w\s'-]|_")


def themes_field(payload: Mapping[str, Any]) -> tuple[str, ...] | None:
    if payload.get("themes") is None:
        return None
    themes: list[str] = []
    for theme in list_field(payload, "themes", MAX_THEMES):
        if not isinstance(theme, str):
            raise bad(f"each theme must be a string, got {type(theme).__name__}")
        if len(theme) > MAX_THEME_CHARS:
            raise too_large(f"a theme is {len(theme)} characters; the limit is "
                            f"{MAX_THEME_CHARS}")
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
        low, high = parse_age(value.strip())
    except ValueError as exc:
        raise bad(str(exc)) from None
    return f"{low}-{high}"


def style_field(payload: Mapping[str, Any]) -> str | None:
    value = payload.get("art_style")
    if value is None:
        return None
    if value not in ART_STYLES:
        raise bad(f"unknown art_style {value!r}: expected one of "
                  f"{', '.join(ART_STYLES)}")
    return str(value)


def chapters_field(payload: Mapping[str, Any]) -> int:
    value = payload.get("chapters")
    if value is None:
        length = payload.get("length", DEFAULT_LENGTH)
        if length not in LENGTHS:
            raise bad(f"unknown length {length!r}: expected one of "
                      f"{', '.join(LENGTHS)}")
        return LENGTHS[length]
    return int_field(payload, "chapters", 1, MAX_CHAPTERS)


def formats_field(payload: Mapping[str, Any],
                  default: Sequence[str] = FORMATS) -> tuple[str, ...]:
    """The book formats asked for (`default` when absent), each once, in the order given."""
    # Duplicates are dropped below; the limit only stops a hostile list early.
    formats = strings_field(payload, "formats", 64, choices=FORMATS)
    if formats is None:
        return tuple(default)
    if not formats:
        raise bad(f"'formats' is empty: name at least one of {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(formats))


def seed_field(payload: Mapping[str, Any], *, low: int = MIN_SEED, default: int = 0) -> int:
    """A seed: an integer in low..MAX_SEED; `default` when absent."""
    return int_field(payload, "seed", low, MAX_SEED, default=default)


def language_field(payload: Mapping[str, Any]) -> str:
    """A language tag (`en`, `fr`, `pt-BR`); DEFAULT_LANGUAGE when absent or empty."""
    value = payload.get("language")
    if value is None or value == "":
        return DEFAULT_LANGUAGE
    if not isinstance(value, str):
        raise bad(f"'language' must be a string such as 'en' or 'pt-BR', got "
                  f"{type(value).__name__}")
    if not _LANGUAGE.fullmatch(value.strip()):
        raise bad(f"'language' must be a language tag such as 'en' or 'pt-BR', got "
                  f"{value[:40]!r}")
    return value.strip()


def primary_language(tag: str) -> str:
    """The language without its region or script: 'pt-BR' -> 'pt', 'EN' -> 'en'."""
    return tag.split("-", 1)[0].lower()
