"""Prompt assembly: the chapter's subject, the cast's looks and the style, within CLIP's window.

Every picture of a story should show Pip as the same small grey mouse with a red scarf, so
each character the prompt names gets their look folded in ("Pip, a small grey mouse with a
red scarf"). Text encoders of the Stable Diffusion family read 77 tokens (75 plus start/end);
what is past that is silently cut, so the parts are ranked and the least important are left
out first: the subject is always kept, then the style's core phrase, the named characters,
and the rest of the style text last.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from storymesh.agents.illustrator.request import Character, IllustrationRequest
from storymesh.agents.illustrator.styles import preset

TokenCounter = Callable[[str], int]
CLIP_BUDGET = 75  # 77 positions less the start and end tokens

_TOKEN_RE = re.compile(r"[A-Za-z]+|\d|[^\sA-Za-z\d]")


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate of CLIP tokens: words, digits and punctuation marks."""
    return len(_TOKEN_RE.findall(text))


def describe(character: Character) -> str:
    """'Pip, a small grey mouse with a red scarf' (or just the name without a look)."""
    look = character.look.strip().rstrip(".")
    return f"{character.name}, {look}" if look else character.name


def mentions(text: str, name: str) -> bool:
    """Whether `text` names the character (whole words, any case)."""
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE) is not None


def scene_cast(prompt: str, characters: Sequence[Character]) -> tuple[Character, ...]:
    """The characters a prompt names, in cast order."""
    return tuple(c for c in characters if mentions(prompt, c.name))


def _fit(ranked: list[tuple[int, str]], count: TokenCounter, budget: int) -> list[str]:
    """Keep parts in rank order while they fit; return the kept ones in position order."""
    kept: list[tuple[int, str]] = []
    for position, text in ranked:
        trial = ", ".join(t for _, t in sorted([*kept, (position, text)]))
        if not kept or count(trial) <= budget:
            kept.append((position, text))
    return [t for _, t in sorted(kept)]


def build_prompt(request: IllustrationRequest, count: TokenCounter = approx_tokens,
                 budget: int = CLIP_BUDGET) -> str:
    """The positive prompt: subject, character looks, style; least important parts dropped."""
    style = preset(request.art_style).prompt_phrases
    named = scene_cast(request.prompt, request.characters)
    # No one named: the whole cast may appear, but it is the first thing to go.
    others = request.characters if not named else ()
    # (position in the final prompt, text), listed most important first.
    ranked = [(0, request.prompt.rstrip(". "))]
    ranked += [(1000, style[0])]
    ranked += [(10 + i, describe(c)) for i, c in enumerate(named)]
    ranked += [(1001, p) for p in style[1:2]]
    ranked += [(100 + i, describe(c)) for i, c in enumerate(others)]
    ranked += [(1002 + i, p) for i, p in enumerate(style[2:])]
    return ", ".join(_fit(ranked, count, budget))


def build_negative(request: IllustrationRequest, count: TokenCounter = approx_tokens,
                   budget: int = CLIP_BUDGET) -> str:
    """The negative prompt: the request's own first, then the style's, within the budget."""
    ranked: list[tuple[int, str]] = []
    if request.negative_prompt:
        ranked.append((0, request.negative_prompt.rstrip(", ")))
    phrases = [p.strip() for p in preset(request.art_style).negative.split(",") if p.strip()]
    ranked += [(1 + i, p) for i, p in enumerate(phrases)]
    return ", ".join(_fit(ranked, count, budget))
