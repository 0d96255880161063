"""Prompts for a language model author, tuned to the reader's age, the themes and the length.

Chat messages (`system` + `user`) for the tokenizer's chat template, and a plain-text form
for models without one. The outline prompt asks for simple labelled lines ("Title: ...",
"Chapter 1: ... - ...") that repair.py can read back; the chapter prompt asks for prose only.
Pure functions: no model here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from storymesh.agents.author.embedded import lexicon as lx
from storymesh.agents.author.embedded.plot import World, age_level
from storymesh.agents.author.requests import ChapterRequest, OutlineRequest

Message = dict[str, str]
PREVIOUS_CHARS: Final = 600    # how much of the previous chapter the model is shown
OUTLINE_PLAN_CHARS: Final = 1500


@dataclass(frozen=True, slots=True)
class Voice:
    """How to write for one reading level."""

    readers: str
    sentences: str
    words: str
    paragraphs: int


VOICES: Final = {
    0: Voice("toddlers aged 2 to 4", "very short, simple sentences of 3 to 7 everyday words, "
             "with friendly sounds and repetition", "about 60 to 90", 3),
    1: Voice("children aged 4 to 7", "short, clear sentences of up to 12 words, simple "
             "vocabulary, a little dialogue", "about 150 to 220", 4),
    2: Voice("children aged 8 to 12", "varied sentences with rich vocabulary, vivid "
             "description and dialogue", "about 300 to 450", 6),
    3: Voice("teenagers aged 13 to 18", "vivid, nuanced prose with inner thoughts, natural "
             "dialogue and a touch of humour", "about 450 to 700", 7),
}


def voice_for(target_age: str) -> Voice:
    return VOICES[age_level(target_age)]


def _system(target_age: str) -> Message:
    voice = voice_for(target_age)
    return {"role": "system", "content": (
        f"You are a warm, skilled children's book author writing for {voice.readers} "
        f"(ages {target_age}). Stories are gentle, hopeful and age-appropriate: no violence, "
        "nothing frightening beyond a small, safe thrill.")}


def _themes(themes: Sequence[str]) -> str:
    return ", ".join(themes) if themes else "friendship"


def outline_messages(req: OutlineRequest) -> list[Message]:
    """Ask for the outline as labelled lines: title, hero, friend, one line per chapter."""
    lines = [f"Chapter {i}: <chapter title> - <one sentence: what happens>"
             for i in range(1, req.chapters + 1)]
    title_line = f"Title: {req.title}" if req.title else "Title: <the book's title>"
    user = "\n".join([
        "Plan an illustrated picture book.",
        f"Plot: {req.plot}",
        f"Themes: {_themes(req.themes)}",
        f"Readers: ages {req.target_age}",
        f"Pictures: {lx.STYLE_PHRASES[req.art_style]}",
        (f"Chapters: {req.chapters}, following a clear story arc (a beginning, a problem, "
        "tries that fail, help from a friend, a brave climax, a happy ending)."),
        "",
        "Reply with exactly these lines and nothing else:",
        title_line,
        "Hero: <name> - <what the hero looks like: creature or person, colours, clothes>",
        "Friend: <name> - <what the friend looks like>",
        *lines,
    ])
    return [_system(req.target_age), {"role": "user", "content": user}]


def chapter_messages(req: ChapterRequest, world: World) -> list[Message]:
    """Ask for one chapter's prose, with the book, the cast, the plan and what came before."""
    outline = req.outline
    voice = voice_for(world.target_age)
    chapter = req.chapter
    cast = "\n".join(f"- {c['name']}: {c['look']}" for c in outline["characters"])
    plan = _plan_summary(outline["chapters"])
    before = req.previous_text[-PREVIOUS_CHARS:].strip()
    parts = [
        f"Book: {outline['title']}",
        f"Characters:\n{cast}" if cast else "",
        f"Plan of the book:\n{plan}",
        f"The story so far ends with: \"...{before}\"" if before else
        "This is the first chapter.",
        "",
        f"Write chapter {req.index + 1} of {req.total}, \"{chapter['title']}\".",
        f"What happens: {chapter.get('plan') or chapter['title']}",
        f"Themes: {_themes(world.themes)}.",
        f"Readers: {voice.readers}. Use {voice.sentences}.",
        f"Length: {voice.words} words in {voice.paragraphs} short paragraphs.",
        "Write only the story text of this chapter, with no heading.",
    ]
    return [_system(world.target_age),
            {"role": "user", "content": "\n".join(p for p in parts if p is not None)}]


def _plan_summary(chapters: Sequence[Mapping[str, object]]) -> str:
    lines = [f"{i}. {c['title']}: {c.get('plan', '')}" for i, c in enumerate(chapters, 1)]
    text = "\n".join(lines)
    return text if len(text) <= OUTLINE_PLAN_CHARS else text[:OUTLINE_PLAN_CHARS] + "..."


def plain_prompt(messages: Sequence[Message]) -> str:
    """The messages as one plain prompt, for a tokenizer with no chat template."""
    return "\n\n".join(m["content"] for m in messages) + "\n\n"
