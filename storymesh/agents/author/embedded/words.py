"""English words for the storyteller: lemmas, parts of speech, verb forms, plot coverage.

A thin layer over `lemminflect` (its dictionaries ship in the wheel; it loads them on first
use, about 0.3 s, and is imported lazily so a daemon that never reads a plot never pays).
`content_words()` and `coverage()` say how much of a plot a text tells: the plot's nouns and
main verbs, compared by lemma. The plot-fidelity benchmark and the tests measure books with
them, and the transformers author checks its outline with them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

_TOKEN = re.compile(r"[A-Za-z][A-Za-z-]*(?:'[A-Za-z]+)?")
# Words that lemminflect calls nouns or verbs but that carry no story: auxiliaries, pronouns,
# numbers, particles, naming verbs.
_NOT_CONTENT = frozenset({
    "be", "have", "do", "can", "will", "shall", "may", "might", "must", "would", "could",
    "should", "he", "she", "it", "her", "him", "his", "its", "they", "them", "their", "we",
    "us", "our", "you", "your", "i", "me", "my", "who", "whom", "what", "how", "one", "two",
    "three", "four", "five", "six", "seven", "eight", "nine", "ten", "up", "down", "out",
    "over", "back", "off", "away", "name", "call", "cannot", "little", "lot", "anyway",
    "there", "here", "then", "when", "where", "why", "very", "too", "so", "all",
})
_FUNCTION = frozenset({
    "a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "for", "from", "by",
    "with", "into", "onto", "across", "through", "before", "after", "because", "that",
    "this", "these", "those", "some", "every", "each", "no", "not", "as", "than", "while",
    "until", "if", "once", "about", "around", "under", "near", "behind", "beyond", "inside",
})


@cache
def _lemminflect() -> Any:
    import lemminflect  # lazy: numpy and the dictionaries load only when a plot is read

    return lemminflect


@cache
def lemmas_by_pos(word: str) -> Mapping[str, tuple[str, ...]]:
    """{'NOUN': ('race',), 'VERB': ('race',)} for 'races'; {} for a word it does not know."""
    found = _lemminflect().getAllLemmas(word.lower())
    return {pos: tuple(found[pos]) for pos in found}


def tokens(text: str) -> list[str]:
    """Words of a text, a possessive "'s" dropped ("grandfather's" -> "grandfather")."""
    return [re.sub(r"'s$", "", w) for w in _TOKEN.findall(text.replace("\u2019", "'"))]


def can_be(word: str, pos: str) -> bool:
    return pos in lemmas_by_pos(word)


def lemma(word: str, pos: str = "") -> str:
    """The lemma for a part of speech ("otters" -> "otter"), else the first known, else the
    word itself in lower case."""
    found = lemmas_by_pos(word)
    if pos in found:
        return found[pos][0]
    for options in found.values():
        return options[0]
    return word.lower()


def all_lemmas(word: str) -> set[str]:
    found = {lem.lower() for options in lemmas_by_pos(word).values() for lem in options}
    return found | {word.lower()}


def inflect(lemma_: str, tag: str) -> str:
    """A verb or noun form by Penn tag (VBD, VBN, VBG, VBZ, NNS); the lemma when unknown."""
    if tag == "VBD" and lemma_ == "be":
        return "was"
    forms = _lemminflect().getInflection(lemma_, tag=tag)
    return str(forms[0]) if forms else lemma_


def past(verb: str) -> str:
    """'wants' -> 'wanted', 'is' -> 'was', 'cannot' -> 'could not'."""
    low = verb.lower()
    special = {"cannot": "could not", "can't": "couldn't", "won't": "wouldn't",
               "will": "would", "can": "could", "must": "had to", "is": "was", "are": "were",
               "am": "was", "isn't": "wasn't", "aren't": "weren't", "doesn't": "didn't",
               "don't": "didn't", "has": "had", "have": "had"}
    if low in special:
        return special[low]
    return inflect(lemma(low, "VERB"), "VBD")


def is_present_verb(word: str) -> bool:
    """A finite present-tense verb: 'wants', 'is', 'can' (a subject's verb in a plot)."""
    low = word.lower()
    if low in {"is", "are", "am", "can", "cannot", "must", "will", "has", "have", "does",
               "do", "won't", "can't", "doesn't", "isn't"}:
        return True
    if not can_be(low, "VERB"):
        return False
    return any(inflect(lem, "VBZ") == low for lem in lemmas_by_pos(low)["VERB"])


def is_base_verb(word: str) -> bool:
    low = word.lower()
    return can_be(low, "VERB") and low in lemmas_by_pos(low)["VERB"]


def plural(noun: str) -> str:
    return inflect(noun, "NNS")


def singular(noun: str) -> str:
    return lemma(noun, "NOUN")


def content_words(plot: str) -> list[str]:
    """The plot's nouns and main verbs, each once, as lemmas ('repairs' -> 'repair').

    A word lemminflect knows only as an adjective or adverb does not count; nor does a word
    that may be an adjective when a noun follows it ('a brave snowplough', 'the dark
    woods'). A capitalised word it does not know at all is a name, and counts.
    """
    words = tokens(plot)
    out: dict[str, None] = {}
    for i, word in enumerate(words):
        low = word.lower()
        if low in _FUNCTION or low in _NOT_CONTENT:
            continue
        found = lemmas_by_pos(low)
        if not found:
            if word[0].isupper() and word[1:].islower():
                out.setdefault(low)
            continue
        if not {"NOUN", "VERB", "PROPN"} & set(found):
            continue
        following = words[i + 1].lower() if i + 1 < len(words) else ""
        modifier = {"ADJ", "ADV"} & set(found) and can_be(following, "NOUN") \
            and following not in _FUNCTION
        if modifier:
            continue
        pos = "NOUN" if "NOUN" in found else "VERB" if "VERB" in found else "PROPN"
        lem = found[pos][0].lower()
        if lem not in _NOT_CONTENT:
            out.setdefault(lem)
    return list(out)


def text_lemmas(texts: Iterable[str]) -> set[str]:
    """Every lemma of every word of the texts, under every part of speech."""
    found: set[str] = set()
    for text in texts:
        for word in tokens(text):
            found |= all_lemmas(word)
    return found


def missing_words(plot: str, texts: Iterable[str]) -> list[str]:
    """The plot's content words that the texts never use (in any form)."""
    have = text_lemmas(texts)
    return [w for w in content_words(plot) if not (all_lemmas(w) & have)]


def coverage(plot: str, texts: Iterable[str]) -> float:
    """The share of the plot's content words that the texts use; 1.0 for a plot with none."""
    words = content_words(plot)
    if not words:
        return 1.0
    return 1 - len(missing_words(plot, texts)) / len(words)
