"""Structure is our code's job, prose the model's: reading and repairing model output.

`repair_outline()` reads the labelled lines a model wrote ("Title: ...", "Hero: name -
look", "Chapter 3: title - plan"), keeps what is usable and fills every gap from the
embedded storyteller's outline for the same request: the book always has a title, exactly
the requested chapters, each with a title and a plan, a hero with a look, a cover prompt.
The outline must tell the plot: `outline_missing()` lists the plot's content words (nouns and
main verbs, by lemma, `embedded/words.py`) the outline never uses; `revise_chapters()` takes
the chapter lines the model rewrote when asked once more for them, and `tell_plot()` fills
what is still missing from the plot points the embedded storyteller found for each chapter.
`finish_chapter()` cleans a chapter's prose (headings, markdown) and trims a chapter that
was cut off mid-sentence back to its last full sentence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from storymesh import vocabulary
from storymesh.agents.author.embedded import words as wd

TITLE_CHARS: Final = 80
PLAN_CHARS: Final = 300
NAME_CHARS: Final = 40
LOOK_CHARS: Final = 200
MAX_EXTRA_CHARACTERS: Final = 4

_LABEL = re.compile(r"^[\s#*>_\-\d.)]*?(title|hero|friend|character|chapter\s*(\d+))\b"
                    r"[\s*_]*[:.)\-–—]+\s*(.*)$", re.IGNORECASE)
_SPLIT = re.compile(r"\s+[-–—]+\s+|\s*[:|]\s+")
_MARKUP = re.compile(r"[*_#`]+")
_ENDS_SENTENCE = re.compile(r"[.!?…][\"'”’)\]]*")
_ENDS_AT_END = re.compile(r"[.!?…][\"'”’)\]]*\s*$")
_HEADING = re.compile(r"^\s*(?:#+\s*)?(?:\*\*)?\s*(?:chapter\b|title\s*:)", re.IGNORECASE)


@dataclass(slots=True)
class ParsedOutline:
    """What could be read from a model's outline text."""

    title: str = ""
    characters: list[tuple[str, str]] = field(default_factory=list)   # (name, look)
    chapters: dict[int, tuple[str, str]] = field(default_factory=dict)  # n -> (title, plan)


@dataclass(frozen=True, slots=True)
class RepairReport:
    """Which parts of an outline came from the model and which were filled in."""

    title_from_model: bool
    characters_from_model: int
    chapters_from_model: int
    chapters_total: int

    def describe(self) -> str:
        return (f"title {'model' if self.title_from_model else 'filled'}, "
                f"{self.characters_from_model} characters from the model, "
                f"{self.chapters_from_model}/{self.chapters_total} chapters from the model")


def clean(text: str, limit: int) -> str:
    """One line of model text without markup, quotes or runs of spaces, cut at a word."""
    text = " ".join(_MARKUP.sub("", text).split()).strip(" \"'“”‘’<>[]")
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:- ")


def _usable(text: str, *, words: int = 1) -> bool:
    return sum(any(ch.isalpha() for ch in w) for w in text.split()) >= words


def parse_outline(raw: str) -> ParsedOutline:
    """Read labelled lines; anything else the model wrote is ignored."""
    parsed = ParsedOutline()
    for line in raw.splitlines():
        match = _LABEL.match(line)
        if match is None:
            continue
        label, number, rest = match.group(1).lower(), match.group(2), match.group(3)
        if label == "title" and not parsed.title:
            parsed.title = clean(rest, TITLE_CHARS)
        elif label in ("hero", "friend", "character"):
            name, _, look = _split(rest)
            name = clean(name, NAME_CHARS)
            if _usable(name) and len(name.split()) <= 4:
                parsed.characters.append((name, clean(look, LOOK_CHARS)))
        elif number is not None and int(number) not in parsed.chapters:
            title, _, plan = _split(rest)
            parsed.chapters[int(number)] = (clean(title, TITLE_CHARS), clean(plan, PLAN_CHARS))
    return parsed


def _split(text: str) -> tuple[str, str, str]:
    parts = _SPLIT.split(text.strip(), maxsplit=1)
    return (parts[0], "-", parts[1]) if len(parts) == 2 else (parts[0], "", "")


def repair_outline(raw: str, fallback: Mapping[str, Any], *, chapters: int,
                   title: str | None = None) -> tuple[dict[str, Any], RepairReport]:
    """The model's outline where usable, the fallback's everywhere else; always complete.

    `fallback` is the embedded storyteller's outline for the same request; its `world` and
    chapter `beats` are kept so chapters are written (and pictured) in the same world.
    """
    parsed = parse_outline(raw)
    model_title = parsed.title if _usable(parsed.title) else ""
    entries, from_model, used = [], 0, set()
    for n in range(1, chapters + 1):
        base = fallback["chapters"][n - 1]
        got_title, got_plan = parsed.chapters.get(n, ("", ""))
        if _usable(got_title):
            from_model += 1
        chapter_title = got_title if _usable(got_title) else base["title"]
        if chapter_title.lower() in used:  # two chapters of one name read as a mistake
            chapter_title = base["title"]
        used.add(chapter_title.lower())
        entries.append({**base, "title": chapter_title,
                        "plan": got_plan if _usable(got_plan, words=3) else base["plan"]})
    characters = _characters(parsed.characters, fallback["characters"])
    outline = {**fallback, "title": title or model_title or fallback["title"],
               "characters": characters, "chapters": entries}
    report = RepairReport(title_from_model=bool(model_title) and not title,
                          characters_from_model=min(len(parsed.characters),
                                                    len(characters)),
                          chapters_from_model=from_model, chapters_total=chapters)
    return outline, report


def _characters(parsed: list[tuple[str, str]],
                fallback: list[dict[str, str]]) -> list[dict[str, str]]:
    """Hero and friend from the model (a missing look borrowed from the fallback's)."""
    out: list[dict[str, str]] = []
    for i, (name, look) in enumerate(parsed[:2 + MAX_EXTRA_CHARACTERS]):
        base_look = fallback[i]["look"] if i < len(fallback) else ""
        if any(c["name"].lower() == name.lower() for c in out):
            continue
        out.append({"name": name, "look": look if _usable(look, words=2) else
                    base_look or f"a friendly character called {name}"})
    for base in fallback[len(out):]:
        if not any(c["name"].lower() == base["name"].lower() for c in out):
            out.append(dict(base))
    return out


# --- the plot, told by the outline ----------------------------------------------------------


def outline_texts(outline: Mapping[str, Any]) -> list[str]:
    """Every text of an outline a reader or a chapter prompt sees: title, cast, chapters."""
    texts = [str(outline.get("title", ""))]
    texts += [f"{c.get('name', '')} {c.get('look', '')}" for c in outline.get("characters", [])]
    texts += [f"{c.get('title', '')} {c.get('plan', '')}" for c in outline.get("chapters", [])]
    return texts


def outline_missing(plot: str, outline: Mapping[str, Any]) -> list[str]:
    """The plot's content words (lemmas) that the outline never uses, in the plot's order."""
    return wd.missing_words(plot, outline_texts(outline))


def revise_chapters(outline: Mapping[str, Any], raw: str) -> dict[str, Any]:
    """The outline with each chapter line the model rewrote in `raw` (a usable title and a
    plan of three words or more); the others, the beats and the rest stay as they were."""
    parsed = parse_outline(raw)
    chapters = []
    for n, chapter in enumerate(outline["chapters"], 1):
        title, plan = parsed.chapters.get(n, ("", ""))
        if _usable(title) and _usable(plan, words=3):
            chapter = {**chapter, "title": title, "plan": plan}
        chapters.append(chapter)
    return {**outline, "chapters": chapters}


def tell_plot(outline: Mapping[str, Any], plot: str,
              points: list[list[str]]) -> tuple[dict[str, Any], list[str]]:
    """Fill the outline's plan with what it leaves out of the plot; return it and the words
    it filled.

    A missing word goes into the plan of the chapter whose plot point (`points[i]`, the
    embedded storyteller's reading) tells it; a word no point tells brings the plot's
    sentence that holds it into the first chapter's plan.
    """
    missing = outline_missing(plot, outline)
    if not missing:
        return dict(outline), []
    chapters = [dict(c) for c in outline["chapters"]]
    added: list[set[str]] = [set() for _ in chapters]
    for word in missing:
        forms = wd.all_lemmas(word)
        where = next(((i, point) for i, chapter_points in enumerate(points[:len(chapters)])
                      for point in chapter_points if forms & wd.text_lemmas([point])), None)
        if where is None:
            where = (0, next((s for s in _sentences(plot) if forms & wd.text_lemmas([s])),
                             plot))
        i, sentence = where
        if len(sentence) > PLAN_CHARS:  # a long plot must not make a huge plan
            sentence = clean(sentence, PLAN_CHARS)
        sentence = sentence if ends_sentence(sentence) else f"{sentence}."
        plan = f"{chapters[i].get('plan', '')} {sentence}".strip()
        if sentence not in added[i] and len(plan) <= vocabulary.MAX_PROMPT_CHARS:
            added[i].add(sentence)
            chapters[i]["plan"] = plan
    return {**outline, "chapters": chapters}, missing


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


# --- chapters ------------------------------------------------------------------------------


def strip_chapter(raw: str, title: str = "") -> str:
    """Prose only: no heading lines, no markdown, paragraphs kept, spaces tidied."""
    lines = raw.strip().splitlines()
    while lines and (_HEADING.match(lines[0]) or not lines[0].strip()
                     or (title and clean(lines[0], 500).lower() == title.lower())):
        lines.pop(0)
    paragraphs = re.split(r"\n\s*\n", "\n".join(lines))
    tidy = [" ".join(_MARKUP.sub("", p).split()) for p in paragraphs]
    return "\n\n".join(p for p in tidy if p)[:vocabulary.MAX_CHAPTER_TEXT_CHARS]


def ends_sentence(text: str) -> bool:
    return _ENDS_AT_END.search(text) is not None


def trim_to_sentence(text: str) -> str:
    """Text up to its last full sentence ("" when there is none)."""
    ends = [match.end() for match in _ENDS_SENTENCE.finditer(text)]
    return text[:ends[-1]].rstrip() if ends else ""


@dataclass(frozen=True, slots=True)
class Finished:
    """A chapter's prose after clean-up, and whether it is complete as it stands."""

    text: str
    complete: bool
    trimmed: bool


def finish_chapter(raw: str, title: str = "") -> Finished:
    """Clean a chapter; trim one that stops mid-sentence to its last full sentence.

    Complete when it ends a sentence, or when trimming keeps at least half of it; else the
    caller retries once and, failing that, takes `best_effort()`.
    """
    text = strip_chapter(raw, title)
    if not text or ends_sentence(text):
        return Finished(text, bool(text), False)
    trimmed = trim_to_sentence(text)
    if trimmed and len(trimmed) >= len(text) / 2:
        return Finished(trimmed, True, True)
    return Finished(text, False, False)


def best_effort(text: str) -> str:
    """An unfinished chapter made presentable: its full sentences, or itself with a stop."""
    trimmed = trim_to_sentence(text)
    if trimmed:
        return trimmed
    return f"{text.rstrip(',;:- ')}." if text.strip() else ""
