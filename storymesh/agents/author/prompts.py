"""Prompts for a language model author, tuned to the reader's age, the themes and the length.

Chat messages (`system` + `user`) for the tokenizer's chat template, and a plain-text form
for models without one. The outline prompt carries the whole plot and, per chapter, the plot
points that chapter must tell (the embedded storyteller's reading of the plot, `points`); it
asks for simple labelled lines ("Title: ...", "Chapter 1: ... - ...") that repair.py can read
back. The revision prompt asks once more for chapter lines that tell what the outline left
out; the chapter prompt asks for prose only. Every prompt names the book's language.
Pure functions: no model here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from storymesh.agents.author.embedded import lexicon as lx
from storymesh.agents.author.embedded import words as wd
from storymesh.agents.author.embedded.plot import World, age_level
from storymesh.agents.author.requests import ChapterRequest, OutlineRequest
from storymesh.vocabulary import primary_language

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


# Names for the prompt's "Write in ..." line; any other tag is named by its code.
LANGUAGE_NAMES: Final = {
    "en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
    "pt": "Portuguese", "nl": "Dutch", "sv": "Swedish", "da": "Danish", "no": "Norwegian",
    "nb": "Norwegian", "fi": "Finnish", "pl": "Polish", "cs": "Czech", "sk": "Slovak",
    "hu": "Hungarian", "ro": "Romanian", "el": "Greek", "ru": "Russian", "uk": "Ukrainian",
    "bg": "Bulgarian", "sr": "Serbian", "hr": "Croatian", "tr": "Turkish", "ca": "Catalan",
    "ga": "Irish", "cy": "Welsh", "eu": "Basque", "is": "Icelandic", "et": "Estonian",
    "lv": "Latvian", "lt": "Lithuanian", "sl": "Slovenian", "zh": "Chinese",
    "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "he": "Hebrew", "hi": "Hindi",
    "id": "Indonesian", "vi": "Vietnamese", "th": "Thai", "sw": "Swahili",
}


def language_name(tag: str) -> str:
    """'fr' -> 'French', 'pt-BR' -> 'Portuguese (pt-BR)', 'xx' -> 'the language xx'."""
    name = LANGUAGE_NAMES.get(primary_language(tag))
    if name is None:
        return f"the language with the code {tag}"
    return name if "-" not in tag else f"{name} ({tag})"


def is_english(tag: str) -> bool:
    return primary_language(tag) == "en"


def _write_in(tag: str, *, labels: bool) -> str:
    """The language line of a prompt; outline labels stay English so repair.py reads them."""
    if is_english(tag):
        return "Write in English."
    keep = " Keep the labels (Title, Hero, Friend, Chapter) in English." if labels else ""
    return f"Write everything in {language_name(tag)}, even though the plot may be in " \
           f"another language.{keep}"


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


def outline_messages(req: OutlineRequest,
                     points: Sequence[Sequence[str]] = ()) -> list[Message]:
    """Ask for the outline as labelled lines: title, hero, friend, one line per chapter.

    `points[i]` are the plot points chapter i+1 must tell; the whole plot is there too.
    """
    lines = [f"Chapter {i}: <chapter title> - <one sentence: what happens>"
             for i in range(1, req.chapters + 1)]
    title_line = f"Title: {req.title}" if req.title else "Title: <the book's title>"
    user = "\n".join([
        "Plan an illustrated picture book that tells this plot, all of it.",
        f"Plot: {req.plot}",
        f"Themes: {_themes(req.themes)}",
        f"Readers: ages {req.target_age}",
        f"Pictures: {lx.STYLE_PHRASES[req.art_style]}",
        (f"Chapters: {req.chapters}, following a clear story arc (a beginning, a problem, "
        "tries that fail, help from a friend, a brave climax, a happy ending)."),
        *_must_tell(points),
        _write_in(req.language, labels=True),
        "",
        "Reply with exactly these lines and nothing else:",
        title_line,
        "Hero: <name> - <what the hero looks like: creature or person, colours, clothes>",
        "Friend: <name> - <what the friend looks like>",
        *lines,
    ])
    return [_system(req.target_age), {"role": "user", "content": user}]


def _must_tell(points: Sequence[Sequence[str]]) -> list[str]:
    told = [f"- Chapter {i}: {' '.join(p)}" for i, p in enumerate(points, 1) if p]
    return ["What of the plot each chapter must tell:", *told] if told else []


def revision_messages(req: OutlineRequest, outline: Mapping[str, Any],
                      missing: Sequence[str],
                      points: Sequence[Sequence[str]] = ()) -> list[Message]:
    """Ask once more, for chapter lines that tell the parts of the plot the outline missed."""
    current = [f"Chapter {i}: {c['title']} - {c.get('plan', '')}"
               for i, c in enumerate(outline["chapters"], 1)]
    wanted = [f"- Chapter {i}: {' '.join(p)}" for i, p in enumerate(points, 1)
              if p and any(_mentions(p, w) for w in missing)]
    user = "\n".join([
        f"This is the plan of a picture book, \"{outline['title']}\":",
        *current,
        "",
        f"Plot: {req.plot}",
        f"The plan leaves out these words of the plot: {', '.join(missing)}.",
        *(["Make these chapters tell them:", *wanted] if wanted else []),
        _write_in(req.language, labels=True),
        "",
        "Reply with the chapter lines only, every chapter, in this form:",
        *[f"Chapter {i}: <chapter title> - <one sentence: what happens>"
          for i in range(1, len(current) + 1)],
    ])
    return [_system(req.target_age), {"role": "user", "content": user}]


def _mentions(points: Sequence[str], word: str) -> bool:
    return bool(wd.all_lemmas(word) & wd.text_lemmas(points))


def chapter_messages(req: ChapterRequest, world: World,
                     points: Sequence[str] = ()) -> list[Message]:
    """Ask for one chapter's prose, with the book, the plot, the cast, the plan, what of the
    plot this chapter must tell (`points`) and what came before."""
    outline = req.outline
    voice = voice_for(world.target_age)
    chapter = req.chapter
    cast = "\n".join(f"- {c['name']}: {c['look']}" for c in outline["characters"])
    plan = _plan_summary(outline["chapters"])
    before = req.previous_text[-PREVIOUS_CHARS:].strip()
    parts = [
        f"Book: {outline['title']}",
        f"Plot of the book: {req.plot}" if req.plot else None,
        f"Characters:\n{cast}" if cast else None,
        f"Plan of the book:\n{plan}",
        f"The story so far ends with: \"...{before}\"" if before else
        "This is the first chapter.",
        "",
        f"Write chapter {req.index + 1} of {req.total}, \"{chapter['title']}\".",
        f"What happens: {chapter.get('plan') or chapter['title']}",
        f"This chapter must tell: {' '.join(points)}" if points else None,
        f"Themes: {_themes(world.themes)}.",
        f"Readers: {voice.readers}. Use {voice.sentences}.",
        f"Length: {voice.words} words in {voice.paragraphs} short paragraphs.",
        _write_in(req.language, labels=False),
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
