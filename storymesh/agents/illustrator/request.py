"""The `story.illustrator` request: checked once here, typed everywhere after.

`parse_request()` turns a payload dict (DESIGN.md section 4) into a frozen
`IllustrationRequest`, filling defaults from the agent's settings, and raises
`FatalAgentError("bad_request" | "too_large", message)` for anything a backend should never
see, with the shared checks of `storymesh.vocabulary`. Unknown keys are ignored: payloads
may grow, never shrink.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from storymesh import vocabulary

MAX_CHARACTERS = 32  # a story's cast; more is a malformed request, not a big story
MAX_NAME_CHARS = 100
MAX_GUIDANCE = 50.0


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


def _characters(payload: dict[str, Any]) -> tuple[Character, ...]:
    cast = []
    for i, item in enumerate(vocabulary.list_field(payload, "characters", MAX_CHARACTERS)):
        if not isinstance(item, dict):
            raise vocabulary.bad(f"'characters[{i}]' must be a map with 'name' and 'look'")
        name = vocabulary.text_field(item, "name", MAX_NAME_CHARS, required=True)
        look = vocabulary.text_field(item, "look", vocabulary.MAX_PROMPT_CHARS)
        cast.append(Character(name=name, look=look))
    return tuple(cast)


def seed_from_prompt(prompt: str) -> int:
    """A stable seed for a request without one: same prompt, same picture, on any machine."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")


def parse_request(payload: object, defaults: Defaults) -> IllustrationRequest:
    """Check a `story.illustrator` payload and fill in defaults."""
    if not isinstance(payload, dict):
        raise vocabulary.bad(f"the request must be a map, got {type(payload).__name__}")
    prompt = vocabulary.text_field(payload, "prompt", vocabulary.MAX_PROMPT_CHARS, required=True)
    side = (vocabulary.MIN_IMAGE_SIDE, vocabulary.MAX_IMAGE_SIDE)
    return IllustrationRequest(
        prompt=prompt,
        negative_prompt=vocabulary.text_field(payload, "negative_prompt",
                                              vocabulary.MAX_PROMPT_CHARS),
        characters=_characters(payload),
        art_style=vocabulary.style_field(payload) or vocabulary.DEFAULT_ART_STYLE,
        width=vocabulary.int_field(payload, "width", *side, default=defaults.width),
        height=vocabulary.int_field(payload, "height", *side, default=defaults.height),
        steps=vocabulary.int_field(payload, "steps", 1, vocabulary.MAX_STEPS,
                                   default=defaults.steps),
        guidance=vocabulary.number_field(payload, "guidance", 0.0, MAX_GUIDANCE,
                                         default=defaults.guidance),
        seed=vocabulary.seed_field(payload, low=0, default=seed_from_prompt(prompt)),
    )
