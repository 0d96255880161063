"""Story vocabulary shared by the story service and the agents: styles, lengths, ages, limits.

One place, so the orchestrator's request checks, the author's prompts and the illustrator's
presets agree on what `art_style: "watercolor"` or `length: "short"` means.
"""

from __future__ import annotations

from typing import Final

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
