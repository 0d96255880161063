"""The `story.illustrator` request: checked once here, typed everywhere after.

`parse_request()` turns a payload dict (DESIGN.md section 4) into a frozen
`IllustrationRequest`, filling defaults from the agent's settings, and raises
`FatalAgentError("bad_request" | "too_large", message)` for anything a backend should never
see. Unknown keys are ignored: payloads may grow, never shrink.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from storymesh import vocabulary
from storymesh.errors import FatalAgentError

MAX_CHARACTERS = 32  # a story's cast; more is a malformed request, not a big story
MAX_NAME_CHARS = 100
MAX_GUIDANCE = 50.0
MAX_SEED = 2**63 - 1  # msgpack's signed 64-bit range


@dataclass(frozen=True, slots=True)
class Character:
    """One story character: a name and what they look like."""

    name: str
    look: str


@dataclass(frozen=True, slots=True)
class Defaults:
    """The agent's defaults for fields a request leaves out."""

    width: int = 512
    height: int = 512
    steps: int = 25
    guidance: float = 7.5


@dataclass(frozen=True, slots=True)
class IllustrationRequest:
    """A validated illustration request; every field is present and in range."""

    prompt: str
    negative_prompt: str
    characters: tuple[Character, ...]
    art_style: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int


def _bad(message: str) -> FatalAgentError:
    return FatalAgentError("bad_request", message)


def _text(payload: dict[str, Any], key: str, *, required: bool, limit: int) -> str:
    value = payload.get(key)
    if value is None:
        if required:
            raise _bad(f"'{key}' is required")
        return ""
    if not isinstance(value, str):
        raise _bad(f"'{key}' must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise FatalAgentError("too_large", f"'{key}' is {len(value)} characters; "
                                           f"the limit is {limit}")
    if required and not value.strip():
        raise _bad(f"'{key}' must not be empty")
    return value.strip()


def _int(payload: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = payload.get(key)
    if value is None:
        return default
    # bool is an int subclass; `"width": true` is a client bug, not a width of 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"'{key}' must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise _bad(f"'{key}' must be within {low}..{high}, got {value}")
    return value


def _guidance(payload: dict[str, Any], default: float) -> float:
    value = payload.get("guidance")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"'guidance' must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or not 0.0 <= value <= MAX_GUIDANCE:
        raise _bad(f"'guidance' must be within 0..{MAX_GUIDANCE:g}, got {value}")
    return float(value)


def _characters(payload: dict[str, Any]) -> tuple[Character, ...]:
    value = payload.get("characters")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _bad(f"'characters' must be a list, got {type(value).__name__}")
    if len(value) > MAX_CHARACTERS:
        raise FatalAgentError("too_large", f"'characters' has {len(value)} entries; "
                                           f"the limit is {MAX_CHARACTERS}")
    cast = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _bad(f"'characters[{i}]' must be a map with 'name' and 'look'")
        name = _text(item, "name", required=True, limit=MAX_NAME_CHARS)
        look = _text(item, "look", required=False, limit=vocabulary.MAX_PROMPT_CHARS)
        cast.append(Character(name=name, look=look))
    return tuple(cast)


def _art_style(payload: dict[str, Any]) -> str:
    value = payload.get("art_style")
    if value is None:
        return vocabulary.DEFAULT_ART_STYLE
    if not isinstance(value, str) or value not in vocabulary.ART_STYLES:
        raise _bad(f"unknown 'art_style' {value!r}; choose one of "
                   f"{', '.join(vocabulary.ART_STYLES)}")
    return value


def seed_from_prompt(prompt: str) -> int:
    """A stable seed for a request without one: same prompt, same picture, on any machine."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")


def parse_request(payload: object, defaults: Defaults) -> IllustrationRequest:
    """Check a `story.illustrator` payload and fill in defaults."""
    if not isinstance(payload, dict):
        raise _bad(f"the request must be a map, got {type(payload).__name__}")
    prompt = _text(payload, "prompt", required=True, limit=vocabulary.MAX_PROMPT_CHARS)
    side = (vocabulary.MIN_IMAGE_SIDE, vocabulary.MAX_IMAGE_SIDE)
    seed = payload.get("seed")
    return IllustrationRequest(
        prompt=prompt,
        negative_prompt=_text(payload, "negative_prompt", required=False,
                              limit=vocabulary.MAX_PROMPT_CHARS),
        characters=_characters(payload),
        art_style=_art_style(payload),
        width=_int(payload, "width", defaults.width, *side),
        height=_int(payload, "height", defaults.height, *side),
        steps=_int(payload, "steps", defaults.steps, 1, vocabulary.MAX_STEPS),
        guidance=_guidance(payload, defaults.guidance),
        seed=_int(payload, "seed", 0, 0, MAX_SEED) if seed is not None
        else seed_from_prompt(prompt),
    )
